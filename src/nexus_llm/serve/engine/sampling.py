"""Next-token choice for a batch whose rows have their own settings: sampling, penalties, bias, grammar.

transformers' logits processors take one setting for the whole batch, and ``torch.multinomial`` draws
from one random stream, so a request's ``seed`` could not make its output reproducible when it shares
a batch. Here each row keeps its own ``torch.Generator`` and draws a fixed number of uniforms per step,
and the filters are applied row-wise in one vectorised pass (:func:`sample_rows`).

:func:`choose_tokens` is what the engine calls each step: it applies each row's logits processing in
the order vLLM does — repetition, frequency and presence penalties, ``logit_bias``, the grammar mask —
then samples, and reports log-probabilities of the *unprocessed* distribution for rows that ask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from nexus_llm.serve.engine.base import SamplingParams, TokenLogprob


def make_generator(seed: int | None) -> torch.Generator:
    g = torch.Generator()
    if seed is None:
        g.seed()  # a fresh non-deterministic seed
    else:
        g.manual_seed(seed)
    return g


@dataclass
class RowState:
    """What :func:`choose_tokens` needs of one sequence."""

    params: SamplingParams
    generator: torch.Generator
    prompt: list[int]
    generated: list[int]
    matcher: Any = None  # an llguidance matcher when the request has a response_format


def choose_tokens(
    logits: torch.Tensor, rows: list[RowState], eos_id: int | None = None
) -> tuple[list[int], list[TokenLogprob | None]]:
    """One token per row of ``logits`` ([rows, vocab], float32), and its logprob entry where asked."""
    vocab = logits.shape[-1]
    x = logits
    if any(r.params.penalized or r.params.logit_bias or r.matcher is not None for r in rows):
        x = logits.clone()
        for i, r in enumerate(rows):
            _penalize(x[i], r, vocab)
        constrained = [i for i, r in enumerate(rows) if r.matcher is not None]
        if constrained:
            from nexus_llm.serve.engine.grammar import allowed_tokens

            allowed = allowed_tokens([rows[i].matcher for i in constrained], vocab)
            for j in range(len(constrained)):
                if not bool(allowed[j].any()) and eos_id is not None:  # the grammar is in an error state
                    allowed[j, eos_id] = True
            idx = torch.tensor(constrained)
            x[idx] = x[idx].masked_fill(~allowed, float("-inf"))
    temperature = torch.tensor([r.params.temperature for r in rows], dtype=torch.float32)
    top_p = torch.tensor([r.params.top_p for r in rows], dtype=torch.float32)
    top_k = torch.tensor([r.params.top_k for r in rows], dtype=torch.long)
    tokens = sample_rows(x, temperature, top_p, top_k, [r.generator for r in rows]).tolist()
    entries: list[TokenLogprob | None] = [None] * len(rows)
    wanted = [i for i, r in enumerate(rows) if r.params.logprobs is not None]
    if wanted:
        lp = logits[torch.tensor(wanted)].log_softmax(-1)
        for j, i in enumerate(wanted):
            entries[i] = logprob_entry(lp[j], tokens[i], rows[i].params.logprobs or 0)
    return tokens, entries


def logprob_entry(logprobs: torch.Tensor, token: int, top: int) -> TokenLogprob:
    """``token``'s log-probability in ``logprobs`` ([vocab]) and the ``top`` likeliest tokens."""
    alternatives: tuple[tuple[int, float], ...] = ()
    if top > 0:
        values, ids = logprobs.topk(top)
        alternatives = tuple(zip(ids.tolist(), values.tolist(), strict=True))
    return TokenLogprob(token, float(logprobs[token]), alternatives)


def prompt_logprobs(logits: torch.Tensor, targets: list[int], top: int) -> list[TokenLogprob]:
    """Entries for ``targets`` (the tokens that follow each row of ``logits`` [n, vocab], n >= len)."""
    if not targets:
        return []
    lp = logits[: len(targets)].log_softmax(-1)
    chosen = lp.gather(-1, torch.tensor(targets)[:, None]).squeeze(-1).tolist()
    if top > 0:
        values, ids = lp.topk(top, dim=-1)
        tops = [tuple(zip(i, v, strict=True)) for i, v in zip(ids.tolist(), values.tolist(), strict=True)]
    else:
        tops = [()] * len(targets)
    return [TokenLogprob(t, c, a) for t, c, a in zip(targets, chosen, tops, strict=True)]


def _penalize(row: torch.Tensor, r: RowState, vocab: int) -> None:
    """Penalties and bias on one row of logits, in place (vLLM's order and definitions)."""
    p = r.params
    if p.repetition_penalty != 1.0:  # transformers' definition: every token of prompt and output
        seen = torch.tensor(r.prompt + r.generated, dtype=torch.long).unique()
        seen = seen[seen < vocab]
        values = row[seen]
        row[seen] = torch.where(values > 0, values / p.repetition_penalty, values * p.repetition_penalty)
    if (p.frequency_penalty or p.presence_penalty) and r.generated:  # OpenAI's: output tokens only
        counts = torch.bincount(torch.tensor(r.generated, dtype=torch.long), minlength=vocab)[:vocab]
        row -= p.frequency_penalty * counts.float() + p.presence_penalty * (counts > 0).float()
    if p.logit_bias:
        ids = torch.tensor([t for t, _ in p.logit_bias], dtype=torch.long)
        row[ids] += torch.tensor([b for _, b in p.logit_bias], dtype=row.dtype)


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
    sampled = temperature > 0
    if not bool(sampled.any()):
        return logits.argmax(dim=-1)
    probs = (logits / temperature.clamp(min=1e-6).unsqueeze(-1)).softmax(dim=-1)
    u = torch.stack([torch.rand(TRIALS + 1, generator=g) for g in generators]).to(device)
    cdf = probs.cumsum(dim=-1)
    vocab = probs.shape[-1]
    candidates = torch.searchsorted(cdf, (u[:, :TRIALS] * cdf[:, -1:]).contiguous()).clamp(max=vocab - 1)
    first = _first_in_nucleus(probs, candidates, top_p, top_k, sampled)
    drawn = candidates.gather(-1, first.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    missed = sampled & (first < 0)
    if bool(missed.any()):
        rows = missed.nonzero().squeeze(-1)
        drawn[rows] = _sample_sorted(probs[rows], top_p[rows], top_k[rows], u[rows, TRIALS])
    if bool(sampled.all()):
        return drawn
    return torch.where(sampled, drawn, logits.argmax(dim=-1))


def _first_in_nucleus(
    probs: torch.Tensor,
    candidates: torch.Tensor,
    top_p: torch.Tensor,
    top_k: torch.Tensor,
    sampled: torch.Tensor,
) -> torch.Tensor:
    """Per row, the first trial whose candidate survives the row's top-p and top-k cuts (-1: none did).

    Trials are checked lazily, row by row: a row stops at its first accepted candidate, so with top_p
    0.95 nearly every row costs one pass over its vocabulary. The mass of the tokens likelier than a
    candidate is one fused pass (``F.threshold`` keeps the probabilities above the candidate's, then a
    sum), and the candidate's rank is counted only for rows with a ``top_k``. The batched version of
    this (``[rows, vocab]`` differences, masks and sums: multi-MB temporaries, and a boolean mask widened
    to int64 to be counted) took 1.6 ms for 16 rows of SmolLM2's logits (49k vocabulary) on an Ice Lake
    Xeon, this 0.47 ms (one row: 0.26-0.37 vs 0.04-0.06 ms), with the same results.
    """
    first = [-1] * probs.shape[0]
    draws = candidates.tolist()
    for i, (p_cut, k, on) in enumerate(zip(top_p.tolist(), top_k.tolist(), sampled.tolist(), strict=True)):
        if not on:
            continue
        if p_cut >= 1.0 and k <= 0:
            first[i] = 0  # no cut: the first draw is the sample
            continue
        row = probs[i]
        for t, token in enumerate(draws[i]):
            p = float(row[token])
            if k > 0 and int(torch.count_nonzero(row > p)) >= k:
                continue  # k or more tokens are likelier: outside the top k
            if p_cut < 1.0 and float(F.threshold(row, p, 0.0).sum()) >= p_cut:
                continue  # the likelier tokens already hold top_p of the mass: outside the nucleus
            first[i] = t
            break
    return torch.tensor(first, dtype=torch.long, device=probs.device)


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
