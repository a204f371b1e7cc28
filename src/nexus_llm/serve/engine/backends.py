"""Which engine serves: the built-in continuous-batching engine, or vLLM on a CUDA GPU when installed.

``--engine auto`` (the default) picks vLLM only when it is importable *and* a CUDA GPU is visible, and
the built-in engine otherwise (always on CPU). ``--engine vllm`` insists, and says what is missing.
Both probes are cheap and import nothing heavy (``find_spec`` does not import vLLM).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

from nexus_llm.configbase import ConfigError
from nexus_llm.serve.config import ServeConfig
from nexus_llm.serve.engine.base import Engine

ENGINE_LABELS = {"builtin": "built-in continuous batching", "vllm": "vLLM (CUDA)"}


class EngineUnavailable(ConfigError):
    """The engine asked for cannot run here (a user error: the CLI prints it and exits 2)."""


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def choose_engine(
    requested: str,
    has_vllm: Callable[[], bool] = vllm_installed,
    has_cuda: Callable[[], bool] = cuda_available,
) -> str:
    """``builtin`` or ``vllm`` for the ``--engine`` setting (``auto``, ``builtin`` or ``vllm``)."""
    if requested == "builtin":
        return "builtin"
    if requested == "vllm":
        if not has_vllm():
            raise EngineUnavailable(
                "--engine vllm: vLLM is not installed (pip install vllm, on a machine with a CUDA GPU); "
                "use --engine builtin (or auto) to serve with the built-in engine"
            )
        if not has_cuda():
            raise EngineUnavailable(
                "--engine vllm needs a CUDA GPU and torch sees none (torch.cuda.is_available() is False); "
                "use --engine builtin (or auto) to serve on this machine"
            )
        return "vllm"
    if requested != "auto":
        raise EngineUnavailable(f"--engine must be auto, builtin or vllm, not {requested!r}")
    return "vllm" if has_vllm() and has_cuda() else "builtin"


def make_engine(kind: str, local: str, name: str, settings: ServeConfig) -> Engine:
    """The engine ``kind`` over the model directory ``local`` (loading starts with ``engine.start()``)."""
    if kind == "vllm":
        from nexus_llm.serve.engine.vllm import VLLMEngine

        if settings.lora:
            raise EngineUnavailable("--lora is served by the built-in engine only; use --engine builtin")

        return VLLMEngine(local, name, max_batch_size=settings.max_batch_size, dtype=settings.dtype)
    from nexus_llm.serve.engine.batching import BatchingEngine
    from nexus_llm.serve.engine.loading import default_threads, load_model

    def load():
        return load_model(
            local,
            settings.dtype,
            settings.threads or default_threads(),
            kv_cache_bytes=settings.kv_cache_mb << 20 if settings.kv_cache_mb else None,
            prefix_cache_bytes=settings.prefix_cache_mb << 20,
            adapters=settings.lora,
            runner=settings.runner,
            quantize=settings.quantize,
        )

    return BatchingEngine(
        load, name, max_batch_size=settings.max_batch_size, max_prefill_tokens=settings.max_prefill_tokens
    )
