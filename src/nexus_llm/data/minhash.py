"""MinHash signatures and LSH band keys over word n-grams, vectorised with numpy.

Written here rather than taken from datasketch because both engines need the same signatures inside
worker processes and Spark tasks, computed from the n-gram hashes the filters already made (one pass
over the words), and because datasketch hashes every shingle with SHA-1 in Python and keeps its LSH
index in one process's memory. Band keys are written to files and grouped by a sort (local) or a
shuffle (Spark), so memory stays bounded by the partition being grouped, not the corpus.

Permutations are multiply-shift hashes ``h_i(x) = (a_i * x + b_i) mod 2**64 >> 32`` with random odd
``a_i``, applied to 64-bit n-gram hashes.
"""

from __future__ import annotations

import numpy as np
import xxhash

from nexus_llm.data.config import NearDedupConfig
from nexus_llm.data.document import DocView

_EMPTY = np.uint32(0xFFFFFFFF)
_BLOCK = 2048  # n-gram rows per block: bounds the (rows x permutations) temporary array
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


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
        rng = np.random.default_rng(cfg.seed)
        self.a = rng.integers(1, 2**63, size=cfg.num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self.b = rng.integers(0, 2**63, size=cfg.num_perm, dtype=np.uint64)

    def shingles(self, view: DocView) -> np.ndarray:
        """Word n-gram hashes; a document shorter than n words is one shingle of all its words."""
        n = self.cfg.ngram
        if len(view.words) >= n:
            return view.ngram_hashes(n)
        if not view.words:
            return np.empty(0, dtype=np.uint64)
        return view.ngram_hashes(len(view.words))

    def signature(self, view: DocView) -> np.ndarray:
        """``num_perm`` uint32 minimum hash values (all 0xFFFFFFFF for a document without words)."""
        x = self.shingles(view)  # repeated shingles cannot change a minimum: no need to dedupe them
        sig = np.full(self.cfg.num_perm, _EMPTY, dtype=np.uint32)
        for i in range(0, len(x), _BLOCK):
            # In-place steps are several times faster than chained expressions with temporaries, and
            # the shift commutes with the minimum, so only the minima are shifted.
            block = x[i : i + _BLOCK, None] * self.a[None, :]
            block += self.b[None, :]
            np.minimum(sig, (block.min(axis=0) >> np.uint64(32)).astype(np.uint32), out=sig)
        return sig

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
