"""Load the model to evaluate once (local directory or ``s3://`` URI) and identify it by content."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from nexus_llm import storage
from nexus_llm.eval.errors import EvalError

_HASH_WHOLE_BELOW = 16 << 20
"""Files smaller than this are hashed whole; larger weight files by name and size (fast, and enough to
tell checkpoints apart together with config.json)."""


def cache_dir() -> Path:
    root = os.environ.get("NEXUS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "nexus_llm"
    )
    return Path(root)


def local_model_dir(uri: str) -> Path:
    """A local directory holding the model: ``uri`` itself, or a cached download of an ``s3://`` prefix."""
    if not storage.is_remote(uri):
        path = Path(uri)
        if not (path / "config.json").is_file():
            raise EvalError(
                f"model directory {uri!r} not found or has no config.json. Pass a Hugging Face model "
                "directory (the `model/` output of `nexus train`) or an s3:// URI of one."
            )
        return path
    target = cache_dir() / "models" / hashlib.sha256(uri.encode()).hexdigest()[:16]
    done = target / ".nexus-complete"
    if not done.exists():
        fs, path = storage.get_fs(uri)
        if not fs.exists(storage.join(path, "config.json")):
            raise EvalError(f"{uri} has no config.json: not a Hugging Face model directory.")
        target.mkdir(parents=True, exist_ok=True)
        fs.get(path.rstrip("/") + "/", str(target), recursive=True)
        done.write_text(uri + "\n")
    return target


def resolve_device(device: str) -> str:
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def load_model(uri: str, device: str = "auto", dtype: str = "auto"):
    """``(model, tokenizer, local_dir, device)`` with the model in eval mode on ``device``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    local = local_model_dir(uri)
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
    return model, tokenizer, local, device


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


def context_length(model, tokenizer) -> int:
    """The longest sequence the model was built for."""
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(model.config, name, None)
        if isinstance(value, int) and value > 1:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 1 < limit < 1_000_000:
        return limit
    return 2048
