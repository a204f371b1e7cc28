"""The ``aws:`` section of ``nexus.yaml``."""

from __future__ import annotations

from nexus_llm.configbase import StrictModel


class AwsConfig(StrictModel):
    """``nexus aws`` settings (filled in by the deploy stage)."""
