"""``nexus bench serve``: bounded load against a real server, percentiles, /health, the /generate mode."""

from __future__ import annotations

import json
import time

from typer.testing import CliRunner

from nexus_llm.bench.loadgen import BenchSettings, Result, prompts, run_bench, summarize
from nexus_llm.cli import app

from .conftest import API_KEY


def test_prompts_are_deterministic():
    assert prompts(3, 5, seed=1) == prompts(3, 5, seed=1) != prompts(3, 5, seed=2)


def test_streaming_bench_reports_throughput_ttft_and_health(served):
    s = BenchSettings(url=served.url, concurrency=3, requests=6, prompt_words=8, max_tokens=12,
                      api_key=API_KEY, ignore_eos=True, health_interval_s=0.05)  # fmt: skip
    r = run_bench(s)
    assert r["ok"] == 6 and r["errors"] == {}
    assert r["generated_tokens"] == 6 * 12 and r["tokens_per_s"] > 0
    assert r["ttft_s"]["p50"] <= r["latency_s"]["p50"]
    assert r["itl_s"]["p99"] > 0 and r["health_s"]["max"] > 0 and r["health_not_200"] == 0
    assert "api_key" not in r["settings"]


def test_bench_targets_the_original_generate_endpoint_and_counts_errors(served):
    r = run_bench(BenchSettings(url=served.url, api="generate", concurrency=2, requests=4, max_tokens=6,
                                api_key=API_KEY))  # fmt: skip
    assert r["ok"] == 4 and 4 <= r["generated_tokens"] <= 24 and r["ttft_s"] is None
    r = run_bench(BenchSettings(url=served.url, api="chat", concurrency=2, requests=2, max_tokens=4))
    assert r["ok"] == 0 and r["errors"] == {"401": 2}  # no key


def test_cli_prints_a_summary_and_writes_json(served, tmp_path):
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", "serve", served.url, "--api", "chat", "--requests", "3",
                                      "--concurrency", "2", "--max-tokens", "4", "--api-key", API_KEY,
                                      "-o", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["ok"] == 3


def test_summary_splits_ok_and_failed_results_in_one_pass():
    ok = [Result(200, 0.5 + i * 1e-4, tokens=4, ttft_s=0.1) for i in range(4000)]
    failed = [Result(429, 0.01, error="busy")] * 30 + [Result(200, 1.0, error="stream broke")] * 2
    start = time.perf_counter()
    r = summarize(BenchSettings(url="http://x"), ok + failed, wall=2.0, health=[(0.01, 200)])
    assert time.perf_counter() - start < 1.0  # comparing each result with every ok one took seconds
    assert (r["requests"], r["ok"], r["errors"]) == (4032, 4000, {"429": 30, "200": 2})
    assert r["generated_tokens"] == 16_000 and r["tokens_per_s"] == 8000.0
