"""``nexus serve`` (heavy imports happen inside the command)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from nexus_llm.cliopts import schema_option, set_option
from nexus_llm.console import console, table
from nexus_llm.errors import UserError
from nexus_llm.serve.config import ServeConfig

Opt = typer.Option


def _opt(field: str, *flags: str):
    return schema_option(ServeConfig, field, "serve", *flags)


def _settings(config: Path | None, flags: dict[str, Any], overrides: list[str] | None):
    """The ``serve:`` section of the config (or defaults) with ``--set`` and the flags given on top."""
    from nexus_llm.config import load_config
    from nexus_llm.configbase import with_overrides

    return with_overrides(load_config(config, overrides).serve, "nexus serve", **flags)


def serve(
    model: str = typer.Argument(
        ..., help="Hugging Face model directory, or an s3:// URI (downloaded and cached)."
    ),
    host: str | None = _opt("host"),
    port: int | None = _opt("port"),
    max_concurrent: int | None = _opt("max_concurrent"),
    max_queue: int | None = _opt("max_queue"),
    max_batch_size: int | None = _opt("max_batch_size"),
    max_tokens: int | None = _opt("max_tokens"),
    max_body_bytes: int | None = _opt("max_body_bytes"),
    model_name: str | None = _opt("model_name"),
    api_key: list[str] = Opt([], "--api-key", help="Accepted Bearer key (repeatable; also NEXUS_API_KEYS)."),
    metrics_auth: bool | None = _opt("metrics_auth", "--metrics-auth/--no-metrics-auth"),
    drain_timeout_s: float | None = _opt("drain_timeout_s", "--drain-timeout"),
    dtype: str | None = _opt("dtype"),
    threads: int | None = _opt("threads"),
    engine: str | None = _opt("engine"),
    lora: list[str] = Opt(
        [],
        "--lora",
        help="NAME=DIR: serve a peft LoRA adapter beside the model, chosen by `model: NAME` (repeatable).",
    ),
    max_prefill_tokens: int | None = _opt("max_prefill_tokens"),
    prefix_cache_mb: int | None = _opt("prefix_cache_mb"),
    kv_cache_mb: int | None = _opt("kv_cache_mb"),
    playground: bool | None = _opt("playground", "--playground/--no-playground"),
    quantize: str | None = _opt("quantize"),
    runner: str | None = _opt("runner"),
    config: Path | None = Opt(
        None, "--config", "-c", help="nexus.yaml whose `serve:` section sets defaults."
    ),
    overrides: list[str] | None = set_option(),
) -> None:
    """Serve a model over an OpenAI-compatible HTTP API (plus the original /generate and a chat page at /)."""
    from nexus_llm.serve.engine.loading import configure_openmp

    configure_openmp()  # before anything imports torch: OpenMP reads its settings once
    from nexus_llm.serve.http.auth import keys_from

    adapters = _adapters(lora)
    settings = _settings(config, {
        "host": host, "port": port, "max_concurrent": max_concurrent, "max_queue": max_queue,
        "max_batch_size": max_batch_size, "max_tokens": max_tokens, "max_body_bytes": max_body_bytes,
        "model_name": model_name, "metrics_auth": metrics_auth, "drain_timeout_s": drain_timeout_s,
        "dtype": dtype, "threads": threads, "engine": engine, "lora": adapters or None,
        "max_prefill_tokens": max_prefill_tokens, "prefix_cache_mb": prefix_cache_mb,
        "kv_cache_mb": kv_cache_mb, "playground": playground, "quantize": quantize, "runner": runner,
    }, overrides)  # fmt: skip
    keys = keys_from(api_key)
    from nexus_llm.serve.engine.backends import choose_engine
    from nexus_llm.serve.http.server import resolve_served_model, serve_local_model

    kind = choose_engine(settings.engine)  # before any download: a missing vLLM/GPU is a user error

    try:
        local, name = resolve_served_model(model, settings)
    except OSError as err:
        raise UserError(f"cannot serve {model}: {err}") from None
    _print_plan(settings, name, local, keys, kind)
    sys.exit(serve_local_model(local, name, settings, keys, kind))


def _adapters(pairs: list[str]) -> dict[str, str]:
    """``--lora NAME=DIR`` values as a mapping; a malformed one or a missing directory exits 2."""
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, folder = pair.partition("=")
        if not sep or not name.strip() or not folder.strip():
            raise UserError(f"--lora {pair!r}: use NAME=DIR, e.g. --lora support=runs/support-lora")
        if not Path(folder, "adapter_config.json").is_file():
            raise UserError(f"--lora {pair!r}: {folder} has no adapter_config.json (a peft adapter)")
        out[name.strip()] = folder.strip()
    return out


def _precision(settings) -> str:
    if settings.dtype != "auto":
        return settings.dtype
    from nexus_llm.train.hardware import cpu_has_bf16

    return "auto: bfloat16 on a CPU with native bf16" if cpu_has_bf16() else "auto: float32 (no native bf16)"


def _quantize_label(quantize: str) -> str:
    if quantize == "none":
        return "none"
    if quantize == "w8a8":
        return (
            "w8a8: int4 for the fewest tokens where the weights are 4-bit already, then int8 weights and "
            "per-token int8 activations (lossy; how many tokens each is measured at load)"
        )
    kind = "int4" if quantize == "auto" else quantize
    steps = f"{kind} for steps of few tokens (how many is measured at load)"
    if quantize == "auto":
        return (
            f"auto: {steps} where the weights are 4-bit already (lossless weights; the output layer in "
            "8-bit blocks), else none"
        )
    return steps


def _kernels_label() -> str:
    from nexus_llm.serve.engine.native import unavailable_reason

    reason = unavailable_reason()
    if reason:
        return f"torch's ({reason})"
    return "native AVX2 for CPU decode steps (built once, about 40 s, on first use)"


def _print_plan(settings, name: str, local: str, keys: list[str], kind: str) -> None:
    from nexus_llm.serve.engine.backends import ENGINE_LABELS
    from nexus_llm.serve.engine.loading import default_threads

    rows = [
        ("model", f"{name} ({local})"),
        ("engine", f"{kind}: {ENGINE_LABELS[kind]}"),
        ("precision, threads", f"{_precision(settings)}, {settings.threads or default_threads()} threads"),
        ("low-bit weights", _quantize_label(settings.quantize)),
        ("CPU kernels", _kernels_label()),
        ("listening", f"http://{settings.host}:{settings.port}"),
        ("API keys", f"{len(keys)} configured" if keys else "none (open)"),
        ("concurrency", f"{settings.max_concurrent} in flight + {settings.max_queue} queued, then 429"),
        ("batch", f"up to {settings.max_batch_size} sequences"),
        ("limits", f"max_tokens <= {settings.max_tokens}, body <= {settings.max_body_bytes} bytes"),
    ]
    if settings.lora:
        rows.append(("LoRA adapters", ", ".join(settings.lora)))
    if settings.playground:
        rows.append(("playground", f"http://{settings.host}:{settings.port}/"))
    console.print(table("nexus serve", ["setting", "value"], rows))
    console.print("/health answers 503 until the model is loaded, then 200.")
