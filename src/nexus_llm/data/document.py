"""A document's view, computed once and shared by every filter and by deduplication.

RedPajama v2 computes a document's words, lines and n-grams once; datatrove re-splits words in every
filter. ``DocView`` does the former: each property is computed on first use and cached.
"""

from __future__ import annotations

import re
import string
from functools import cached_property

import numpy as np
import xxhash

_PARAGRAPH_SPLIT = re.compile(r"\n\s*\n")
_PUNCT = string.punctuation + "“”‘’«»…—–·•¡¿©®°±×÷§¶†‡"
# str.translate runs in C: these tables replace the per-word Python loops that dominated the profile.
_PUNCT_TO_SPACE = str.maketrans(dict.fromkeys(_PUNCT, " "))
_DROP_NON_LETTERS = str.maketrans(dict.fromkeys(_PUNCT + string.digits, None))
# Multiplier of the rolling n-gram hash (an odd 64-bit constant, from splitmix64).
_NGRAM_MUL = np.uint64(0x9E3779B97F4A7C15)


class _WordHashes(dict):
    """word -> 64-bit hash, computed on first sight: most words recur, so most lookups are dict hits."""

    def __missing__(self, word: str) -> int:
        if len(self) > 2_000_000:  # bound the memory a worker spends on rare words
            self.clear()
        value = self[word] = xxhash.xxh3_64_intdigest(word.encode())
        return value


_WORD_HASHES = _WordHashes()


def word_hashes(words: list[str]) -> np.ndarray:
    """64-bit hashes of words (xxh3), as an array."""
    # map() over a dict's C lookup keeps the per-word cost out of the interpreter loop.
    return np.fromiter(map(_WORD_HASHES.__getitem__, words), dtype=np.uint64, count=len(words))


class DocView:
    """Lazily computed views of one cleaned text (lines, words, n-gram hashes)."""

    def __init__(self, text: str):
        self.text = text

    @cached_property
    def lines(self) -> list[str]:
        return self.text.split("\n")

    @cached_property
    def non_empty_lines(self) -> list[str]:
        return [line for line in self.lines if line.strip()]

    @cached_property
    def paragraphs(self) -> list[str]:
        return [p for p in _PARAGRAPH_SPLIT.split(self.text) if p.strip()]

    @cached_property
    def tokens(self) -> list[str]:
        """Whitespace-separated tokens, as the Gopher rules count words."""
        return self.text.split()

    @cached_property
    def alpha_tokens(self) -> int:
        """How many whitespace tokens contain a letter (digits and punctuation deleted, what remains)."""
        return len(self.text.translate(_DROP_NON_LETTERS).split())

    @cached_property
    def words(self) -> list[str]:
        """Lower-cased words: whitespace tokens with punctuation turned into separators."""
        return self.text.lower().translate(_PUNCT_TO_SPACE).split()

    @cached_property
    def word_lengths(self) -> np.ndarray:
        return np.fromiter(map(len, self.words), dtype=np.int64, count=len(self.words))

    @cached_property
    def word_hashes(self) -> np.ndarray:
        return word_hashes(self.words)

    @cached_property
    def _ngram_cache(self) -> dict[int, np.ndarray]:
        return {1: self.word_hashes}

    def ngram_hashes(self, n: int) -> np.ndarray:
        """64-bit hashes of every word n-gram (``len(words) - n + 1`` of them, or none)."""
        cache = self._ngram_cache
        if n in cache:
            return cache[n]
        if len(self.words) < n:
            cache[n] = np.empty(0, dtype=np.uint64)
            return cache[n]
        k = max(m for m in cache if m < n)
        prev = cache[k]
        base = self.word_hashes
        with np.errstate(over="ignore"):
            for m in range(k + 1, n + 1):
                # h(w[i:i+m]) = h(w[i:i+m-1]) * C + h(w[i+m-1]), wrapping mod 2**64.
                prev = prev[:-1] * _NGRAM_MUL + base[m - 1 :]
                cache[m] = prev
        return cache[n]
