"""MinHash estimates Jaccard similarity without bias, and the default LSH bands catch J >= 0.8."""

import random

import numpy as np

from nexus_llm.data.config import NearDedupConfig
from nexus_llm.data.document import DocView
from nexus_llm.data.minhash import MinHasher, exact_hash, signature_agreement

CFG = NearDedupConfig()
VOCAB = [f"w{i}" for i in range(20000)]


def pair(rng: random.Random, words: int, changes: int) -> tuple[DocView, DocView, float]:
    a = [rng.choice(VOCAB) for _ in range(words)]
    b = list(a)
    for i in rng.sample(range(words), changes):
        b[i] = rng.choice(VOCAB)
    va, vb = DocView(" ".join(a)), DocView(" ".join(b))
    sa, sb = set(va.ngram_hashes(5).tolist()), set(vb.ngram_hashes(5).tolist())
    return va, vb, len(sa & sb) / len(sa | sb)


def test_signature_agreement_is_an_unbiased_jaccard_estimate():
    rng = random.Random(0)
    hasher = MinHasher(CFG)
    errors = []
    for _ in range(150):
        va, vb, jaccard = pair(rng, 300, rng.randint(1, 30))
        errors.append(float(signature_agreement(hasher.signature(va), hasher.signature(vb))) - jaccard)
    assert abs(np.mean(errors)) < 0.01
    assert np.std(errors) < 0.06


def test_default_bands_make_pairs_at_the_threshold_candidates_and_confirm_them():
    rng = random.Random(1)
    hasher = MinHasher(CFG)
    caught = total = 0
    while total < 200:
        va, vb, jaccard = pair(rng, 400, rng.randint(4, 9))
        if jaccard < CFG.threshold:
            continue
        total += 1
        sa, sb = hasher.signature(va), hasher.signature(vb)
        candidate = bool((hasher.band_keys(sa) == hasher.band_keys(sb)).any())
        confirmed = float(signature_agreement(sa, sb)) >= CFG.confirm_threshold
        caught += candidate and confirmed
    assert caught / total >= 0.99


def test_unrelated_documents_are_never_candidates():
    rng = random.Random(2)
    hasher = MinHasher(CFG)
    for _ in range(200):
        a = hasher.signature(DocView(" ".join(rng.choice(VOCAB) for _ in range(200))))
        b = hasher.signature(DocView(" ".join(rng.choice(VOCAB) for _ in range(200))))
        assert not (hasher.band_keys(a) == hasher.band_keys(b)).any()


def test_signatures_are_deterministic_across_instances():
    view = DocView("the same words in the same order give the same signature every time")
    assert np.array_equal(MinHasher(CFG).signature(view), MinHasher(CFG).signature(view))
    other_seed = MinHasher(NearDedupConfig(seed=2)).signature(view)
    assert not np.array_equal(MinHasher(CFG).signature(view), other_seed)


def test_short_documents_get_one_shingle_and_empty_ones_a_sentinel():
    hasher = MinHasher(CFG)
    assert len(hasher.shingles(DocView("only three words"))) == 1
    assert (hasher.signature(DocView("")) == 0xFFFFFFFF).all()


def test_exact_hash_ignores_case_and_whitespace_only():
    assert exact_hash("Hello   World\n") == exact_hash("hello world")
    assert exact_hash("Hello, World") != exact_hash("Hello World")


def test_bands_beyond_permutations_are_rejected_with_a_fix():
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="raise num_perm or lower bands/rows"):
        NearDedupConfig(num_perm=64, bands=20, rows=5)
