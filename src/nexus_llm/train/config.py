"""The ``train:`` section of ``nexus.yaml``."""

from __future__ import annotations

from nexus_llm.configbase import StrictModel


class TrainConfig(StrictModel):
    """``nexus train`` settings (filled in by the training stage)."""
