"""Load the model to serve and build its runner (the directory comes from
:func:`nexus_llm.models.loading.resolve_model`: local, or an ``s3://`` one cached locally)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nexus_llm.modelinfo import context_length

log = logging.getLogger("nexus_llm.serve.engine.base")


@dataclass
class LoadedModel:
    """A model ready for the engine, with what the engine needs to know about its tokenizer."""

    model: Any
    tokenizer: Any
    context_length: int
    eos_ids: frozenset[int]
    bos_id: int | None
    pad_id: int
    vocab_size: int
    runner: Any = None  # a nexus_llm.serve.engine.runner.Runner
    adapters: tuple[str, ...] = ()
    generation_defaults: dict[str, Any] = field(default_factory=dict)
    dtype: str = ""
    threads: int = 0
    runner_kind: str = ""
    weights: str = ""
    """What the linear layers compute in, e.g. "int4 for steps of up to 16 tokens (...), float32 otherwise"."""


def check_model_dir(path: str) -> None:
    """Fail early, with a message that says what is missing, before any heavy import."""
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"model directory {path!r} does not exist")
    if not (p / "config.json").is_file():
        raise FileNotFoundError(
            f"{path!r} has no config.json: pass a Hugging Face model directory (e.g. <workspace>/model)"
        )
    if not any(
        (p / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
    ):
        raise FileNotFoundError(f"{path!r} has no tokenizer files (tokenizer.json / tokenizer_config.json)")


def _ids(value) -> set[int]:
    if value is None:
        return set()
    return {int(v) for v in value} if isinstance(value, (list, tuple)) else {int(value)}


def default_threads() -> int:
    """torch threads for CPU serving: every core this process may run on.

    Until this release one core was left to the HTTP side, because torch's OpenMP workers spin at
    barriers and a spinning worker that shares a core with the event loop (or another process) slowed a
    step down many times over. ``nexus serve`` now starts OpenMP with a short spin count (see
    :func:`configure_openmp`), so an idle worker soon sleeps and all cores can go to the model:
    docs/serve.md has the measurements.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus)


OPENMP_ENV = {"GOMP_SPINCOUNT": "30000"}
"""Set for ``nexus serve`` before torch loads (a user's own values win); see :func:`configure_openmp`."""


def configure_openmp() -> dict[str, str]:
    """Let idle OpenMP workers spin only briefly before they sleep (must run before ``import torch``).

    torch's OpenMP (libgomp, in PyTorch's Linux wheels) spins a worker for ~300,000 iterations before it
    sleeps. A spinning worker that loses its core to another thread — the event loop, an HTTP client on
    the same machine, another process — stalls every barrier of every operator, and the server spends
    much of each step between operators (Python, the GIL, the event loop). ``GOMP_SPINCOUNT=30000`` keeps
    back-to-back operators cheap and puts an idle worker to sleep soon after. Measured first with
    SmolLM2-135M on the 2-core development machine, end to end (``nexus bench serve``, 64 tokens per
    request, two interleaved rounds, load average about 1; tokens/s at concurrency 1 and 16):

    ========================  ===========  ===========
    OpenMP setting            c = 1        c = 16
    ========================  ===========  ===========
    default (spinning)        3.1          355
    GOMP_SPINCOUNT=30000      33.7-36.5    318-323
    GOMP_SPINCOUNT=3000       34.9-35.5    302-325
    OMP_WAIT_POLICY=PASSIVE   27.2-30.4    221-264
    one thread                25.5-28.8    235-238
    ========================  ===========  ===========

    With two busy-looping processes on the same 2 cores, 3000 spins and passive waiting were alike
    (decode step of one sequence 51-84 ms, of 16: 105-123 ms). That machine chose 3000; on an Ice Lake
    Xeon without bf16 (float32 model, int4 decode steps, same benchmark, two alternating runs each),
    3000 let the worker fall asleep between the many small operators of a one-token step and 30000 won:
    c = 1: 25.5-31.7 tok/s with 3000, 32.8-42.0 with 30000; c = 16: 136-149 vs 144-177. With two
    busy-looping processes beside it, the two were alike there too (one-token step p50 51 vs 49 ms, 16
    tokens 130 vs 140 ms). Returns the variables it set.
    """
    import sys

    if "torch" in sys.modules:
        return {}  # too late: OpenMP read its environment when torch loaded
    set_now = {
        k: v for k, v in OPENMP_ENV.items() if k not in os.environ and "OMP_WAIT_POLICY" not in os.environ
    }
    os.environ.update(set_now)
    return set_now


def default_dtype(cuda: bool):
    """bf16 on CPUs with native bf16 arithmetic (AVX512-BF16, AMX), else fp32; the checkpoint's on GPUs."""
    import torch

    if cuda:
        return "auto"
    from nexus_llm.train.hardware import cpu_has_bf16

    return torch.bfloat16 if cpu_has_bf16() else torch.float32


def default_kv_cache_bytes(cuda: bool) -> int:
    """A quarter of the machine's memory (half the free GPU memory on CUDA) for the KV cache."""
    if cuda:
        import torch

        return int(torch.cuda.mem_get_info()[0] * 0.5)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return int(total // 4)


GENERATION_KEYS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "repetition_penalty": "repetition_penalty",
    "max_new_tokens": "max_tokens",
}


def generation_defaults(model: Any) -> dict[str, Any]:
    """Sampling defaults the model's ``generation_config.json`` sets (vLLM applies the same keys).

    Only values that differ from transformers' own defaults count (``to_diff_dict``), as in vLLM:
    ``GenerationConfig`` reports ``top_k=50`` for every model, which no model author chose.
    """
    gen = getattr(model, "generation_config", None)
    if gen is None:
        return {}
    diff = gen.to_diff_dict()
    return {ours: diff[key] for key, ours in GENERATION_KEYS.items() if diff.get(key) is not None}


def load_model(
    path: str,
    dtype: str = "auto",
    threads: int | None = None,
    *,
    kv_cache_bytes: int | None = None,
    prefix_cache_bytes: int = 256 << 20,
    adapters: dict[str, str] | None = None,
    runner: str = "auto",
    quantize: str = "auto",
) -> LoadedModel:
    """Load tokenizer and weights for inference (eval mode, no gradients) and build the model runner.

    ``runner`` is ``auto`` (the fast Llama runner when the architecture allows, else the generic one),
    ``llama`` or ``hf``. ``adapters`` maps names to peft LoRA directories (Llama runner only).
    ``quantize`` adds low-bit weight copies for steps of few tokens (Llama runner, CPU; see
    :class:`nexus_llm.serve.engine.llama.Linear`): ``auto`` only where that loses nothing.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from nexus_llm.serve.engine.llama import LlamaRunner, unsupported_reason
    from nexus_llm.serve.engine.runner import HFRunner

    cuda = torch.cuda.is_available()
    threads = threads or (None if cuda else default_threads())
    if threads and not cuda:
        torch.set_num_threads(threads)  # process-wide
    torch_dtype = getattr(torch, dtype) if dtype != "auto" else default_dtype(cuda)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
    if cuda:
        model = model.to("cuda")
    model.eval()
    gen = getattr(model, "generation_config", None)
    eos = _ids(getattr(gen, "eos_token_id", None)) | _ids(tokenizer.eos_token_id)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (min(eos) if eos else 0)
    ctx = context_length(model.config, tokenizer)
    reason = unsupported_reason(model)
    if runner == "llama" and reason:
        raise ValueError(f"the fast runner cannot serve this model: {reason}")
    if adapters and reason:
        raise ValueError(f"LoRA adapters need the fast runner, which cannot serve this model: {reason}")
    if quantize not in ("none", "auto") and (reason or runner == "hf"):
        raise ValueError(
            f"quantize {quantize!r} needs the fast runner, which cannot serve this model: {reason}"
        )
    if runner == "hf" or (runner == "auto" and reason):
        if adapters:
            raise ValueError("LoRA adapters are served by the fast runner only (runner: auto or llama)")
        if reason:
            log.info("serving with the generic runner: %s", reason)
        model_runner, kind = HFRunner(model), "hf"
    else:
        model_runner = LlamaRunner(
            model,
            context_length=ctx,
            kv_budget_bytes=kv_cache_bytes or default_kv_cache_bytes(cuda),
            prefix_cache_bytes=prefix_cache_bytes,
            adapters=adapters,
            quantize=quantize,
        )
        kind = "llama"
    weights = getattr(model_runner, "weights_note", None) or str(next(model.parameters()).dtype)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        context_length=ctx,
        eos_ids=frozenset(eos),
        bos_id=tokenizer.bos_token_id,
        pad_id=int(pad),
        vocab_size=int(model.get_input_embeddings().num_embeddings),
        runner=model_runner,
        adapters=tuple(adapters or {}),
        generation_defaults=generation_defaults(model),
        dtype=str(next(model.parameters()).dtype).removeprefix("torch."),
        threads=torch.get_num_threads(),
        runner_kind=kind,
        weights=weights.removeprefix("torch."),
    )
