"""The S3 endpoint dies in the middle of a stage: the stage stops with a clear message (no traceback),
and once the endpoint is back the same command completes with exactly the output of a clean run.

The endpoint is a real SeaweedFS server, killed with SIGKILL while the stage is writing to it and then
started again on the same ports and data directory.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from support.seaweed import SeaweedProcess

pytestmark = [pytest.mark.s3, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
VOLATILE = {"seconds", "tokens_per_second", "bytes_per_second"}  # timings: differ between any two runs


@pytest.fixture
def endpoint(tmp_path):
    weed = SeaweedProcess(tmp_path / "s3")
    weed.start()
    yield weed
    weed.stop()


def _client(server):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name=server.region,
    )


def _objects(server, bucket: str, prefix: str) -> dict[str, bytes]:
    s3 = _client(server)
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            out[obj["Key"][len(prefix) :]] = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return out


def _comparable(files: dict[str, bytes]) -> dict[str, object]:
    """Every file as bytes, except the JSON ones, whose timing fields are dropped."""
    out: dict[str, object] = {}
    for rel, data in files.items():
        if rel.endswith(".json"):
            doc = json.loads(data)
            out[rel] = {k: v for k, v in doc.items() if k not in VOLATILE}
        else:
            out[rel] = data
    return out


def _curated(server, bucket: str, tmp_path: Path) -> str:
    """The bundled example corpus as a curated dataset on S3 (8.5 MB of text, 2,680 documents)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for path in sorted((REPO / "examples" / "corpus").glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            rows += [
                {"id": f"{path.stem}-{i}", "text": json.loads(line)["text"]} for i, line in enumerate(fh)
            ]
    local = tmp_path / "curated"
    local.mkdir()
    pq.write_table(
        pa.table({"id": [r["id"] for r in rows], "text": [r["text"] for r in rows]}),
        local / "part-00000.parquet",
    )
    (local / "manifest.json").write_text(json.dumps({"stage": "data", "records_out": len(rows)}))
    s3 = _client(server)
    for name in ("part-00000.parquet", "manifest.json"):
        s3.upload_file(str(local / name), bucket, f"curated/{name}")
    return f"s3://{bucket}/curated"


def _nexus(server, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(server.env())
    return subprocess.Popen(
        [sys.executable, "-m", "nexus_llm.cli", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
    )  # fmt: skip


def test_tokenize_survives_an_s3_outage_and_reruns_to_the_clean_output(
    endpoint, tmp_path, tiny_tokenizer_dir
):
    server = endpoint.server
    s3 = _client(server)
    s3.create_bucket(Bucket="outage")
    curated = _curated(server, "outage", tmp_path)
    config = tmp_path / "nexus.yaml"
    # small shards: many uploads while the stage runs, so the outage lands between two of them
    config.write_text(
        yaml.safe_dump({"tokenize": {"shard_tokens": 32768, "val_fraction": 0.01, "threads": 1}})
    )
    args = ["data", "tokenize", curated, "--tokenizer", str(tiny_tokenizer_dir), "-c", str(config)]

    clean = _nexus(server, *args, "-o", "s3://outage/clean")
    _, err = clean.communicate(timeout=600)
    assert clean.returncode == 0, err[-3000:]
    expected = _comparable(_objects(server, "outage", "clean/"))
    shards = [k for k in expected if k.endswith(".bin")]
    assert len(shards) > 20, len(shards)

    run = _nexus(server, *args, "-o", "s3://outage/tokens")
    deadline = time.monotonic() + 300
    while not any(o.endswith(".bin") for o in _objects(server, "outage", "tokens/train/")):
        assert run.poll() is None, "the stage ended before the outage: nothing was tested"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    endpoint.kill()
    _, err = run.communicate(timeout=300)
    assert run.returncode == 3, (run.returncode, err[-3000:])  # storage unreachable: run it again
    assert "Traceback" not in err, err[-4000:]
    assert "storage" in err.lower() and server.endpoint in err, err[-2000:]

    endpoint.start()
    assert not any(k == "manifest.json" for k in _objects(server, "outage", "tokens/")), (
        "incomplete output marked complete"
    )
    rerun = _nexus(server, *args, "-o", "s3://outage/tokens")
    _, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err[-3000:]
    assert _comparable(_objects(server, "outage", "tokens/")) == expected
