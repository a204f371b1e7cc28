"""The ``tokenizer:`` and ``tokenize:`` sections of ``nexus.yaml``."""

from __future__ import annotations

from nexus_llm.configbase import StrictModel


class TokenizerConfig(StrictModel):
    """``nexus tokenizer train`` settings (filled in by the tokenizer stage)."""


class TokenizeConfig(StrictModel):
    """``nexus data tokenize`` settings (filled in by the tokenizer stage)."""
