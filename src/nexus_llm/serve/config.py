"""The ``serve:`` section of ``nexus.yaml``."""

from __future__ import annotations

from nexus_llm.configbase import StrictModel


class ServeConfig(StrictModel):
    """``nexus serve`` settings (filled in by the serving stage)."""
