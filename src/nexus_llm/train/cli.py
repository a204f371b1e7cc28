"""``nexus train``."""

from __future__ import annotations


def train() -> None:
    """Train or fine-tune a model on token shards."""
    raise NotImplementedError("nexus train is not built yet")
