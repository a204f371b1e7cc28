"""The Spark engine, submitted as a script with spark-submit, keeps exactly the local engine's ids."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import nexus_llm.data.spark_job as spark_job
from nexus_llm import storage
from support.curated import read

from .conftest import FULL_YAML

pytestmark = pytest.mark.spark


def test_spark_submit_job_keeps_the_same_ids_as_the_local_engine(prepared, tmp_path):
    _, local_out, local_manifest = prepared
    source = read(local_out)[0]["source"]
    config = tmp_path / "nexus.yaml"
    config.write_text(FULL_YAML + "  shard_size_mb: 0.3\n")  # several splits, so several Spark tasks
    out = tmp_path / "spark-out"
    submit = Path(sys.executable).with_name("spark-submit")
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    cmd = [str(submit), "--master", "local[2]", "--conf", "spark.ui.enabled=false",
           "--conf", "spark.driver.host=127.0.0.1", "--conf", "spark.driver.bindAddress=127.0.0.1",
           spark_job.__file__, "--output", str(out), "--config", str(config), source]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = storage.read_manifest(str(out))
    assert manifest["engine"] == "spark" and manifest["splits"] > 2
    assert [r["id"] for r in read(out)] == [r["id"] for r in read(local_out)]
    assert sorted((r["id"], r["reason"], r["duplicate_of"]) for r in read(out, "rejected")) == sorted(
        (r["id"], r["reason"], r["duplicate_of"]) for r in read(local_out, "rejected")
    )
    for key in ("records_in", "records_out", "removed", "quarantined", "pii", "language", "decontamination"):
        assert manifest[key] == local_manifest[key], key
    assert any(k.startswith(("language.", "decontaminate.")) for k in manifest["removed"])
