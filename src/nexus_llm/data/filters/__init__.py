"""Document filters: pure functions of a :class:`DocView` and their settings.

Each filter returns ``None`` to keep the document or a reason string (``"<filter>.<rule>"``, named as
the setting in ``nexus.yaml`` that caused it) to reject it (language ID rejects as ``language.<code>``,
the language it found). Any executor — local processes or Spark tasks — calls :func:`filter_batch`,
so both engines decide identically.
"""

from __future__ import annotations

from dataclasses import dataclass

from nexus_llm.data.config import FiltersConfig, LanguageConfig
from nexus_llm.data.document import DocView
from nexus_llm.data.filters.c4 import c4_document_filter, c4_line_filter, count_sentences
from nexus_llm.data.filters.gopher import (
    gopher_quality_filter,
    gopher_repetition_batch,
    gopher_repetition_filter,
)
from nexus_llm.data.filters.guide import length_filter, line_break_filter
from nexus_llm.data.filters.junk import junk_filter
from nexus_llm.data.language import Result, identify
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
    "junk_filter",
    "length_filter",
    "line_break_filter",
]


def apply_filters(
    view: DocView, cfg: FiltersConfig, language: LanguageConfig | None = None
) -> tuple[DocView, str | None]:
    """Run the enabled filters in order: the (possibly edited) view and the first failure, if any."""
    return filter_batch([view], cfg, language).results[0]


def apply_filters_batch(
    views: list[DocView], cfg: FiltersConfig, language: LanguageConfig | None = None
) -> list[tuple[DocView, str | None]]:
    """:func:`apply_filters` for many documents; language ID and n-gram rules run over the batch."""
    return filter_batch(views, cfg, language).results


@dataclass
class FilteredBatch:
    """Filter results, and the n-gram statistics built on the way (reused for MinHash signatures)."""

    results: list[tuple[DocView, str | None]]
    ngrams: NgramBatch | None  # over the documents that passed the per-document filters
    ngram_rows: list[int]  # their positions in ``results``
    languages: list[Result | None]  # per document, when language ID ran on it


def filter_batch(
    views: list[DocView], cfg: FiltersConfig, language: LanguageConfig | None = None
) -> FilteredBatch:
    """The filters in order: length, line breaks, language, C4, Gopher quality, junk, repetition."""
    out = [_guide_rules(v, cfg) for v in views]
    languages: list[Result | None] = [None] * len(views)
    if language is not None and language.enabled:
        rows = [i for i, (_, reason) in enumerate(out) if reason is None]
        found = identify([views[i].text for i in rows], language.sample_chars, language.min_letters)
        for i, result in zip(rows, found, strict=True):
            languages[i] = result
            if (reason := language_reason(result, language)) is not None:
                out[i] = (views[i], reason)
    out = [
        _per_document(v, cfg, english=_english(languages[i])) if reason is None else (v, reason)
        for i, (v, reason) in enumerate(out)
    ]
    rows = [i for i, (_, reason) in enumerate(out) if reason is None]
    ngrams = NgramBatch([out[i][0] for i in rows]) if rows else None
    if cfg.gopher_repetition.enabled and ngrams is not None:
        reasons = gopher_repetition_batch([out[i][0] for i in rows], cfg.gopher_repetition, ngrams)
        for i, reason in zip(rows, reasons, strict=True):
            out[i] = (out[i][0], reason)
    return FilteredBatch(out, ngrams, rows, languages)


def language_reason(result: Result, cfg: LanguageConfig) -> str | None:
    """None to keep: a wanted language scored at least ``min_score``, or no decision possible."""
    if result.score is None:  # undetermined: too little prose to tell (code, listings)
        return None
    if result.language in cfg.languages:
        return None if result.score >= cfg.min_score else "language.min_score"
    return f"language.{result.language}"


def _english(result: Result | None) -> bool:
    """Whether the English-only rules (stop words, function words) apply: not to a document that
    language ID found to be in another language."""
    return result is None or result.score is None or result.language == "en"


def _guide_rules(view: DocView, cfg: FiltersConfig) -> tuple[DocView, str | None]:
    if not view.text:
        return view, "clean.empty"
    if cfg.length.enabled and (reason := length_filter(view, cfg.length)):
        return view, reason
    if cfg.line_breaks.enabled and (reason := line_break_filter(view, cfg.line_breaks)):
        return view, reason
    return view, None


def _per_document(view: DocView, cfg: FiltersConfig, english: bool = True) -> tuple[DocView, str | None]:
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
    if cfg.gopher_quality.enabled and (reason := gopher_quality_filter(view, cfg.gopher_quality, english)):
        return view, reason
    if cfg.junk.enabled and (reason := junk_filter(view, cfg.junk, english)):
        return view, reason
    return view, None
