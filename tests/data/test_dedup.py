"""Survivors are the first document of each duplicate cluster, whatever the grouping."""

import numpy as np

from nexus_llm.data import dedup


def test_each_document_links_to_the_first_with_its_key():
    keys = np.array([7, 3, 7, 3, 9, 7], dtype=np.uint64)
    ordinals = np.array([50, 10, 20, 40, 30, 60], dtype=np.int64)
    pairs = {tuple(p) for p in dedup.link_equal_keys(keys, ordinals).tolist()}
    assert pairs == {(10, 40), (20, 50), (20, 60)}


def test_grouping_by_hash_range_gives_the_same_links():
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 2**64 - 1, size=5000, dtype=np.uint64, endpoint=True)
    keys[rng.integers(0, 5000, 800)] = keys[rng.integers(0, 5000, 800)]
    ordinals = rng.permutation(5000).astype(np.int64)
    whole = dedup.unique_pairs([dedup.link_equal_keys(keys, ordinals)])
    parts = 7
    ranges = dedup.range_of(keys, parts)
    split = dedup.unique_pairs(
        [dedup.link_equal_keys(keys[ranges == p], ordinals[ranges == p]) for p in range(parts)]
    )
    assert len(whole) > 0
    assert np.array_equal(whole, split)


def test_clusters_keep_their_lowest_ordinal_and_name_the_reason():
    exact = np.array([[1, 5]], dtype=np.int64)
    near = np.array([[1, 3], [3, 8], [20, 21]], dtype=np.int64)  # 8 joins 1 through 3 (a chain)
    res = dedup.resolve(exact, near, candidates=3)
    assert res.removed == {
        5: (dedup.EXACT, 1),
        3: (dedup.NEAR, 1),
        8: (dedup.NEAR, 1),
        21: (dedup.NEAR, 20),
    }
    assert (res.exact, res.near) == (1, 3)


def test_confirm_keeps_pairs_whose_signatures_agree_enough():
    sigs = {1: np.array([1, 2, 3, 4]), 2: np.array([1, 2, 3, 9]), 3: np.array([5, 6, 7, 8])}
    lookup = lambda ords: np.stack([sigs[int(o)] for o in ords])  # noqa: E731
    pairs = np.array([[1, 2], [1, 3]], dtype=np.int64)
    assert dedup.confirm_pairs(pairs, lookup, 0.75).tolist() == [[1, 2]]
