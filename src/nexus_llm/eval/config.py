"""The ``eval:`` section of ``nexus.yaml``."""

from __future__ import annotations

from nexus_llm.configbase import StrictModel


class EvalConfig(StrictModel):
    """``nexus eval`` settings (filled in by the evaluation stage)."""
