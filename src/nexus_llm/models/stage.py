"""The ``base_model`` stage of ``nexus run``: the pretrained model named by ``train.init_from``, imported
into ``<workspace>/base_model`` (any source ``nexus model import`` reads: GGUF, Hugging Face directory,
``s3://``, ``model.tar.gz``). Only when fine-tuning; training and evaluation then read the imported copy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nexus_llm import storage
from nexus_llm.workspace import Layout, Stage, digest, rounded


def _enabled(cfg) -> bool:
    return cfg.train.init_from is not None


def source_identity(uri: str) -> str:
    """Changes when the source's content does: ETags/sizes remotely, xxh3 of each file locally."""
    if storage.is_remote(uri):
        return storage.remote_identity(uri)
    fs, path = storage.get_fs(uri)
    if not fs.exists(path):
        raise FileNotFoundError(
            f"train.init_from {uri!r} does not exist: give a GGUF file, a Hugging Face model directory, "
            "an s3:// prefix or a model.tar.gz"
        )
    files = sorted(fs.find(path)) if fs.isdir(path) else [path]
    return digest([(f[len(path) :], storage.fingerprint(f)) for f in files])


def _key(cfg, _keys: Mapping[str, str]) -> Any:
    return {"source": source_identity(cfg.train.init_from), "dtype": "auto"}


def _run(cfg, layout: Layout) -> dict[str, Any]:
    from nexus_llm.models.importer import import_model

    return import_model(cfg.train.init_from, layout.base_model)


def _figures(m: dict[str, Any]) -> dict[str, Any]:
    info = m.get("info") or {}
    return rounded({"parameters": info.get("parameters"), "source": (m.get("source") or {}).get("kind")})


STAGE = Stage(
    "base_model", lambda layout: layout.base_model, _key, _run, _figures, enabled=_enabled,
    doc="import train.init_from",
)  # fmt: skip
