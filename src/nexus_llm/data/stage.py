"""The ``data`` stage of ``nexus run``: raw inputs → curated Parquet (see :mod:`nexus_llm.workspace`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nexus_llm.workspace import Layout, Stage, digest, rounded


def inputs_digest(cfg) -> str:
    """Content identity of the raw inputs (fingerprints: xxh3 locally, ETag on S3)."""
    from nexus_llm.data.plan import input_identities

    if not cfg.data.inputs:
        raise FileNotFoundError(
            "nexus.yaml has no data.inputs: list the raw files, directories or globs to curate"
        )
    return digest(input_identities(cfg.data.inputs))


def _key(cfg, _keys: Mapping[str, str]) -> Any:
    from nexus_llm.data.plan import settings_identity

    return {"inputs": inputs_digest(cfg), "settings": settings_identity(cfg.data)}


def _run(cfg, layout: Layout) -> dict[str, Any]:
    from nexus_llm.data.prepare import print_summary, run_prepare

    manifest = run_prepare(cfg.data.inputs, layout.curated, cfg.data)
    print_summary(manifest)
    return manifest


def _figures(m: dict[str, Any]) -> dict[str, Any]:
    return rounded(
        {
            "documents in": m.get("records_in"),
            "kept": m.get("records_out"),
            "quarantined": m.get("quarantined"),
        }
    )


STAGE = Stage("data", lambda layout: layout.curated, _key, _run, _figures, doc="clean, filter, dedup")
