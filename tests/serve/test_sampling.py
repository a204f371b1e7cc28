"""Per-row sampling: greedy rows, filters, seeds that reproduce a row whatever shares its batch, and the
per-row logits processing (penalties, logit_bias) and logprobs of :func:`choose_tokens`."""

from __future__ import annotations

import math

import pytest
import torch

from nexus_llm.serve.engine.base import SamplingParams
from nexus_llm.serve.engine.sampling import RowState, choose_tokens, make_generator, sample_rows


def _gens(*seeds):
    return [make_generator(s) for s in seeds]


def test_temperature_zero_is_argmax_per_row():
    logits = torch.tensor([[0.1, 3.0, 0.2], [5.0, 0.0, 0.0]])
    out = sample_rows(logits, torch.zeros(2), torch.ones(2), torch.zeros(2, dtype=torch.long), _gens(1, 2))
    assert out.tolist() == [1, 0]


def test_top_k_one_and_tiny_top_p_keep_only_the_likeliest_token():
    torch.manual_seed(0)
    logits = torch.randn(4, 50)
    best = logits.argmax(-1)
    temps = torch.full((4,), 1.5)
    k1 = sample_rows(logits, temps, torch.ones(4), torch.ones(4, dtype=torch.long), _gens(1, 2, 3, 4))
    p0 = sample_rows(
        logits, temps, torch.full((4,), 1e-6), torch.zeros(4, dtype=torch.long), _gens(5, 6, 7, 8)
    )
    assert torch.equal(k1, best) and torch.equal(p0, best)


def test_a_seeded_row_draws_the_same_tokens_whatever_its_neighbours():
    torch.manual_seed(1)
    logits = torch.randn(3, 100)
    alone = [
        sample_rows(logits[1:2], torch.ones(1), torch.ones(1), torch.zeros(1, dtype=torch.long), _gens(42))
    ]
    gens = _gens(None, 42, None)
    batched = sample_rows(logits, torch.ones(3), torch.ones(3), torch.zeros(3, dtype=torch.long), gens)
    assert batched[1] == alone[0][0]


def test_sampling_follows_the_distribution():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]])).repeat(2000, 1)
    gens = _gens(*range(2000))
    out = sample_rows(logits, torch.ones(2000), torch.ones(2000), torch.zeros(2000, dtype=torch.long), gens)
    freq = torch.bincount(out, minlength=3).float() / 2000
    assert torch.allclose(freq, torch.tensor([0.7, 0.2, 0.1]), atol=0.04)


def _row(generated=(), prompt=(0,), **kw) -> RowState:
    params = SamplingParams(max_tokens=10, temperature=0.0, **kw)
    return RowState(params, make_generator(0), list(prompt), list(generated))


def test_logit_bias_forces_and_bans_tokens_per_row():
    logits = torch.tensor([[0.0, 5.0, 4.0, 1.0]] * 3)
    rows = [_row(), _row(logit_bias=((3, 100.0),)), _row(logit_bias=((1, -100.0),))]
    tokens, _ = choose_tokens(logits, rows)
    assert tokens == [1, 3, 2]


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"frequency_penalty": 0.3}, 2),  # 5 - 2 * 0.3 = 4.4 < 4.5
        ({"frequency_penalty": 0.2}, 1),  # 5 - 0.4 = 4.6
        ({"presence_penalty": 0.6}, 2),  # once, however often: 4.4
        ({"presence_penalty": 0.4}, 1),
        ({"repetition_penalty": 1.2}, 2),  # transformers': 5 / 1.2 = 4.17 (token 1 is in the prompt)
        ({"presence_penalty": -1.0}, 1),  # negative penalties encourage repeats
    ],
)
def test_penalties_follow_openai_and_transformers_definitions(kw, expected):
    logits = torch.tensor([[0.0, 5.0, 4.5, 0.0]])
    tokens, _ = choose_tokens(logits, [_row(generated=(1, 1), prompt=(1, 3), **kw)])
    assert tokens == [expected]


def test_logprobs_are_of_the_unprocessed_distribution_with_sorted_alternatives():
    logits = torch.tensor([[0.0, 5.0, 4.5, 1.0], [2.0, 0.0, 0.0, 0.0]])
    rows = [_row(logprobs=2, logit_bias=((3, 100.0),)), _row()]
    tokens, entries = choose_tokens(logits, rows)
    raw = logits[0].log_softmax(-1)
    assert tokens == [3, 0] and entries[1] is None
    assert entries[0].token == 3 and math.isclose(entries[0].logprob, float(raw[3]), rel_tol=1e-6)
    assert [t for t, _ in entries[0].top] == [1, 2]
    assert math.isclose(entries[0].top[0][1], float(raw[1]), rel_tol=1e-6)


def _freq(logits, top_p, top_k, n=3000):
    logits = logits.repeat(n, 1)
    out = sample_rows(
        logits, torch.ones(n), torch.full((n,), top_p), torch.full((n,), top_k, dtype=torch.long),
        _gens(*range(n)),
    )  # fmt: skip
    return torch.bincount(out, minlength=logits.shape[1]).float() / n


def test_top_p_and_top_k_sample_exactly_the_renormalised_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    expected = torch.tensor([0.625, 0.375, 0.0, 0.0])  # {0, 1}: token 2 has 0.8 more-likely mass
    assert torch.allclose(_freq(logits, 0.7, 0), expected, atol=0.04)
    assert torch.allclose(_freq(logits, 1.0, 2), expected, atol=0.04)


def test_rows_whose_draws_all_miss_a_tiny_nucleus_fall_back_to_sorting():
    logits = torch.linspace(0.0, -0.5, 1000).unsqueeze(0)  # nearly flat: token 0 alone is the nucleus
    freq = _freq(logits, 0.0005, 0, n=200)
    assert freq[0] == 1.0


@pytest.mark.parametrize(("top_p", "top_k"), [(0.9, 0), (1.0, 5), (0.6, 3), (1.0, 0)])
def test_a_candidate_is_accepted_exactly_when_it_lies_in_the_sorted_nucleus(top_p, top_k):
    from nexus_llm.serve.engine.sampling import _first_in_nucleus

    probs = torch.randn(3, 50, generator=torch.Generator().manual_seed(7)).mul(2).softmax(-1)
    for token in range(50):
        got = _first_in_nucleus(
            probs, torch.full((3, 1), token), torch.full((3,), top_p), torch.full((3,), top_k),
            torch.tensor([True, True, False]),
        )  # fmt: skip
        for row in range(2):
            order = probs[row].argsort(descending=True).tolist()
            before = probs[row][order].cumsum(0) - probs[row][order]
            rank = order.index(token)
            inside = (top_k == 0 or rank < top_k) and (top_p >= 1.0 or float(before[rank]) < top_p)
            assert got[row] == (0 if inside else -1), (row, token)
        assert got[2] == -1  # a greedy row is not sampled
