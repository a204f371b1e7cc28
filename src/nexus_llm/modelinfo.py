"""Facts about a Hugging Face model that several stages need (kept in one place)."""

from __future__ import annotations

from typing import Any

CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


def context_length(config: Any, tokenizer: Any = None, default: int = 2048) -> int:
    """The model's context window: from its config, else the tokenizer's ``model_max_length``."""
    for key in CONTEXT_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit < 1_000_000 else default
