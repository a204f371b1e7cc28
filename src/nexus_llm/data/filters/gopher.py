"""Gopher quality and repetition rules (Rae et al. 2021, "Scaling Language Models", appendix A).

Thresholds are the published ones (see ``GopherQualityFilter`` / ``GopherRepetitionFilter``).
Word-level statistics read the shared :class:`DocView`; n-gram repetition works on its 64-bit
n-gram hashes with numpy instead of Python tuples of strings.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nexus_llm.data.config import GopherQualityFilter, GopherRepetitionFilter
from nexus_llm.data.document import DocView
from nexus_llm.data.ngrams import NgramBatch

STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
BULLETS = ("•", "‣", "◦", "⁃", "▪", "●", "-", "*", "·")
ELLIPSES = ("...", "…")


def gopher_quality_filter(view: DocView, cfg: GopherQualityFilter, english: bool = True) -> str | None:
    """The quality rules; the stop-word rule (English words) only for ``english`` documents."""
    n = len(view.tokens)
    if n < cfg.min_words:
        return "gopher_quality.min_words"
    if n > cfg.max_words:
        return "gopher_quality.max_words"
    words = view.words
    mean = sum(map(len, words)) / len(words) if words else 0.0
    if mean < cfg.min_avg_word_length:
        return "gopher_quality.min_avg_word_length"
    if mean > cfg.max_avg_word_length:
        return "gopher_quality.max_avg_word_length"
    text = view.text
    symbols = text.count("#") + text.count("...") + text.count("…")
    if symbols / n > cfg.max_symbol_word_ratio:
        return "gopher_quality.max_symbol_word_ratio"
    lines = view.non_empty_lines
    if lines:
        bullets = sum(1 for line in lines if line.lstrip().startswith(BULLETS))
        if bullets / len(lines) > cfg.max_bullet_lines_ratio:
            return "gopher_quality.max_bullet_lines_ratio"
        ellipsis = sum(1 for line in lines if line.rstrip().endswith(ELLIPSES))
        if ellipsis / len(lines) > cfg.max_ellipsis_lines_ratio:
            return "gopher_quality.max_ellipsis_lines_ratio"
    if view.alpha_tokens / n < cfg.min_alpha_words_ratio:
        return "gopher_quality.min_alpha_words_ratio"
    if english and len(STOP_WORDS.intersection(view.words)) < cfg.min_stop_words:
        return "gopher_quality.min_stop_words"
    return None


def duplicates(items: list[str]) -> tuple[int, int]:
    """How many items repeat an earlier one, and how many characters those repeats hold."""
    seen: set[str] = set()
    count = chars = 0
    for item in items:
        if item in seen:
            count += 1
            chars += len(item)
        else:
            seen.add(item)
    return count, chars


def top_ngram_char_fraction(view: DocView, n: int) -> float:
    """Characters in the most frequent word n-gram (all its occurrences) over all word characters."""
    return float(NgramBatch([view]).top_ngram_char_fraction(n)[0])


def duplicate_ngram_char_fraction(view: DocView, n: int) -> float:
    """Characters of words covered by a repeated occurrence of any n-gram, over all word characters."""
    return float(NgramBatch([view]).duplicate_ngram_char_fraction(n)[0])


def _line_rules(view: DocView, cfg: GopherRepetitionFilter) -> str | None:
    """Duplicate paragraphs, then duplicate lines: by count and by share of the characters."""
    text_len = max(len(view.text), 1)
    for items, unit in ((view.paragraphs, "para"), (view.non_empty_lines, "line")):
        if not items:
            continue
        count, chars = duplicates(items)
        if count / len(items) > getattr(cfg, f"max_dup_{unit}_frac"):
            return f"gopher_repetition.max_dup_{unit}_frac"
        if chars / text_len > getattr(cfg, f"max_dup_{unit}_char_frac"):
            return f"gopher_repetition.max_dup_{unit}_char_frac"
    return None


def gopher_repetition_batch(
    views: Sequence[DocView], cfg: GopherRepetitionFilter, batch: NgramBatch | None = None
) -> list[str | None]:
    """The repetition rules for many documents at once (same answers as one at a time).

    ``batch``, when given, holds the n-gram statistics of exactly ``views``.
    """
    reasons = [_line_rules(v, cfg) for v in views]
    if batch is None:
        batch = NgramBatch(views)
    alive = list(range(len(views)))
    pending = np.array([r is None for r in reasons], dtype=bool)
    for n, limit in sorted(cfg.max_top_ngram_char_frac.items()):
        fails = pending & (batch.top_ngram_char_fraction(n) > limit)
        for j in np.flatnonzero(fails):
            reasons[alive[j]] = f"gopher_repetition.max_top_ngram_char_frac.{n}"
        pending &= ~fails
    limits = sorted(cfg.max_dup_ngram_char_frac.items())
    for i, (n, limit) in enumerate(limits):
        if not pending.any():
            break
        frac = batch.duplicate_ngram_char_fraction(n, docs=np.flatnonzero(pending))
        fails = pending & (frac > limit)
        for j in np.flatnonzero(fails):
            reasons[alive[j]] = f"gopher_repetition.max_dup_ngram_char_frac.{n}"
        # The fraction can only shrink as n grows (a repeated (n+1)-gram is made of two repeated
        # n-grams): a document under every remaining limit cannot fail a larger n.
        pending &= ~fails & (frac > min(lim for _, lim in limits[i:]))
    return reasons


def gopher_repetition_filter(view: DocView, cfg: GopherRepetitionFilter) -> str | None:
    return gopher_repetition_batch([view], cfg)[0]
