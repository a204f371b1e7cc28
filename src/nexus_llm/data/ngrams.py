"""Word n-gram statistics for a batch of documents at once.

The Gopher repetition rules and MinHash both work on word n-gram hashes. Computed one document at a
time, numpy's per-call overhead dominates (a typical document has a few hundred words); here the
words of a batch of documents are concatenated and every statistic is one vectorised pass, with
n-grams never crossing a document boundary. A batch of one document gives exactly the per-document
answer, so callers may use any batch size.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from nexus_llm.data.document import DocView, word_hashes

_NGRAM_MUL = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constant (splitmix64's increment)


class NgramBatch:
    """The words of several documents, concatenated, with per-document n-gram statistics."""

    def __init__(self, views: Sequence[DocView]):
        counts = np.fromiter((len(v.words) for v in views), dtype=np.int64, count=len(views))
        self.docs = len(views)
        self.starts = np.concatenate(([0], np.cumsum(counts)))
        total = int(self.starts[-1])
        # One pass over all the batch's words (not one numpy call per document).
        words = list(itertools.chain.from_iterable(v.words for v in views))
        self.hashes = word_hashes(words)
        self.lengths = np.fromiter(map(len, words), dtype=np.int64, count=total)
        self.doc_of_word = np.repeat(np.arange(self.docs), counts)
        self.total_chars = np.bincount(self.doc_of_word, weights=self.lengths, minlength=self.docs)
        self._char_prefix = np.concatenate(([0], np.cumsum(self.lengths)))
        self._cache: dict[int, np.ndarray] = {1: self.hashes}

    def _rolling(self, n: int) -> np.ndarray:
        """Hashes of every window of n consecutive words of the concatenation (some cross documents)."""
        if n in self._cache:
            return self._cache[n]
        k = max(m for m in self._cache if m < n)
        prev = self._cache[k]
        for m in range(k + 1, n + 1):
            # h(w[i:i+m]) = h(w[i:i+m-1]) * C + h(w[i+m-1]), wrapping mod 2**64 (the DocView recurrence).
            prev = prev[: max(len(prev) - 1, 0)] * _NGRAM_MUL + self.hashes[m - 1 :]
            self._cache[m] = prev
        return prev

    def ngrams(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(hashes, start positions) of the n-grams that lie inside one document."""
        if len(self.hashes) < n:
            return np.empty(0, np.uint64), np.empty(0, np.int64)
        rolled = self._rolling(n)
        pos = np.arange(len(rolled))
        inside = pos + n <= self.starts[1:][self.doc_of_word[: len(rolled)]]
        return rolled[inside], pos[inside]

    def _keyed(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Document-major keys ``doc << 40 | top 40 bits of the n-gram hash``, and n-gram positions.

        Sorting them groups a batch by document, then by n-gram, so every per-document result is a
        contiguous segment (``reduceat``). 40 bits of hash keep a false match inside one document of
        a few thousand n-grams below one in 10^5.
        """
        hashes, pos = self.ngrams(n)
        doc = self.doc_of_word[pos].astype(np.uint64)
        return (doc << np.uint64(40)) | (hashes >> np.uint64(24)), pos

    def top_ngram_char_fraction(self, n: int) -> np.ndarray:
        """Per document: characters of its most frequent n-gram (times its count) over word characters.

        Among equally frequent n-grams the one with the most characters counts; an n-gram seen once
        counts as zero.
        """
        out = np.zeros(self.docs)
        keys, pos = self._keyed(n)
        if len(keys) < 2:
            return out
        order = np.argsort(keys)
        k = keys[order]
        first = np.flatnonzero(np.concatenate(([True], k[1:] != k[:-1])))
        count = np.diff(np.append(first, len(k))).astype(np.uint64)
        run_pos = pos[order][first]
        chars = (self._char_prefix[run_pos + n] - self._char_prefix[run_pos]).astype(np.uint64)
        run_doc = k[first] >> np.uint64(40)
        doc_first = np.flatnonzero(np.concatenate(([True], run_doc[1:] != run_doc[:-1])))
        best = np.maximum.reduceat(
            (count << np.uint64(32)) | np.minimum(chars, np.uint64(0xFFFFFFFF)), doc_first
        )
        docs = run_doc[doc_first].astype(np.int64)
        best_count, best_chars = best >> np.uint64(32), best & np.uint64(0xFFFFFFFF)
        repeated = best_count >= 2
        docs = docs[repeated]
        out[docs] = (best_count[repeated] * best_chars[repeated]) / np.maximum(self.total_chars[docs], 1)
        return out

    def duplicate_ngram_char_fraction(self, n: int, docs: np.ndarray | None = None) -> np.ndarray:
        """Per document: characters of words covered by a repeated occurrence of an n-gram, over all."""
        out = np.zeros(self.docs)
        keys, pos = self._keyed(n)
        if docs is not None:
            wanted = np.zeros(self.docs, dtype=bool)
            wanted[docs] = True
            keep = wanted[self.doc_of_word[pos]]
            keys, pos = keys[keep], pos[keep]
        if len(keys) < 2:
            return out
        # A stable sort keeps equal keys in document order: every element of a run but its first
        # is a repeated occurrence.
        order = np.argsort(keys, kind="stable")
        k = keys[order]
        starts = pos[order][1:][k[1:] == k[:-1]]
        if len(starts) == 0:
            return out
        cover = np.zeros(len(self.lengths) + 1, dtype=np.int64)
        np.add.at(cover, starts, 1)
        np.add.at(cover, starts + n, -1)
        covered = np.cumsum(cover[:-1]) > 0
        chars = np.bincount(self.doc_of_word[covered], weights=self.lengths[covered], minlength=self.docs)
        return chars / np.maximum(self.total_chars, 1)

    def shingles_by_document(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """n-gram hashes of every document, in document order, and each document's slice bounds."""
        hashes, pos = self.ngrams(n)
        bounds = np.searchsorted(self.doc_of_word[pos], np.arange(self.docs + 1))
        return hashes, bounds
