"""Gopher quality and repetition rules (Rae et al. 2021, "Scaling Language Models", appendix A).

Thresholds are the published ones (see ``GopherQualityFilter`` / ``GopherRepetitionFilter``).
Word-level statistics read the shared :class:`DocView`; n-gram repetition works on its 64-bit
n-gram hashes with numpy instead of Python tuples of strings.
"""

from __future__ import annotations

import numpy as np

from nexus_llm.data.config import GopherQualityFilter, GopherRepetitionFilter
from nexus_llm.data.document import DocView

STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
BULLETS = ("•", "‣", "◦", "⁃", "▪", "●", "-", "*", "·")
ELLIPSES = ("...", "…")


def gopher_quality_filter(view: DocView, cfg: GopherQualityFilter) -> str | None:
    n = len(view.tokens)
    if n < cfg.min_words:
        return "gopher_quality.min_words"
    if n > cfg.max_words:
        return "gopher_quality.max_words"
    lengths = view.word_lengths
    mean = float(lengths.mean()) if len(lengths) else 0.0
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
    if len(STOP_WORDS.intersection(view.words)) < cfg.min_stop_words:
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
    hashes = view.ngram_hashes(n)
    total = int(view.word_lengths.sum())
    if len(hashes) < 2 or total == 0:
        return 0.0
    # Run lengths of the sorted hashes: leaner than np.unique, which this loop calls per document.
    s = np.sort(hashes)
    bounds = np.flatnonzero(np.concatenate(([True], s[1:] != s[:-1], [True])))
    counts = np.diff(bounds)
    best = int(np.argmax(counts))
    if counts[best] < 2:
        return 0.0
    start = int(np.argmax(hashes == s[bounds[best]]))
    return int(view.word_lengths[start : start + n].sum()) * int(counts[best]) / total


def duplicate_ngram_char_fraction(view: DocView, n: int) -> float:
    """Characters of words covered by a repeated occurrence of any n-gram, over all word characters."""
    hashes = view.ngram_hashes(n)
    lengths = view.word_lengths
    total = int(lengths.sum())
    if len(hashes) < 2 or total == 0:
        return 0.0
    # A stable sort keeps equal hashes in document order: every element of a run but its first is a
    # repeated occurrence.
    order = np.argsort(hashes, kind="stable")
    s = hashes[order]
    starts = order[1:][s[1:] == s[:-1]]
    if len(starts) == 0:
        return 0.0
    # Mark the words each repeated occurrence covers (a difference array, then a running sum).
    cover = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.add.at(cover, starts, 1)
    np.add.at(cover, starts + n, -1)
    covered = np.cumsum(cover[:-1]) > 0
    return int(lengths[covered].sum()) / total


def gopher_repetition_filter(view: DocView, cfg: GopherRepetitionFilter) -> str | None:
    text_len = max(len(view.text), 1)
    paragraphs = view.paragraphs
    if paragraphs:
        count, chars = duplicates(paragraphs)
        if count / len(paragraphs) > cfg.max_dup_para_frac:
            return "gopher_repetition.max_dup_para_frac"
        if chars / text_len > cfg.max_dup_para_char_frac:
            return "gopher_repetition.max_dup_para_char_frac"
    lines = view.non_empty_lines
    if lines:
        count, chars = duplicates(lines)
        if count / len(lines) > cfg.max_dup_line_frac:
            return "gopher_repetition.max_dup_line_frac"
        if chars / text_len > cfg.max_dup_line_char_frac:
            return "gopher_repetition.max_dup_line_char_frac"
    for n, limit in sorted(cfg.max_top_ngram_char_frac.items()):
        if top_ngram_char_fraction(view, n) > limit:
            return f"gopher_repetition.max_top_ngram_char_frac.{n}"
    limits = sorted(cfg.max_dup_ngram_char_frac.items())
    for i, (n, limit) in enumerate(limits):
        frac = duplicate_ngram_char_fraction(view, n)
        if frac > limit:
            return f"gopher_repetition.max_dup_ngram_char_frac.{n}"
        # The fraction can only shrink as n grows (a repeated (n+1)-gram is made of two repeated
        # n-grams), so once it is under every remaining limit no larger n can fail.
        if frac <= min(lim for _, lim in limits[i:]):
            break
    return None
