"""Deduplication decisions shared by both engines: group equal keys, confirm, connect, pick survivors.

Every document carries an exact key (hash of its normalized text) and, for near-duplicates, one LSH key
per band. Documents with an equal key are linked to the first of them in input order; band links are
kept only when the two MinHash signatures agree on enough permutations. The connected components of
the links are the duplicate clusters, and each cluster's survivor is its first document in input order,
so the result depends on neither the engine nor the number of workers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

EXACT = "exact_duplicate"
NEAR = "near_duplicate"


def link_equal_keys(keys: np.ndarray, ordinals: np.ndarray) -> np.ndarray:
    """Pairs ``(first, other)`` linking every document to the first (lowest ordinal) with its key."""
    if len(keys) < 2:
        return np.empty((0, 2), dtype=np.int64)
    order = np.lexsort((ordinals, keys))
    k, o = keys[order], ordinals[order]
    starts = np.ones(len(k), dtype=bool)
    starts[1:] = k[1:] != k[:-1]
    group = np.cumsum(starts) - 1
    first = o[starts][group]
    member = ~starts
    return np.stack([first[member], o[member]], axis=1)


def key_ranges(n_docs: int, budget_bytes: int) -> int:
    """How many hash ranges to group separately so one range's arrays fit the memory budget."""
    return max(1, int(np.ceil(n_docs * 16 / max(budget_bytes, 1))))


def range_of(keys: np.ndarray, parts: int) -> np.ndarray:
    """Which of ``parts`` equal hash ranges each key falls in (keys are uniform 64-bit hashes)."""
    if parts == 1:
        return np.zeros(len(keys), dtype=np.uint64)
    return np.minimum(keys // np.uint64((1 << 64) // parts), np.uint64(parts - 1))


@dataclass
class Resolution:
    """Which documents are duplicates: ordinal → (reason, ordinal of the cluster's survivor)."""

    removed: dict[int, tuple[str, int]]
    exact: int
    near: int
    candidates: int
    confirmed: int


def confirm_pairs(
    pairs: np.ndarray, signatures: Callable[[np.ndarray], np.ndarray], threshold: float
) -> np.ndarray:
    """Keep candidate pairs whose signatures agree on at least ``threshold`` of the permutations."""
    if len(pairs) == 0:
        return pairs
    a = signatures(pairs[:, 0])
    b = signatures(pairs[:, 1])
    return pairs[(a == b).mean(axis=1) >= threshold]


def unique_pairs(chunks: Iterable[np.ndarray]) -> np.ndarray:
    chunks = [c for c in chunks if len(c)]
    if not chunks:
        return np.empty((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(chunks), axis=0)


def resolve(exact_pairs: np.ndarray, near_pairs: np.ndarray, candidates: int) -> Resolution:
    """Cluster the links and name every non-survivor with its reason and survivor.

    A document is an ``exact_duplicate`` when an earlier document has the same normalized text, else a
    ``near_duplicate``; either way it points at the first document of its cluster.
    """
    pairs = np.concatenate([exact_pairs, near_pairs]) if len(near_pairs) else exact_pairs
    if len(pairs) == 0:
        return Resolution({}, 0, 0, candidates, len(near_pairs))
    nodes, inverse = np.unique(pairs.ravel(), return_inverse=True)
    edges = inverse.reshape(-1, 2)
    graph = coo_matrix(
        (np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])), shape=(len(nodes),) * 2
    )
    _, label = connected_components(graph, directed=False)
    # nodes are sorted, so the first node seen for each label is that cluster's lowest ordinal.
    _, first_index = np.unique(label, return_index=True)
    survivor = nodes[first_index][label]
    exact_members = set(exact_pairs[:, 1].tolist()) if len(exact_pairs) else set()
    removed: dict[int, tuple[str, int]] = {}
    n_exact = 0
    for node, surv in zip(nodes.tolist(), survivor.tolist(), strict=True):
        if node == surv:
            continue
        if node in exact_members:
            removed[node] = (EXACT, surv)
            n_exact += 1
        else:
            removed[node] = (NEAR, surv)
    return Resolution(removed, n_exact, len(removed) - n_exact, candidates, len(near_pairs))
