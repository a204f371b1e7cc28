"""``nexus data prepare`` reads from and writes to a real S3 endpoint (SeaweedFS on 127.0.0.1)."""

from __future__ import annotations

import uuid

import boto3
import pyarrow.parquet as pq
import pytest

from nexus_llm import storage
from nexus_llm.data.prepare import run_prepare
from support.curated import read

from .conftest import full_config

pytestmark = pytest.mark.s3


def test_prepare_from_s3_to_s3_matches_the_local_run(prepared, planted_corpus, s3_env):
    _, local_out, _ = prepared
    _, corpus_path = planted_corpus
    bucket = s3_env.create_bucket(f"data-{uuid.uuid4().hex[:8]}")
    fs, _ = storage.get_fs(bucket)
    fs.put_file(str(corpus_path), f"{bucket[5:]}/raw/corpus.jsonl")
    out = f"{bucket}/curated"
    manifest = run_prepare([f"{bucket}/raw/"], out, full_config(shard_size_mb=0.5), workers=2)
    assert manifest["splits"] > 1
    kept = []
    for name in manifest["files"]["part"]:
        with storage.open_file(f"{out}/{name}", "rb") as fh:
            kept.extend(pq.read_table(fh).column("id").to_pylist())
    assert kept == [r["id"] for r in read(local_out)]
    client = boto3.client("s3")
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket[5:], Prefix="curated/")["Contents"]}
    assert "curated/manifest.json" in keys
    assert not any(k.startswith("curated/_work/") for k in keys), "work files must be removed after success"
    again = run_prepare([f"{bucket}/raw/"], out, full_config(shard_size_mb=0.5), workers=2)
    assert again.get("up_to_date")
