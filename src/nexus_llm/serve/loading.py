"""Find and load the model to serve: a local Hugging Face directory, or an ``s3://`` one cached locally."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nexus_llm import storage
from nexus_llm.modelinfo import context_length


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


def resolve_model(uri: str, cache_dir: str | None = None) -> str:
    """A local directory for ``uri``: itself when local, else a cached download (re-fetched when it changes).

    The cache is the shared one (:func:`nexus_llm.storage.cached_local_copy`): keyed by the remote
    files' names, sizes and ETags, filled by an atomic rename, so replicas starting together on one
    host can race to download the same model safely. The deploy stage's copier also unpacks a
    SageMaker ``model.tar.gz``.
    """
    if not storage.is_remote(uri):
        return uri
    from nexus_llm.deploy.fetch_model import fetch_model

    return storage.cached_local_copy(uri, kind="serve-models", fetch=fetch_model, cache_dir=cache_dir)


def _ids(value) -> set[int]:
    if value is None:
        return set()
    return {int(v) for v in value} if isinstance(value, (list, tuple)) else {int(value)}


def default_threads() -> int:
    """torch threads for CPU serving: every usable core but one, which stays free for the HTTP side.

    torch's OpenMP workers spin at barriers; when they share cores with the event loop (or with other
    processes) a step can take tens of times longer, so leaving a core free matters more than using it.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus - 1)


def load_model(path: str, dtype: str = "auto", threads: int | None = None) -> LoadedModel:
    """Load tokenizer and weights for inference (eval mode, no gradients)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cuda = torch.cuda.is_available()
    if threads and not cuda:
        torch.set_num_threads(threads)  # process-wide: the server passes default_threads()
    torch_dtype = getattr(torch, dtype) if dtype != "auto" else ("auto" if cuda else torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
    if cuda:
        model = model.to("cuda")
    model.eval()
    gen = getattr(model, "generation_config", None)
    eos = _ids(getattr(gen, "eos_token_id", None)) | _ids(tokenizer.eos_token_id)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (min(eos) if eos else 0)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        context_length=context_length(model.config, tokenizer),
        eos_ids=frozenset(eos),
        bos_id=tokenizer.bos_token_id,
        pad_id=int(pad),
        vocab_size=int(model.get_input_embeddings().num_embeddings),
    )
