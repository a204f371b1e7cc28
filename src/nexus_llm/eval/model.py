"""Load the model to evaluate once (local directory or ``s3://`` URI) and identify it by content."""

from __future__ import annotations

import hashlib
from pathlib import Path

from nexus_llm import storage
from nexus_llm.eval.errors import EvalError

_HASH_WHOLE_BELOW = 16 << 20
"""Files smaller than this are hashed whole; larger weight files by name and size (fast, and enough to
tell checkpoints apart together with config.json)."""


def local_model_dir(uri: str) -> Path:
    """A local directory holding the model: ``uri`` itself, or a cached download of an ``s3://`` prefix.

    The download goes through the shared model cache (:func:`nexus_llm.models.loading.resolve_model`),
    keyed by the remote files' names, sizes and ETags: a model retrained into the same URI is downloaded
    again (and so evaluated and digested as the new weights), and a partial download is never used.
    """
    if not storage.is_remote(uri):
        path = Path(uri)
        if not (path / "config.json").is_file():
            raise EvalError(
                f"model directory {uri!r} not found or has no config.json. Pass a Hugging Face model "
                "directory (the `model/` output of `nexus train`) or an s3:// URI of one."
            )
        return path
    if not uri.endswith((".tar.gz", ".tgz")) and not storage.exists(storage.join(uri, "config.json")):
        raise EvalError(f"{uri} has no config.json: not a Hugging Face model directory.")
    from nexus_llm.models.loading import resolve_model

    return Path(resolve_model(uri))


def resolve_device(device: str) -> str:
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def load_model(local: Path, uri: str, device: str = "auto", dtype: str = "auto"):
    """``(model, tokenizer, device)`` from ``local`` (``local_model_dir(uri)``), the model in eval mode on
    ``device``; ``uri`` names the model in errors."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = resolve_device(device)
    auto = torch.float32 if device == "cpu" else "auto"  # CPUs are slow and inexact in half precision
    torch_dtype = auto if dtype == "auto" else getattr(torch, dtype)
    try:
        tokenizer = AutoTokenizer.from_pretrained(local)
        model = AutoModelForCausalLM.from_pretrained(local, dtype=torch_dtype)
    except (OSError, ValueError) as err:
        raise EvalError(f"cannot load the model in {uri}: {err}") from None
    if tokenizer.eos_token_id is None:
        raise EvalError(f"the tokenizer in {uri} has no EOS token; documents cannot be delimited.")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # batching needs a pad id; padded positions are masked
    model.to(device).eval()
    return model, tokenizer, device


def model_digest(local: Path) -> str:
    """A content digest of a model directory (see ``_HASH_WHOLE_BELOW``)."""
    h = hashlib.sha256()
    for path in sorted(p for p in local.rglob("*") if p.is_file() and not p.name.startswith(".")):
        rel = path.relative_to(local).as_posix()
        size = path.stat().st_size
        h.update(f"{rel}:{size}\n".encode())
        if size < _HASH_WHOLE_BELOW:
            h.update(path.read_bytes())
    return h.hexdigest()
