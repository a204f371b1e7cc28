"""``nexus model import``: any supported source → a normalized Hugging Face model directory.

The output is what every stage reads (``train.init_from``, ``nexus eval``, ``nexus serve``): ``config.json``
without any quantization section, ``model.safetensors`` in the chosen dtype, the tokenizer files with the
chat template (``chat_template.jinja``) when the source has one, ``generation_config.json``, and
``manifest.json`` (written last) naming the source and its digest. A GGUF file is dequantized by
transformers (with the ``gguf`` package); its weights are stored in bf16 by default, the precision the
published GGUF conversions start from.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from nexus_llm import storage
from nexus_llm.console import console
from nexus_llm.models.errors import ModelError
from nexus_llm.models.info import model_info
from nexus_llm.models.sources import LocalSource, localize

STAGE = "model.import"
DTYPES = ("auto", "bfloat16", "float16", "float32")


def _load(src: LocalSource, dtype: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {}
    folder = src.path
    if src.kind == "gguf":
        kwargs["gguf_file"] = src.path.name
        folder = src.path.parent
    wanted = "auto" if dtype == "auto" else getattr(torch, dtype)
    if src.kind == "gguf" and dtype == "auto":
        wanted = torch.bfloat16  # dequantized weights; a GGUF's own "dtype" is its quantization
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=wanted, **kwargs)
    except ImportError as err:
        raise ModelError(f"reading {src.uri} needs a package that is not installed: {err}") from None
    except (OSError, ValueError, KeyError, RuntimeError, EOFError) as err:
        what = "GGUF file" if src.kind == "gguf" else "model directory"
        raise ModelError(f"cannot read the {what} {src.uri}: {type(err).__name__}: {err}") from None
    return model, tokenizer


def _normalize(model, tokenizer) -> None:
    """Settings that only described the source (GGUF quantization) go; EOS/BOS/PAD ids are made explicit."""
    config = model.config
    if getattr(config, "quantization_config", None) is not None:
        del config.quantization_config  # the weights are dequantized: loading must not look for a GGUF
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None  # transformers refuses to save a "gguf-quantized" model otherwise
        model.is_quantized = False
    for attr in ("_name_or_path",):
        if hasattr(config, attr):
            setattr(config, attr, "")
    gen = model.generation_config
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if getattr(gen, key, None) is None and getattr(tokenizer, key, None) is not None:
            setattr(gen, key, getattr(tokenizer, key))
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token  # batching needs a pad id; padded positions are masked
    context = getattr(config, "max_position_embeddings", None)
    if isinstance(context, int) and context > 0:
        tokenizer.model_max_length = context


def import_model(source: str, out: str, dtype: str = "auto") -> dict[str, Any]:
    """Import ``source`` into ``out`` (local or ``s3://``); returns the manifest."""
    if dtype not in DTYPES:
        raise ModelError(f"--dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    started = time.perf_counter()
    try:
        storage.claim_output(out, STAGE, "a model import")
    except ValueError as err:
        raise ModelError(str(err)) from None
    with tempfile.TemporaryDirectory(prefix="nexus-import-") as tmp:
        scratch = Path(tmp)
        console.print(f"reading {source}")
        src = localize(source, scratch / "source")
        model, tokenizer = _load(src, dtype)
        _normalize(model, tokenizer)
        staged = scratch / "model"
        model.save_pretrained(staged, safe_serialization=True)
        tokenizer.save_pretrained(staged)
        del model
        info = model_info(str(staged))
        manifest = {
            "stage": STAGE,
            "source": {"uri": source, "kind": src.kind, "digest": src.digest},
            "dtype": info["dtype"],
            "info": info,
            "seconds": round(time.perf_counter() - started, 2),
        }
        _publish(staged, out)
    storage.write_manifest(out, manifest)
    return manifest


def _publish(staged: Path, out: str) -> None:
    """Replace ``out``'s files (its manifest is already gone) with the staged directory's."""
    if storage.is_remote(out):
        fs, path = storage.get_fs(out)
        if fs.exists(path):
            storage.remove(out)
        storage.upload_dir(str(staged), out)
        return
    dest = Path(out)
    if dest.exists():
        for old in dest.iterdir():
            shutil.rmtree(old) if old.is_dir() else old.unlink()
    dest.mkdir(parents=True, exist_ok=True)
    for item in staged.iterdir():
        shutil.move(str(item), dest / item.name)
