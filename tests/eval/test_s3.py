"""`nexus eval` with the model, the held-out tokens and the output on a real S3 endpoint (SeaweedFS)."""

from __future__ import annotations

import json
import uuid

import pytest

from nexus_llm import storage
from nexus_llm.eval.config import EvalConfig
from nexus_llm.eval.run import run_eval

pytestmark = pytest.mark.s3


def test_model_data_and_output_on_s3_give_the_local_figures(
    s3_env, tmp_path, monkeypatch, tiny_model_dir, token_dir, eval_run
):
    monkeypatch.setenv("NEXUS_CACHE", str(tmp_path / "cache"))
    bucket = s3_env.create_bucket(f"eval-{uuid.uuid4().hex[:8]}")
    fs, _ = storage.get_fs(bucket)
    fs.put(str(tiny_model_dir) + "/", f"{bucket[5:]}/ws/model/", recursive=True)
    fs.put(str(token_dir) + "/", f"{bucket[5:]}/ws/tokens/", recursive=True)
    manifest = run_eval(
        EvalConfig(prompts=["Hi"], max_new_tokens=2), f"{bucket}/ws/model", f"{bucket}/ws/eval"
    )
    local = json.loads((eval_run[0] / "results.json").read_text())
    remote = storage.read_json(f"{bucket}/ws/eval/results.json")
    assert manifest["data"] == f"{bucket}/ws/tokens"  # found beside the model, as in a workspace
    assert remote["perplexity"] == pytest.approx(local["perplexity"], rel=1e-6)
    assert remote["bits_per_byte"] == pytest.approx(local["bits_per_byte"], rel=1e-6)
    assert storage.exists(f"{bucket}/ws/eval/report.html") and storage.exists(
        f"{bucket}/ws/eval/manifest.json"
    )
    assert remote["model_digest"] == local["model_digest"]  # the cached download is the same model
