"""``nexus tokenizer train`` and ``nexus data tokenize``."""

from __future__ import annotations


def train_tokenizer() -> None:
    """Train a byte-level BPE tokenizer on curated data."""
    raise NotImplementedError("nexus tokenizer train is not built yet")


def tokenize() -> None:
    """Encode curated documents into packed token shards."""
    raise NotImplementedError("nexus data tokenize is not built yet")
