"""``nexus model info``: what a model directory holds, read from its files without loading the weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nexus_llm.modelinfo import context_length
from nexus_llm.models.errors import ModelError

_DTYPE_NAMES = {"BF16": "bfloat16", "F16": "float16", "F32": "float32", "F64": "float64", "I8": "int8"}


def _safetensors_shapes(folder: Path) -> tuple[int, set[str]]:
    """(number of parameters, dtypes) from the safetensors headers (8 bytes + JSON at each file's start)."""
    total, dtypes = 0, set()
    for f in sorted(folder.glob("*.safetensors")):
        with open(f, "rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(size))
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            n = 1
            for dim in entry["shape"]:
                n *= dim
            total += n
            dtypes.add(_DTYPE_NAMES.get(entry["dtype"], entry["dtype"].lower()))
    return total, dtypes


def _chat_template(folder: Path) -> bool:
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    cfg = folder / "tokenizer_config.json"
    return cfg.is_file() and bool(json.loads(cfg.read_text(encoding="utf-8")).get("chat_template"))


def model_info(path: str) -> dict[str, Any]:
    """Architecture, parameters, context, dtype, vocabulary and chat template of a local model directory."""
    folder = Path(path)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ModelError(f"{path} has no config.json: not a Hugging Face model directory")
    from types import SimpleNamespace

    raw = json.loads(config_file.read_text(encoding="utf-8"))
    params, dtypes = _safetensors_shapes(folder)  # a tied output head is stored, and counted, once
    return {
        "architecture": (raw.get("architectures") or [raw.get("model_type", "?")])[0],
        "model_type": raw.get("model_type"),
        "parameters": params or None,
        "layers": raw.get("num_hidden_layers"),
        "hidden_size": raw.get("hidden_size"),
        "attention_heads": raw.get("num_attention_heads"),
        "kv_heads": raw.get("num_key_value_heads"),
        "context_length": context_length(SimpleNamespace(**raw)),
        "dtype": ", ".join(sorted(dtypes)) if dtypes else raw.get("dtype") or raw.get("torch_dtype"),
        "vocab_size": raw.get("vocab_size"),
        "tied_embeddings": bool(raw.get("tie_word_embeddings", False)),
        "chat_template": _chat_template(folder),
        "weights": sorted(p.name for p in folder.glob("*.safetensors")) or None,
    }
