"""``nexus run`` end to end with the real stages on a tiny slice: a local workspace, then an S3 one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from nexus_llm import storage
from nexus_llm.pipeline.stages import NAMES
from nexus_llm.workspace import Layout

STAGES = [n for n in NAMES if n != "base_model"]  # training from scratch: no base model to import


def nexus(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "nexus_llm.cli", *args],
        capture_output=True, text=True, env={**os.environ, "COLUMNS": "200", **(env or {})}, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def finished(layout: Layout) -> dict[str, str]:
    return {s: storage.read_json(layout.state(s))["finished"] for s in STAGES}


def check_outputs(layout: Layout) -> None:
    """Every stage left its contract files (the workspace layout of docs/architecture.md)."""
    m = storage.read_manifest(layout.curated)
    assert m["records_out"] > 0 and m["files"]["part"]
    for name in ("tokenizer.json", "tokenizer_config.json", "manifest.json"):
        assert storage.exists(storage.join(layout.tokenizer, name)), name
    meta = storage.read_json(storage.join(layout.tokens, "meta.json"))
    assert meta["splits"]["train"]["tokens"] > 0 and meta["splits"]["val"]["documents"] > 0
    for name in (
        "config.json",
        "model.safetensors",
        "generation_config.json",
        "tokenizer.json",
        "manifest.json",
    ):
        assert storage.exists(storage.join(layout.model, name)), name
    results = storage.read_json(storage.join(layout.eval, "results.json"))
    assert results["perplexity"] > 1 and results["bits_per_byte"] > 0
    assert storage.exists(storage.join(layout.eval, "report.html"))
    lines = storage.read_text(storage.join(layout.runs, "metrics.jsonl")).splitlines()
    assert {"step", "loss", "lr", "tokens_per_second", "mfu"} <= set(json.loads(lines[-1]))
    assert storage.listdir(layout.checkpoints), "checkpoints are kept in the workspace"


def test_local_workspace_runs_once_then_only_what_changed(write_config, tmp_path):
    layout = Layout(str(tmp_path / "ws"))
    config = write_config(layout.root)
    first = nexus("run", "-c", str(config))
    check_outputs(layout)
    assert f"nexus serve {layout.model}" in first.stderr and "report.html" in first.stderr
    before = finished(layout)

    again = nexus("run", "-c", str(config))
    assert "Nothing to do" in again.stderr
    assert finished(layout) == before

    config = write_config(layout.root, train={"learning_rate": 0.002})
    changed = nexus("run", "-c", str(config))
    after = finished(layout)
    assert [s for s in STAGES if after[s] != before[s]] == ["train", "eval"]
    assert "[1/5] data up to date, skipped" in changed.stderr

    status = nexus("status", layout.root)
    assert status.stderr.count("complete") == len(STAGES)
    runs = json.loads(nexus("runs", "list", "-c", str(config), "--json").stdout)
    assert len(runs) == 2 and all(r["model"] == layout.model for r in runs)
    assert {"eval.perplexity", "data.kept"} <= set(runs[0]["metrics"])


@pytest.mark.s3
def test_s3_workspace_runs_every_stage_against_object_storage(write_config, s3_env):
    bucket = s3_env.create_bucket(f"ws-{uuid.uuid4().hex[:8]}")
    layout = Layout(f"{bucket}/runs/demo")
    config = write_config(str(Path("/unused")))
    nexus("run", "-c", str(config), "--workspace", layout.root)
    check_outputs(layout)
    assert not Path("/unused").exists()
    again = nexus("run", "-c", str(config), "--workspace", layout.root)
    assert "Nothing to do" in again.stderr
    # A retrained model at the same s3:// URI must be evaluated afresh (not from a stale local cache).
    first = storage.read_json(storage.join(layout.eval, "results.json"))["model_digest"]
    config = write_config(str(Path("/unused")), train={"learning_rate": 0.002})
    nexus("run", "-c", str(config), "--workspace", layout.root)
    assert storage.read_json(storage.join(layout.eval, "results.json"))["model_digest"] != first
