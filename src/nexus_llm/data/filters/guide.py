"""The guide's Glue-job rules, computed correctly (on text whose newlines were kept)."""

from __future__ import annotations

from nexus_llm.data.config import LengthFilter, LineBreakFilter
from nexus_llm.data.document import DocView


def length_filter(view: DocView, cfg: LengthFilter) -> str | None:
    n = len(view.text)
    if n < cfg.min_chars:
        return "length.min_chars"
    if n > cfg.max_chars:
        return "length.max_chars"
    return None


def line_break_filter(view: DocView, cfg: LineBreakFilter) -> str | None:
    """Too many line breaks per character (the guide's rule, which could never fire there)."""
    if view.text.count("\n") / max(len(view.text), 1) > cfg.max_ratio:
        return "line_breaks.max_ratio"
    return None
