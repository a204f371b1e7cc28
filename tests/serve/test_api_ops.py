"""Operations: /health through loading, /metrics and EMF counts, 429 backpressure, disconnects cancel."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from nexus_llm.serve.config import ServeConfig
from nexus_llm.serve.engine.batching import BatchingEngine
from nexus_llm.serve.engine.loading import load_model
from nexus_llm.serve.http.app import create_app

from .conftest import API_KEY, make_engine, serve_app, wait_healthy


def _metric(text: str, name: str, **labels) -> float:
    """The value of one Prometheus sample (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.compile(
        rf"^{re.escape(name)}(\{{{re.escape(want)}\}})? (\S+)$" if want else rf"^{name} (\S+)$"
    )
    for line in text.splitlines():
        m = pattern.match(line)
        if m:
            return float(m.groups()[-1])
    return 0.0


def test_health_is_503_until_the_model_is_loaded_then_200(tiny_model_dir):
    release = threading.Event()

    def slow_load():
        release.wait(60)
        return load_model(str(tiny_model_dir))

    app = create_app(BatchingEngine(slow_load, "slow"), ServeConfig())
    with serve_app(app) as s:
        r = httpx.get(f"{s.url}/health")
        assert r.status_code == 503 and r.json()["status"] == "loading"
        r = httpx.post(f"{s.url}/v1/completions", json={"prompt": "x"})
        assert r.status_code == 503 and r.headers["retry-after"]
        assert r.json()["error"]["code"] == "model_not_ready"
        release.set()
        wait_healthy(s.url, 60)
        assert httpx.post(f"{s.url}/v1/completions", json={"prompt": "x", "max_tokens": 2}).status_code == 200


def test_health_reports_a_failed_load_as_503():
    def broken():
        raise OSError("no such weights")

    with serve_app(create_app(BatchingEngine(broken, "broken"), ServeConfig())) as s:
        deadline = time.monotonic() + 10
        while (body := httpx.get(f"{s.url}/health").json())["status"] != "failed":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert "no such weights" in body["error"]


def test_metrics_and_emf_lines_count_what_was_served(tiny_engine, caplog):
    app = create_app(tiny_engine, ServeConfig(), manage_engine=False)
    caplog.set_level(logging.INFO, logger="nexus_llm.serve.emf")
    with serve_app(app) as s, httpx.Client(base_url=s.url, timeout=60) as c:
        plain = c.post("/v1/completions", json={"prompt": "Hello", "max_tokens": 5}).json()["usage"]
        stream = c.post("/v1/completions", json={"prompt": "The quick", "max_tokens": 7, "stream": True,
                                                 "stream_options": {"include_usage": True}})  # fmt: skip
        events = [json.loads(line[6:]) for line in stream.text.splitlines() if line.startswith("data: {")]
        streamed = events[-1]["usage"]
        chat = c.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
        )
        chatted = chat.json()["usage"]
        assert c.post("/v1/completions", json={"prompt": "x", "top_p": 7}).status_code == 400
        text = c.get("/metrics").text
    usages = [plain, streamed, chatted]
    assert _metric(text, "nexus_requests_total", endpoint="/v1/completions", status="200") == 2
    assert _metric(text, "nexus_requests_total", endpoint="/v1/chat/completions", status="200") == 1
    assert _metric(text, "nexus_requests_total", endpoint="/v1/completions", status="400") == 1
    assert _metric(text, "nexus_errors_total", type="invalid_request_error") == 1
    assert _metric(text, "nexus_time_to_first_token_seconds_count", endpoint="/v1/completions") == 2
    assert _metric(text, "nexus_generated_tokens_total") == sum(u["completion_tokens"] for u in usages)
    assert _metric(text, "nexus_prompt_tokens_total") == sum(u["prompt_tokens"] for u in usages)
    emf = [json.loads(r.getMessage()) for r in caplog.records if r.name == "nexus_llm.serve.emf"]
    assert sorted(e["TokensGenerated"] for e in emf) == sorted([0] + [u["completion_tokens"] for u in usages])
    assert sorted(e["StatusCode"] for e in emf) == [200, 200, 200, 400]
    for e in emf:
        spec = e["_aws"]["CloudWatchMetrics"][0]
        assert spec["Namespace"] == "NexusLLM/API" and spec["Dimensions"] == [["Service"]]
        assert {m["Name"] for m in spec["Metrics"]} == {"ResponseTime", "TokensGenerated", "ErrorCount"}
        assert e["ResponseTime"] > 0 and e["ErrorCount"] == 0 and e["Service"]


def test_overload_gets_429_with_retry_after_and_never_5xx(tiny_engine):
    settings = ServeConfig(max_concurrent=2, max_queue=1, queue_timeout_s=60)
    app = create_app(tiny_engine, settings, manage_engine=False)
    body = {"prompt": "Hello", "max_tokens": 150, "ignore_eos": True}
    with serve_app(app) as s:

        def call(_):
            return httpx.post(f"{s.url}/v1/completions", json=body, timeout=120)

        with ThreadPoolExecutor(10) as pool:
            responses = list(pool.map(call, range(10)))
        codes = sorted(r.status_code for r in responses)
        assert set(codes) <= {200, 429}
        assert codes.count(200) >= 3 and codes.count(429) >= 1
        rejected = next(r for r in responses if r.status_code == 429)
        assert int(rejected.headers["retry-after"]) >= 1
        assert rejected.json()["error"]["type"] == "rate_limit_error"
        # capacity comes back once the burst is over
        assert httpx.post(f"{s.url}/v1/completions", json={"prompt": "x", "max_tokens": 2}).status_code == 200


def test_more_prompts_than_max_concurrent_is_400_at_once(tiny_engine):
    app = create_app(tiny_engine, ServeConfig(max_concurrent=2, queue_timeout_s=30), manage_engine=False)
    with serve_app(app) as s:
        start = time.perf_counter()
        r = httpx.post(
            f"{s.url}/v1/completions", json={"prompt": ["a", "b", "c"], "max_tokens": 2}, timeout=60
        )
        assert time.perf_counter() - start < 5  # not after the 30 s queue timeout
        assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
        assert "--max-concurrent" in r.json()["error"]["message"]
        assert app.state.serving.admission.in_flight == 0


def test_concurrent_multi_prompt_requests_do_not_stall_each_other(tiny_engine):
    settings = ServeConfig(max_concurrent=4, max_queue=16, queue_timeout_s=60)
    app = create_app(tiny_engine, settings, manage_engine=False)
    body = {"prompt": ["Hello", "The quick", "Servers"], "max_tokens": 6, "ignore_eos": True}
    with serve_app(app) as s:

        def call(_):
            return httpx.post(f"{s.url}/v1/completions", json=body, timeout=120)

        start = time.perf_counter()
        with ThreadPoolExecutor(6) as pool:
            responses = list(pool.map(call, range(6)))
        elapsed = time.perf_counter() - start
    assert [r.status_code for r in responses] == [200] * 6
    assert all(len(r.json()["choices"]) == 3 for r in responses)
    assert elapsed < 30, f"six 3-prompt requests on 4 slots took {elapsed:.1f} s"
    assert (app.state.serving.admission.in_flight, app.state.serving.admission.waiting) == (0, 0)


@pytest.fixture(scope="module")
def long_served(long_model_dir):
    """A server on the 4096-token tiny model, for requests that are still running when cut off."""
    engine = make_engine(long_model_dir)
    with serve_app(create_app(engine, ServeConfig(max_tokens=4000))) as s:
        wait_healthy(s.url)
        yield s


def _wait_cancelled(engine, before: set[str], timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = [r for r in engine.recent if r.request_id not in before]
        if new and engine.stats().running == 0:
            return new
        time.sleep(0.02)
    raise AssertionError("the engine did not finish the request after the client left")


def test_disconnected_stream_stops_generating(long_served):
    engine = long_served.engine
    before = {r.request_id for r in engine.recent}
    body = {"prompt": "Hello", "max_tokens": 4000, "ignore_eos": True, "stream": True}
    with httpx.stream("POST", f"{long_served.url}/v1/completions", json=body, timeout=60) as r:
        lines = r.iter_lines()
        seen = [line for _, line in zip(range(6), lines, strict=False)]
        assert any(line.startswith("data: {") for line in seen)
        assert engine.stats().running == 1
    # leaving the block closed the connection mid-stream
    (record,) = _wait_cancelled(engine, before)
    assert record.finish_reason == "cancelled" and record.completion_tokens < 4000
    text = httpx.get(f"{long_served.url}/metrics").text
    assert _metric(text, "nexus_engine_requests_finished_total", reason="cancelled") >= 1


def test_client_that_gives_up_on_a_plain_request_frees_its_slot(long_served):
    engine = long_served.engine
    before = {r.request_id for r in engine.recent}
    body = {"prompt": "Hello", "max_tokens": 4000, "ignore_eos": True}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{long_served.url}/v1/completions", json=body, timeout=httpx.Timeout(60, read=1.0))
    (record,) = _wait_cancelled(engine, before)
    assert record.finish_reason == "cancelled" and record.completion_tokens < 4000


def test_a_client_that_leaves_the_admission_queue_frees_its_place(long_served):
    settings = ServeConfig(max_concurrent=1, max_queue=4, max_tokens=4000, queue_timeout_s=60)
    app = create_app(long_served.engine, settings, manage_engine=False)
    admission = app.state.serving.admission
    body = {"prompt": "Hello", "max_tokens": 4000, "ignore_eos": True, "stream": True}
    with (
        serve_app(app) as s,
        httpx.stream("POST", f"{s.url}/v1/completions", json=body, timeout=60) as running,
    ):
        lines = running.iter_lines()  # (kept: a dropped iterator closes the response)
        assert next(lines).startswith("data: {")  # this stream holds the only slot
        with pytest.raises(httpx.ReadTimeout):  # queued behind it, then the client gives up
            httpx.post(f"{s.url}/v1/completions", json={"prompt": "x", "max_tokens": 2},
                       timeout=httpx.Timeout(60, read=0.5))  # fmt: skip
        deadline = time.monotonic() + 5
        while admission.waiting:
            assert time.monotonic() < deadline, "the request that left still waits for a slot"
            time.sleep(0.02)
        assert admission.in_flight == 1 and long_served.engine.stats().running == 1  # the stream still runs
    text = httpx.get(f"{long_served.url}/metrics").text  # the shared engine's view: nothing leaked
    assert _metric(text, "nexus_engine_batch_size") <= 1


def test_health_answers_fast_while_the_engine_is_busy(long_served):
    """Eight streams decode (4,000 tokens each: far longer than the probes take on any machine) while
    /health is probed; the engine is checked to be busy around the probes, then the clients leave."""
    body = {"prompt": "Hello", "max_tokens": 4000, "ignore_eos": True, "stream": True}
    engine = long_served.engine
    with contextlib.ExitStack() as streams:
        for _ in range(8):
            r = streams.enter_context(
                httpx.stream("POST", f"{long_served.url}/v1/completions", json=body, timeout=120)
            )
            lines = r.iter_lines()
            assert next(lines).startswith("data: {")  # this request is decoding
            streams.callback(lines.close)
        assert engine.stats().running == 8
        worst = 0.0
        for _ in range(20):
            start = time.perf_counter()
            assert httpx.get(f"{long_served.url}/health", timeout=5).status_code == 200
            worst = max(worst, time.perf_counter() - start)
            time.sleep(0.05)
        assert engine.stats().running == 8, "the streams ended before the probes did"
    # The guide's server holds /health for a whole generation (seconds). Client, server and engines share
    # this process (and its GIL) and the cores are shared, so the bound is loose here; benchmarks/serve.py
    # measures the 100 ms goal with the server in its own process.
    assert worst < 1.0, f"/health took {worst:.3f} s under load"


class _GatedTokenizer:
    """The engine's tokenizer, except that tokenizing a long text waits for ``release`` (and says so with
    ``entered``): the test then knows a request is inside the tokenizer, holding its lock, for as long as
    it takes its samples, however fast this machine tokenizes."""

    def __init__(self, inner, min_chars: int) -> None:
        self._inner, self._min_chars = inner, min_chars
        self.entered, self.release = threading.Event(), threading.Event()

    def __call__(self, text, *args, **kwargs):
        if isinstance(text, str) and len(text) >= self._min_chars:
            self.entered.set()
            assert self.release.wait(60), "the test never released the tokenizer"
        return self._inner(text, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def test_health_stays_fast_while_a_huge_chat_request_is_tokenized(tiny_engine, monkeypatch):
    """A ~1 MiB, 7,000-message conversation is in the tokenizer (held there by the test, so the machine's
    speed does not matter); short prompts wait for the same tokenizer; /health must wait for none of it."""
    gate = _GatedTokenizer(tiny_engine._encoder.tokenizer, min_chars=100_000)
    monkeypatch.setattr(tiny_engine._encoder, "tokenizer", gate)
    app = create_app(tiny_engine, ServeConfig(max_body_bytes=1_048_576), manage_engine=False)
    messages = [{"role": "user", "content": "hello world " * 10}] * 7_000
    with serve_app(app) as s, ThreadPoolExecutor(4) as pool:
        huge = pool.submit(
            httpx.post, f"{s.url}/v1/chat/completions", json={"messages": messages}, timeout=120
        )
        assert gate.entered.wait(60), "the huge request never reached the tokenizer"
        short = [pool.submit(httpx.post, f"{s.url}/v1/completions", json={"prompt": f"Hi {i}", "max_tokens": 1},
                             timeout=120) for i in range(2)]  # fmt: skip
        latencies = []
        try:
            with httpx.Client(base_url=s.url, timeout=10) as c:
                for _ in range(30):  # ~1 s of probes, all while the huge request holds the tokenizer
                    start = time.perf_counter()
                    assert c.get("/health").status_code == 200
                    latencies.append(time.perf_counter() - start)
                    time.sleep(0.02)
            assert not huge.done() and not any(f.done() for f in short), "the tokenizer was not held"
        finally:
            gate.release.set()
        assert huge.result().status_code == 400  # longer than the tiny model's context, once tokenized
        assert huge.result().json()["error"]["code"] == "context_length_exceeded"
        assert [f.result().status_code for f in short] == [200, 200]
    # Before, a short prompt was encoded on the event loop and waited there for the tokenizer lock: the
    # loop (and /health) stalled for the whole tokenization. Client, server and tokenizer share this
    # process's GIL and the 2 shared cores, so single probes may still be slowed by a few scheduler
    # slices; the bound on the worst one is looser than the one on the 90th percentile.
    p90, worst = sorted(latencies)[int(0.9 * len(latencies))], max(latencies)
    assert p90 < 0.1 and worst < 0.5, f"/health p90 {p90 * 1000:.0f} ms, max {worst * 1000:.0f} ms"


def test_api_keys_are_never_logged(tiny_engine, caplog, capfd):
    key = "sk-super-secret-value-42"
    app = create_app(tiny_engine, ServeConfig(metrics_auth=True), [key, API_KEY], manage_engine=False)
    caplog.set_level(logging.DEBUG)
    with serve_app(app) as s:
        auth = {"Authorization": f"Bearer {key}"}
        assert httpx.get(f"{s.url}/metrics").status_code == 401
        assert httpx.get(f"{s.url}/metrics", headers=auth).status_code == 200
        assert httpx.get(f"{s.url}/health").status_code == 200
        r = httpx.post(f"{s.url}/generate", json={"prompt": "x", "max_tokens": 2}, headers=auth, timeout=60)
        assert r.status_code == 200
        wrong = {"Authorization": "Bearer sk-wrong-1"}
        assert httpx.post(f"{s.url}/generate", json={"prompt": "x"}, headers=wrong).status_code == 401
    out, err = capfd.readouterr()
    logged = caplog.text + out + err + repr(app.user_middleware)
    assert key not in logged and "sk-wrong-1" not in logged
