"""Next-token choice for a batch whose rows have their own temperature, top-p, top-k and seed.

transformers' logits processors take one setting for the whole batch, and ``torch.multinomial`` draws
from one random stream, so a request's ``seed`` could not make its output reproducible when it shares
a batch. Here each row keeps its own ``torch.Generator`` and draws one uniform number per step, and
the filters are applied row-wise in one vectorised pass.
"""

from __future__ import annotations

import torch


class RowSampler:
    """Per-row sampling settings, kept as tensors aligned with the batch rows."""

    def __init__(self) -> None:
        self.temperature = torch.empty(0)
        self.top_p = torch.empty(0)
        self.top_k = torch.empty(0, dtype=torch.long)
        self.generators: list[torch.Generator] = []

    @staticmethod
    def make_generator(seed: int | None) -> torch.Generator:
        g = torch.Generator()
        if seed is None:
            g.seed()  # a fresh non-deterministic seed
        else:
            g.manual_seed(seed)
        return g

    def append(self, temperature: float, top_p: float, top_k: int, generator: torch.Generator) -> None:
        self.temperature = torch.cat([self.temperature, torch.tensor([temperature], dtype=torch.float32)])
        self.top_p = torch.cat([self.top_p, torch.tensor([top_p], dtype=torch.float32)])
        self.top_k = torch.cat([self.top_k, torch.tensor([top_k], dtype=torch.long)])
        self.generators.append(generator)

    def extend(self, other: RowSampler) -> None:
        self.temperature = torch.cat([self.temperature, other.temperature])
        self.top_p = torch.cat([self.top_p, other.top_p])
        self.top_k = torch.cat([self.top_k, other.top_k])
        self.generators.extend(other.generators)

    def select(self, keep: list[int]) -> None:
        idx = torch.tensor(keep, dtype=torch.long)
        self.temperature = self.temperature.index_select(0, idx)
        self.top_p = self.top_p.index_select(0, idx)
        self.top_k = self.top_k.index_select(0, idx)
        self.generators = [self.generators[i] for i in keep]

    def sample(self, logits: torch.Tensor) -> torch.Tensor:
        """Choose one token per row of ``logits`` ([rows, vocab], float32)."""
        return sample_rows(logits, self.temperature, self.top_p, self.top_k, self.generators)


TRIALS = 4  # draws per row per step for the rejection sampler (the rest fall back to a sort)


def sample_rows(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    top_p: torch.Tensor,
    top_k: torch.Tensor,
    generators: list[torch.Generator],
) -> torch.Tensor:
    """Greedy where ``temperature == 0``; elsewhere sample after temperature, top-k and top-p.

    Top-p/top-k are usually done by sorting the vocabulary, which on CPU costs as much as the decode
    step itself for a batch. Instead each row draws a token from the full distribution and keeps it if it
    lies in the nucleus (fewer than ``top_k`` tokens, and less than ``top_p`` mass, are more likely than
    it): rejection sampling, which yields exactly the filtered distribution. Each row draws a fixed
    number of uniforms per step from its own generator, so seeds stay reproducible; the rare row whose
    draws are all rejected is sampled by sorting.
    """
    device = logits.device
    temperature, top_p, top_k = temperature.to(device), top_p.to(device), top_k.to(device)
    greedy = logits.argmax(dim=-1)
    sampled = temperature > 0
    if not bool(sampled.any()):
        return greedy
    probs = (logits / temperature.clamp(min=1e-6).unsqueeze(-1)).softmax(dim=-1)
    u = torch.stack([torch.rand(TRIALS + 1, generator=g) for g in generators]).to(device)
    cdf = probs.cumsum(dim=-1)
    vocab = probs.shape[-1]
    candidates = torch.searchsorted(cdf, (u[:, :TRIALS] * cdf[:, -1:]).contiguous()).clamp(max=vocab - 1)
    accepted = _in_nucleus(probs, candidates, top_p, top_k)
    drawn = candidates.gather(-1, accepted.float().argmax(dim=-1, keepdim=True)).squeeze(-1)
    missed = sampled & ~accepted.any(dim=-1)
    if bool(missed.any()):
        rows = missed.nonzero().squeeze(-1)
        drawn[rows] = _sample_sorted(probs[rows], top_p[rows], top_k[rows], u[rows, TRIALS])
    return torch.where(sampled, drawn, greedy)


def _in_nucleus(probs: torch.Tensor, candidates: torch.Tensor, top_p: torch.Tensor, top_k: torch.Tensor):
    """Whether each candidate token ([rows, trials]) survives the row's top-p and top-k cuts."""
    filtered = (top_p < 1.0) | (top_k > 0)
    ok = torch.ones_like(candidates, dtype=torch.bool)
    if not bool(filtered.any()):
        return ok
    p_cand = probs.gather(-1, candidates)
    for t in range(candidates.shape[1]):  # one [rows, vocab] pass per trial keeps memory flat
        likelier = probs > p_cand[:, t : t + 1]
        mass_before = torch.where(likelier, probs, 0.0).sum(dim=-1)
        rank = likelier.sum(dim=-1)
        ok[:, t] = (mass_before < top_p) & ((top_k == 0) | (rank < top_k))
    return ok


def _sample_sorted(probs: torch.Tensor, top_p: torch.Tensor, top_k: torch.Tensor, u: torch.Tensor):
    """The textbook top-k/top-p sample by sorting (fallback for rows the rejection sampler missed)."""
    sorted_p, order = probs.sort(dim=-1, descending=True)
    vocab = probs.shape[-1]
    k = torch.where(top_k > 0, top_k.clamp(max=vocab), torch.full_like(top_k, vocab))
    ranks = torch.arange(vocab, device=probs.device).unsqueeze(0)
    before = sorted_p.cumsum(dim=-1) - sorted_p
    keep = (ranks < k.unsqueeze(-1)) & (before < top_p.unsqueeze(-1))  # the top token always survives
    cdf = torch.where(keep, sorted_p, 0.0).cumsum(dim=-1)
    choice = torch.searchsorted(cdf, (u.unsqueeze(-1) * cdf[:, -1:]).contiguous()).clamp(max=vocab - 1)
    return order.gather(-1, choice).squeeze(-1)
