"""Token-weighted perplexity and bits per byte over held-out documents.

Definitions (the test computes the same numbers independently with plain ``transformers``):

* Every document is scored on its own, after one context token (``first_token``: BOS, or the EOS that
  precedes a document in packed training data); that token is never predicted, so the document's first
  real token and every later one, its closing EOS included, is predicted exactly once. A document that
  already starts with the context token (a tokenizer that adds BOS) gets no second one.
* ``perplexity = exp(total NLL / total predicted tokens)``: weighted by tokens over the whole set, not a
  mean of per-document perplexities (which lets a few short documents dominate).
* ``bits_per_byte = total NLL in nats / (ln 2 × UTF-8 bytes of the scored text)``: independent of the
  tokenizer, so models with different vocabularies compare.

Documents longer than the context are scored with overlapping windows (the strided recipe of the
``transformers`` perplexity guide): a window of ``context`` tokens advances by ``stride`` and predicts only
the tokens that no earlier window predicted, so each of them sees at least ``context - stride`` tokens
of context. Windows of all documents are sorted by length and batched, so padding stays small.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Window:
    """``seq[begin:end]`` of document ``doc`` is fed to the model; its last ``targets`` tokens are scored."""

    doc: int
    begin: int
    end: int
    targets: int


def plan_windows(n: int, context: int, stride: int, doc: int = 0) -> list[Window]:
    """Windows over a sequence of ``n`` tokens whose position 0 is context only (never predicted)."""
    if not 1 <= stride < context:
        raise ValueError(f"stride must be in [1, context) (got stride={stride}, context={context})")
    windows, begin, predicted_up_to = [], 0, 1
    while predicted_up_to < n:
        end = min(begin + context, n)
        windows.append(Window(doc, begin, end, end - predicted_up_to))
        predicted_up_to = end
        begin += stride
    return windows


def with_context(doc: np.ndarray, context_id: int) -> np.ndarray:
    """The document after its context token (unless it already starts with it)."""
    if len(doc) and int(doc[0]) == context_id:
        return np.asarray(doc, dtype=np.int64)
    return np.concatenate([[context_id], np.asarray(doc, dtype=np.int64)])


@dataclass
class Scores:
    """Summed NLL and predicted-token counts, overall and per document."""

    doc_nll: np.ndarray
    doc_tokens: np.ndarray

    @property
    def nll(self) -> float:
        return float(self.doc_nll.sum())

    @property
    def tokens(self) -> int:
        return int(self.doc_tokens.sum())

    @property
    def perplexity(self) -> float:
        return math.exp(self.nll / self.tokens)

    def bits_per_byte(self, n_bytes: int) -> float:
        return self.nll / (math.log(2) * n_bytes)

    @property
    def mean_document_perplexity(self) -> float:
        """The unweighted mean of per-document perplexities (what HF ``evaluate`` reports), for contrast."""
        keep = self.doc_tokens > 0
        return float(np.mean(np.exp(self.doc_nll[keep] / self.doc_tokens[keep])))


def score_documents(
    model,
    documents: list[np.ndarray],
    context_id: int,
    context: int,
    stride: int,
    batch_size: int = 8,
    pad_id: int = 0,
    on_batch=None,
) -> Scores:
    """Sum the NLL of every predicted token of every document (see the module docstring)."""
    seqs = [with_context(d, context_id) for d in documents]
    windows = [w for i, s in enumerate(seqs) for w in plan_windows(len(s), context, stride, i)]
    windows.sort(key=lambda w: w.end - w.begin, reverse=True)
    doc_nll = np.zeros(len(seqs), dtype=np.float64)
    doc_tokens = np.array([max(len(s) - 1, 0) for s in seqs], dtype=np.int64)
    for start in range(0, len(windows), batch_size):
        batch = windows[start : start + batch_size]
        for w, nll in zip(batch, _window_nlls(model, seqs, batch, pad_id), strict=True):
            doc_nll[w.doc] += nll
        if on_batch is not None:
            on_batch(len(batch))
    return Scores(doc_nll, doc_tokens)


def _window_nlls(model, seqs: list[np.ndarray], batch: list[Window], pad_id: int) -> list[float]:
    """Summed NLL of each window's target tokens, from one right-padded forward pass."""
    import torch
    import torch.nn.functional as F

    width = max(w.end - w.begin for w in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    for row, w in enumerate(batch):
        n = w.end - w.begin
        ids[row, :n] = torch.from_numpy(seqs[w.doc][w.begin : w.end])
        mask[row, :n] = 1
        labels[row, n - w.targets : n] = ids[row, n - w.targets : n]
    device = next(model.parameters()).device
    with torch.inference_mode():
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
    # position t predicts token t + 1; the loss is taken in float32 whatever the model's dtype, one row
    # at a time so that a half-precision batch is never copied to float32 whole
    labels = labels.to(device)
    return [
        F.cross_entropy(logits[row, :-1].float(), labels[row, 1:], ignore_index=-100, reduction="none")
        .double()
        .sum()
        .item()
        for row in range(len(batch))
    ]
