"""``nexus bench serve``: load-test a running server (heavy imports happen inside the command).

The load generator itself is :mod:`nexus_llm.bench.loadgen`; ``benchmarks/serve.py`` drives it against
the guide's server, llama.cpp and ``nexus serve``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from nexus_llm.console import console, table
from nexus_llm.errors import UserError

Opt = typer.Option


def bench_serve(
    url: str = typer.Argument(..., help="Server base URL, e.g. http://127.0.0.1:8080"),
    api: str = Opt("completions", help="completions | chat | generate (the guide's original endpoint)."),
    concurrency: int = Opt(4, min=1, max=4096, help="Requests in flight at once."),
    requests: int = Opt(32, min=1, help="Requests to send in all."),
    prompt_words: int = Opt(32, min=1, help="Words per prompt (prompts are deterministic)."),
    max_tokens: int = Opt(64, min=1, help="max_tokens of every request."),
    stream: bool = Opt(True, "--stream/--no-stream", help="Stream (gives TTFT and inter-token latency)."),
    model: str | None = Opt(None, help="Model name (default: the server's, from /v1/models)."),
    api_key: str | None = Opt(None, envvar="NEXUS_API_KEY", help="Bearer key (or NEXUS_API_KEY)."),
    temperature: float = Opt(0.8, min=0.0, help="Sampling temperature."),
    ignore_eos: bool = Opt(False, help="Ask for exactly max_tokens tokens (nexus servers only)."),
    output: Path | None = Opt(None, "--output", "-o", help="Write the full result as JSON here."),
) -> None:
    """Load-test a running server: throughput, TTFT, inter-token and end-to-end latency, /health."""
    from nexus_llm.bench.loadgen import BenchSettings, run_bench

    if api not in ("completions", "chat", "generate"):
        raise UserError(f"--api must be completions, chat or generate (got {api!r})")
    s = BenchSettings(
        url=url.rstrip("/"), api=api, concurrency=concurrency, requests=requests, prompt_words=prompt_words,
        max_tokens=max_tokens, stream=stream and api != "generate", model=model, api_key=api_key,
        temperature=temperature, ignore_eos=ignore_eos,
    )  # fmt: skip
    try:
        result = run_bench(s)
    except Exception as err:  # connection refused, bad URL: a user error, not a crash
        console.print(f"[bold red]benchmark failed[/]: {type(err).__name__}: {err}")
        raise typer.Exit(1) from None
    console.print(summary_table(result))
    if output:
        output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("ok", "errors", "tokens_per_s", "requests_per_s")}))
    if result["ok"] == 0:
        raise typer.Exit(1)


def summary_table(result: dict[str, Any]):
    def ms(d: dict[str, float] | None, key: str) -> str:
        return "-" if not d else f"{d[key] * 1000:,.1f}"

    rows = [
        ("requests ok / sent", f"{result['ok']} / {result['requests']}"),
        ("errors", ", ".join(f"{k}: {v}" for k, v in result["errors"].items()) or "none"),
        ("generated tokens/s", result["tokens_per_s"]),
        ("requests/s", result["requests_per_s"]),
    ]
    for label, key in (
        ("latency", "latency_s"),
        ("TTFT", "ttft_s"),
        ("inter-token", "itl_s"),
        ("/health", "health_s"),
    ):
        d = result[key]
        rows.append((f"{label} p50/p90/p99 ms", f"{ms(d, 'p50')} / {ms(d, 'p90')} / {ms(d, 'p99')}"))
    return table("nexus bench serve", ["measure", "value"], rows)
