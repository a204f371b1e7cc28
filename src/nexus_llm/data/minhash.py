"""MinHash signatures and LSH band keys over word n-grams, vectorised with numpy.

Written here rather than taken from datasketch because both engines need the same signatures inside
worker processes and Spark tasks, computed from the n-gram hashes the filters already made (one pass
over the words), and because datasketch hashes every shingle with SHA-1 in Python and keeps its LSH
index in one process's memory. Band keys are written to files and grouped by sorting one hash range at
a time, so memory stays bounded by the range being grouped, not the corpus.

Signatures use one-permutation hashing with optimal densification (Li, Owen & Zhang 2012; Shrivastava
2017): each shingle's mixed 64-bit hash picks one of ``num_perm`` bins and competes for that bin's
minimum, so a document costs one pass over its shingles instead of ``num_perm`` passes; a bin that no
shingle reached copies the value of a bin chosen by a fixed pseudo-random probe sequence. Two documents
agree on a bin with probability equal to their Jaccard similarity, as with ``num_perm`` independent
permutations (tests/data/test_minhash.py checks the estimate and the LSH recall).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xxhash

from nexus_llm.data.config import NearDedupConfig
from nexus_llm.data.document import DocView
from nexus_llm.data.ngrams import NgramBatch

_EMPTY = np.uint32(0xFFFFFFFF)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_PROBES_PER_BIN = 8  # probe table length, in multiples of num_perm; a circular scan covers the rest
_PROBE_CHUNK = 16


def normalized_for_exact(text: str) -> str:
    """Text compared by exact deduplication: lower-cased, whitespace collapsed."""
    return " ".join(text.lower().split())


def exact_hash(text: str) -> int:
    """64-bit key of the normalized text (a false match needs ~4e9 documents to become likely)."""
    return xxhash.xxh3_64_intdigest(normalized_for_exact(text).encode("utf-8"))


class MinHasher:
    """Signatures and band keys for one ``NearDedupConfig`` (deterministic from its seed)."""

    def __init__(self, cfg: NearDedupConfig):
        self.cfg = cfg
        self.bins = cfg.num_perm
        self.salt = np.uint64(xxhash.xxh64_intdigest(f"nexus-minhash-{cfg.seed}".encode()))
        rng = np.random.default_rng(cfg.seed)
        self.probe = rng.integers(0, self.bins, size=(self.bins, _PROBES_PER_BIN * self.bins), dtype=np.int64)

    def shingles(self, view: DocView) -> np.ndarray:
        """Word n-gram hashes; a document shorter than n words is one shingle of all its words."""
        n = self.cfg.ngram
        if len(view.words) >= n:
            return view.ngram_hashes(n)
        if not view.words:
            return np.empty(0, dtype=np.uint64)
        return view.ngram_hashes(len(view.words))

    def signature(self, view: DocView) -> np.ndarray:
        """``num_perm`` uint32 values (all 0xFFFFFFFF for a document without words)."""
        return self.signatures([view])[0]

    def signatures(
        self, views: Sequence[DocView], batch: NgramBatch | None = None, rows: Sequence[int] | None = None
    ) -> np.ndarray:
        """Signatures of many documents, shape (documents, num_perm), in one vectorised pass.

        ``batch`` may be an :class:`NgramBatch` already built over more documents, of which ``views``
        are those at positions ``rows``.
        """
        if batch is None:
            batch, rows = NgramBatch(views), range(len(views))
        hashes, bounds = batch.shingles_by_document(self.cfg.ngram)
        lo, hi = bounds[np.asarray(rows, dtype=np.int64)], bounds[np.asarray(rows, dtype=np.int64) + 1]
        counts = hi - lo
        owner = np.repeat(np.arange(len(views)), counts)
        # the shingles of the chosen documents, in order: concatenated [lo, hi) ranges
        starts = np.repeat(lo - np.concatenate(([0], np.cumsum(counts)[:-1])), counts)
        hashes = hashes[np.arange(len(owner)) + starts]
        short = [i for i, v in enumerate(views) if 0 < len(v.words) < self.cfg.ngram]
        if short:  # fewer words than n: one shingle of all of them
            hashes = np.concatenate([hashes, [self.shingles(views[i])[0] for i in short]]).astype(np.uint64)
            owner = np.concatenate([owner, short])
        return self._one_permutation(hashes, owner, len(views))

    def _one_permutation(self, x: np.ndarray, owner: np.ndarray, docs: int) -> np.ndarray:
        y = _mix(x ^ self.salt)
        bins = ((y >> np.uint64(32)) * np.uint64(self.bins)) >> np.uint64(32)  # uniform in [0, bins)
        cell = owner.astype(np.int64) * self.bins + bins.astype(np.int64)
        sig = np.full(docs * self.bins, _EMPTY, dtype=np.uint32)
        np.minimum.at(sig, cell, (y & np.uint64(0xFFFFFFFF)).astype(np.uint32))
        filled = np.zeros(docs * self.bins, dtype=bool)
        filled[cell] = True
        sig, filled = sig.reshape(docs, self.bins), filled.reshape(docs, self.bins)
        self._densify(sig, filled)
        return sig

    def _densify(self, sig: np.ndarray, filled: np.ndarray) -> None:
        """Give every empty bin of a non-empty document the value of a probed non-empty bin."""
        rows, cols = np.nonzero(~filled & filled.any(axis=1)[:, None])
        if len(rows) == 0:
            return
        source = np.empty(len(rows), dtype=np.int64)
        pending = np.arange(len(rows))
        for t in range(0, self.probe.shape[1], _PROBE_CHUNK):  # probe a chunk at a time, first hit wins
            candidates = self.probe[cols[pending], t : t + _PROBE_CHUNK]
            hits = filled[rows[pending][:, None], candidates]
            found = hits.any(axis=1)
            first = hits.argmax(axis=1)
            source[pending[found]] = candidates[found, first[found]]
            pending = pending[~found]
            if len(pending) == 0:
                break
        for i in pending:  # probes exhausted (a document with very few shingles): next non-empty bin
            nonempty = np.flatnonzero(filled[rows[i]])
            source[i] = nonempty[np.searchsorted(nonempty, cols[i]) % len(nonempty)]
        sig[rows, cols] = sig[rows, source]

    def band_keys(self, sig: np.ndarray) -> np.ndarray:
        """One 64-bit key per band; equal keys mean the band's rows are all equal (LSH candidates)."""
        return band_keys(sig[None, :], self.cfg.bands, self.cfg.rows)[0]


def band_keys(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """Band keys for a matrix of signatures, shape (documents, bands)."""
    cut = sigs[:, : bands * rows].astype(np.uint64).reshape(len(sigs), bands, rows)
    key = np.zeros((len(sigs), bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for r in range(rows):
            key = _mix(key ^ cut[:, :, r])
        # Salt with the band index so equal rows in different bands never share a key.
        key = _mix(key + np.arange(1, bands + 1, dtype=np.uint64)[None, :])
    return key


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijective avalanche on uint64."""
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


def signature_agreement(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Fraction of equal positions, row by row: an unbiased estimate of Jaccard similarity."""
    return (a == b).mean(axis=-1)
