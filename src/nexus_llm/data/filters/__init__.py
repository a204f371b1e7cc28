"""Document filters: pure functions of a :class:`DocView` and their settings.

Each filter returns ``None`` to keep the document or a reason string (``"<filter>.<rule>"``, named as
the setting in ``nexus.yaml`` that caused it) to reject it. Any executor — local processes or Spark
tasks — calls :func:`apply_filters`, so both engines decide identically.
"""

from __future__ import annotations

from dataclasses import dataclass

from nexus_llm.data.config import FiltersConfig
from nexus_llm.data.document import DocView
from nexus_llm.data.filters.c4 import c4_document_filter, c4_line_filter, count_sentences
from nexus_llm.data.filters.gopher import (
    gopher_quality_filter,
    gopher_repetition_batch,
    gopher_repetition_filter,
)
from nexus_llm.data.filters.guide import length_filter, line_break_filter
from nexus_llm.data.ngrams import NgramBatch

__all__ = [
    "FilteredBatch",
    "apply_filters",
    "apply_filters_batch",
    "c4_document_filter",
    "c4_line_filter",
    "filter_batch",
    "gopher_quality_filter",
    "gopher_repetition_filter",
    "length_filter",
    "line_break_filter",
]


def apply_filters(view: DocView, cfg: FiltersConfig) -> tuple[DocView, str | None]:
    """Run the enabled filters in order: the (possibly edited) view and the first failure, if any."""
    return filter_batch([view], cfg).results[0]


def apply_filters_batch(views: list[DocView], cfg: FiltersConfig) -> list[tuple[DocView, str | None]]:
    """:func:`apply_filters` for many documents; the n-gram rules run vectorised over the batch."""
    return filter_batch(views, cfg).results


@dataclass
class FilteredBatch:
    """Filter results, and the n-gram statistics built on the way (reused for MinHash signatures)."""

    results: list[tuple[DocView, str | None]]
    ngrams: NgramBatch | None  # over the documents that passed the per-document filters
    ngram_rows: list[int]  # their positions in ``results``


def filter_batch(views: list[DocView], cfg: FiltersConfig) -> FilteredBatch:
    out = [_per_document(v, cfg) for v in views]
    rows = [i for i, (_, reason) in enumerate(out) if reason is None]
    ngrams = NgramBatch([out[i][0] for i in rows]) if rows else None
    if cfg.gopher_repetition.enabled and ngrams is not None:
        reasons = gopher_repetition_batch([out[i][0] for i in rows], cfg.gopher_repetition, ngrams)
        for i, reason in zip(rows, reasons, strict=True):
            out[i] = (out[i][0], reason)
    return FilteredBatch(out, ngrams, rows)


def _per_document(view: DocView, cfg: FiltersConfig) -> tuple[DocView, str | None]:
    if not view.text:
        return view, "clean.empty"
    if cfg.length.enabled and (reason := length_filter(view, cfg.length)):
        return view, reason
    if cfg.line_breaks.enabled and (reason := line_break_filter(view, cfg.line_breaks)):
        return view, reason
    if cfg.c4.enabled:
        if reason := c4_document_filter(view, cfg.c4):
            return view, reason
        if cfg.c4.remove_lines:
            edited = c4_line_filter(view.text, cfg.c4)
            if edited != view.text:
                view = DocView(edited)
            if not view.text:
                return view, "c4.no_lines_left"
        if count_sentences(view.text) < cfg.c4.min_sentences:
            return view, "c4.min_sentences"
    if cfg.gopher_quality.enabled and (reason := gopher_quality_filter(view, cfg.gopher_quality)):
        return view, reason
    return view, None
