"""Per-row sampling: greedy rows, filters, and seeds that reproduce a row whatever shares its batch."""

from __future__ import annotations

import torch

from nexus_llm.serve.sampling import RowSampler, sample_rows


def _gens(*seeds):
    return [RowSampler.make_generator(s) for s in seeds]


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


def test_row_sampler_select_and_extend_keep_rows_aligned():
    a, b = RowSampler(), RowSampler()
    a.append(0.0, 1.0, 0, RowSampler.make_generator(1))
    a.append(1.0, 0.5, 3, RowSampler.make_generator(2))
    b.append(0.7, 0.9, 0, RowSampler.make_generator(3))
    a.extend(b)
    a.select([2, 0])
    assert a.temperature.tolist() == [0.699999988079071, 0.0]
    assert a.top_k.tolist() == [0, 0] and len(a.generators) == 2


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
