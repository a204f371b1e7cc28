"""``nexus data prepare``."""

from __future__ import annotations


def prepare() -> None:
    """Clean, filter and deduplicate raw text into curated Parquet shards."""
    raise NotImplementedError
