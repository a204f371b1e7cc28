"""``nexus bench serve URL``: a bounded load generator for an LLM HTTP server.

A fixed number of requests, at most ``concurrency`` at a time (closed loop), with deterministic
prompts, against ``/v1/completions``, ``/v1/chat/completions`` (streamed or not) or the guide's
``/generate``. It reports throughput, time to first token, inter-token latency and end-to-end latency
percentiles, errors by status, and the latency of ``/health`` probed throughout the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import httpx
import numpy as np

WORDS = [
    "the",
    "model",
    "reads",
    "tokens",
    "and",
    "predicts",
    "what",
    "comes",
    "next",
    "from",
    "the",
    "ones",
    "before",
    "it",
    "so",
    "a",
    "server",
    "batches",
    "many",
    "requests",
    "together",
    "while",
    "each",
    "client",
    "waits",
    "for",
    "its",
    "answer",
    "data",
    "flows",
    "through",
    "curated",
    "filters",
    "before",
    "training",
    "begins",
    "and",
    "evaluation",
    "measures",
    "perplexity",
    "on",
    "held",
    "out",
    "text",
]


@dataclass
class BenchSettings:
    url: str
    api: Literal["completions", "chat", "generate"] = "completions"
    concurrency: int = 4
    requests: int = 32
    prompt_words: int = 32
    max_tokens: int = 64
    stream: bool = True
    model: str | None = None
    api_key: str | None = None
    temperature: float = 0.8
    top_p: float = 0.95
    ignore_eos: bool = False
    health_interval_s: float = 0.25
    timeout_s: float = 600.0
    seed: int = 0


@dataclass
class Result:
    status: int
    latency_s: float
    tokens: int = 0
    ttft_s: float | None = None
    itl_s: list[float] = field(default_factory=list)
    error: str | None = None


def prompts(n: int, words: int, seed: int = 0) -> list[str]:
    """``n`` deterministic prompts of ``words`` words (the same for every server compared)."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(words)) for _ in range(n)]


def _body(s: BenchSettings, prompt: str) -> tuple[str, dict[str, Any]]:
    if s.api == "generate":
        return "/generate", {"prompt": prompt, "max_tokens": s.max_tokens, "temperature": s.temperature,
                             "top_p": s.top_p}  # fmt: skip
    body: dict[str, Any] = {"model": s.model, "max_tokens": s.max_tokens, "temperature": s.temperature,
                            "top_p": s.top_p, "stream": s.stream}  # fmt: skip
    if s.ignore_eos:
        body["ignore_eos"] = True
    if s.stream:
        body["stream_options"] = {"include_usage": True}
    if s.api == "chat":
        return "/v1/chat/completions", {**body, "messages": [{"role": "user", "content": prompt}]}
    return "/v1/completions", {**body, "prompt": prompt}


def _text_of(event: dict[str, Any]) -> str:
    choices = event.get("choices") or []
    if not choices:
        return ""
    c = choices[0]
    return c.get("text") or (c.get("delta") or {}).get("content") or ""


async def _one(client: httpx.AsyncClient, s: BenchSettings, prompt: str) -> Result:
    result = await _attempt(client, s, prompt)
    if result.error and result.error.startswith("RemoteProtocolError: Server disconnected without sending"):
        # A keep-alive race: the server closed the idle connection as the request went out on it
        # (llama.cpp's HTTP server closes a connection after 5 requests). Nothing was processed; send again.
        result = await _attempt(client, s, prompt)
    return result


async def _attempt(client: httpx.AsyncClient, s: BenchSettings, prompt: str) -> Result:
    path, body = _body(s, prompt)
    start = time.perf_counter()
    try:
        if s.stream and s.api != "generate":
            return await _streamed(client, path, body, start)
        r = await client.post(path, json=body)
        latency = time.perf_counter() - start
        if r.status_code != 200:
            return Result(r.status_code, latency, error=r.text[:200])
        data = r.json()
        tokens = data["tokens_generated"] if s.api == "generate" else data["usage"]["completion_tokens"]
        return Result(200, latency, tokens=tokens)
    except (httpx.HTTPError, ValueError, KeyError) as err:
        return Result(0, time.perf_counter() - start, error=f"{type(err).__name__}: {err}")


async def _streamed(client: httpx.AsyncClient, path: str, body: dict[str, Any], start: float) -> Result:
    """One streamed request: tokens, TTFT and the gaps between text events (inter-token latency)."""
    arrivals: list[float] = []
    tokens = 0
    async with client.stream("POST", path, json=body) as r:
        if r.status_code != 200:
            await r.aread()
            return Result(r.status_code, time.perf_counter() - start, error=r.text[:200])
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if "error" in event:
                return Result(200, time.perf_counter() - start, error=str(event["error"])[:200])
            if _text_of(event):
                arrivals.append(time.perf_counter())
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
    latency = time.perf_counter() - start
    ttft = arrivals[0] - start if arrivals else None
    return Result(200, latency, tokens=tokens or len(arrivals), ttft_s=ttft, itl_s=list(np.diff(arrivals)))


async def _probe_health(client: httpx.AsyncClient, s: BenchSettings, stop: asyncio.Event, out: list) -> None:
    while not stop.is_set():
        start = time.perf_counter()
        try:
            r = await client.get("/health", timeout=10.0)
            out.append((time.perf_counter() - start, r.status_code))
        except httpx.HTTPError:
            out.append((time.perf_counter() - start, 0))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), s.health_interval_s)


async def _served_model(client: httpx.AsyncClient) -> str | None:
    """The server's model name; None when it cannot be listed (the requests will then show why)."""
    try:
        r = await client.get("/v1/models")
        return r.json()["data"][0]["id"] if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError, KeyError, IndexError):
        return None


async def run_bench_async(s: BenchSettings) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {s.api_key}"} if s.api_key else {}
    limits = httpx.Limits(max_connections=s.concurrency + 2, max_keepalive_connections=s.concurrency + 2)
    async with (
        httpx.AsyncClient(base_url=s.url, headers=headers, timeout=s.timeout_s, limits=limits) as client,
        httpx.AsyncClient(base_url=s.url, timeout=10.0) as health_client,
    ):
        if s.api != "generate" and s.model is None:
            s.model = await _served_model(client)
        todo = prompts(s.requests, s.prompt_words, s.seed)
        results: list[Result] = []
        health: list[tuple[float, int]] = []
        stop = asyncio.Event()
        prober = asyncio.create_task(_probe_health(health_client, s, stop, health))
        next_index = iter(range(len(todo)))

        async def worker() -> None:
            for i in next_index:
                results.append(await _one(client, s, todo[i]))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(s.concurrency)))
        wall = time.perf_counter() - start
        stop.set()
        await prober
    return summarize(s, results, wall, health)


def run_bench(s: BenchSettings) -> dict[str, Any]:
    return asyncio.run(run_bench_async(s))


def pct(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    a = np.asarray(values, dtype=float)
    return {
        "p50": float(np.percentile(a, 50)),
        "p90": float(np.percentile(a, 90)),
        "p99": float(np.percentile(a, 99)),
        "mean": float(a.mean()),
        "max": float(a.max()),
    }


def summarize(s: BenchSettings, results: list[Result], wall: float, health: list[tuple[float, int]]) -> dict:
    ok: list[Result] = []
    errors: dict[str, int] = {}
    for r in results:  # one pass (``r not in ok`` compared dataclasses field by field: quadratic)
        if r.status == 200 and r.error is None:
            ok.append(r)
        else:
            errors[str(r.status)] = errors.get(str(r.status), 0) + 1
    tokens = sum(r.tokens for r in ok)
    return {
        "settings": {k: v for k, v in asdict(s).items() if k != "api_key"},
        "requests": len(results),
        "ok": len(ok),
        "errors": errors,
        "wall_s": wall,
        "requests_per_s": len(ok) / wall if wall else 0.0,
        "generated_tokens": tokens,
        "tokens_per_s": tokens / wall if wall else 0.0,
        "latency_s": pct([r.latency_s for r in ok]),
        "ttft_s": pct([r.ttft_s for r in ok if r.ttft_s is not None]),
        "itl_s": pct([x for r in ok for x in r.itl_s]),
        "health_s": pct([h for h, _ in health]),
        "health_not_200": sum(1 for _, code in health if code != 200),
        "sample_errors": [r.error for r in results if r.error][:3],
    }
