"""``nexus eval --endpoint``: lm-eval's local-completions against a real ``nexus serve`` scores a model as
in-process ``nexus eval`` does (the same weights in float32, as ``nexus eval`` loads them on a CPU)."""

from __future__ import annotations

import json

import pytest
import torch

from nexus_llm.eval.config import EvalConfig
from nexus_llm.serve.config import ServeConfig
from nexus_llm.serve.engine.batching import BatchingEngine
from nexus_llm.serve.engine.loading import load_model
from nexus_llm.serve.http.app import create_app
from support.eval_kit import EXAMPLE_TASK, nexus
from support.serving import serve_app, wait_healthy


@pytest.fixture(scope="module")
def served_smollm2(smollm2_dir):
    engine = BatchingEngine(lambda: load_model(str(smollm2_dir), "float32", threads=1), "smollm2")
    with serve_app(create_app(engine, ServeConfig())) as s:
        wait_healthy(s.url, timeout=300)
        yield s


@pytest.mark.slow
def test_task_scores_through_the_endpoint_equal_in_process_eval(served_smollm2, smollm2_dir, tmp_path):
    common = ["--task", str(EXAMPLE_TASK), "--limit", "24", "--prompt", "The capital of France is",
              "--max-new-tokens", "6"]  # fmt: skip
    remote = nexus("eval", "--endpoint", served_smollm2.url, "-o", str(tmp_path / "remote"), *common)
    assert remote.returncode == 0, remote.stderr
    local = nexus("eval", str(smollm2_dir), "-o", str(tmp_path / "local"), "--no-perplexity", *common)
    assert local.returncode == 0, local.stderr
    got = json.loads((tmp_path / "remote" / "results.json").read_text())
    want = json.loads((tmp_path / "local" / "results.json").read_text())
    got_metrics = got["tasks"]["paraphrase_local"]["metrics"]
    want_metrics = want["tasks"]["paraphrase_local"]["metrics"]
    assert got_metrics.keys() == want_metrics.keys() and got["tasks"]["paraphrase_local"]["samples"] == 24
    for name, value in want_metrics.items():
        assert abs(got_metrics[name] - value) <= 1e-3, (name, got_metrics, want_metrics)
    assert got["perplexity"] is None and got["endpoint"]["model"] == "smollm2"
    assert got["samples"][0]["completion"] == want["samples"][0]["completion"]  # greedy, same weights
    manifest = json.loads((tmp_path / "remote" / "manifest.json").read_text())
    assert manifest["model"] == served_smollm2.url and manifest["tasks"] == ["paraphrase_local"]


@pytest.mark.slow
def test_each_loglikelihood_through_the_endpoint_equals_the_in_process_one(served_smollm2, smollm2_dir):
    """Finer than task scores: every (context, continuation) log-likelihood and greedy flag, within 1e-3."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from nexus_llm.eval.endpoint import endpoint_lm

    lines = (EXAMPLE_TASK.parent / "paraphrase_local.jsonl").read_text().splitlines()[:8]
    pairs = []
    for doc in map(json.loads, lines):
        context = f"Sentence 1: {doc['sentence1']}\nSentence 2: {doc['sentence2']}\nAnswer:"
        pairs += [(context, " yes"), (context, " no"), ("", doc["sentence1"])]
    requests = [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)]
    remote, _ = endpoint_lm(served_smollm2.url, EvalConfig(batch_size=8), tokenizer=str(smollm2_dir))
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()
    local = HFLM(pretrained=model, tokenizer=AutoTokenizer.from_pretrained(smollm2_dir), batch_size=8)
    for (got, got_greedy), (want, want_greedy) in zip(
        remote.loglikelihood(requests), local.loglikelihood(requests), strict=True
    ):
        assert abs(got - want) <= 1e-3 and got_greedy == want_greedy


def test_eval_needs_a_model_or_an_endpoint_and_a_reachable_one(tmp_path):
    neither = nexus("eval", "-o", str(tmp_path / "x"), "--task", str(EXAMPLE_TASK))
    assert neither.returncode == 2 and "--endpoint" in neither.stdout + neither.stderr
    gone = nexus(
        "eval", "--endpoint", "http://127.0.0.1:9", "-o", str(tmp_path / "y"), "--task", str(EXAMPLE_TASK)
    )
    assert gone.returncode == 2 and "cannot reach" in gone.stdout + gone.stderr
    assert "Traceback" not in gone.stderr
