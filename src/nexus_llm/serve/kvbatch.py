"""A batch of sequences that decode together: left-padded masks over one shared KV cache.

Continuous batching without paged attention, written by hand because transformers offers no public
"join/leave a running batch" for its DynamicCache. Every row's tokens are right-aligned, so one decode
step appends one column for all rows. New requests are prefilled as their own left-padded batch and
joined by padding the narrower cache on the left; finished rows are dropped by indexing the batch
dimension, and columns that became padding for every row are trimmed. This is the scheme of TGI's
``CausalLMBatch`` (concatenate/filter). Positions are per row (count of real tokens), so RoPE sees each
sequence as if it were alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


@dataclass
class PaddedBatch:
    """Rows decoding together: ``mask[b, t] == 1`` where row ``b`` has a real token in column ``t``."""

    mask: torch.Tensor  # [rows, width], long
    cache: DynamicCache

    @property
    def rows(self) -> int:
        return self.mask.shape[0]

    @property
    def width(self) -> int:
        return self.mask.shape[1]


def check_supported(model) -> None:
    """Refuse models whose cache is not plain full attention (sliding windows break left padding)."""
    cache = DynamicCache(config=model.config)
    kinds = {type(layer).__name__ for layer in cache.layers}
    if kinds and kinds != {DynamicLayer.__name__}:
        raise ValueError(
            f"the batching engine supports full-attention decoder models only; this model's cache uses {kinds}"
        )


def _forward(model, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache: DynamicCache):
    out = model(
        input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True, logits_to_keep=1
    )
    return out.logits[:, -1, :].float()


def prefill(model, prompts: list[list[int]], pad_id: int = 0) -> tuple[PaddedBatch, torch.Tensor]:
    """Run the prompts as one left-padded batch; returns the batch and each row's next-token logits."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        mask[row, width - len(prompt) :] = 1
    ids, mask = ids.to(model.device), mask.to(model.device)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache(config=model.config)
    logits = _forward(model, ids, mask, pos, cache)
    return PaddedBatch(mask, cache), logits


def decode(model, batch: PaddedBatch, tokens: torch.Tensor) -> torch.Tensor:
    """Append one token per row (``tokens``: [rows]) and return the next-token logits."""
    batch.mask = torch.cat([batch.mask, batch.mask.new_ones((batch.rows, 1))], dim=1)
    pos = batch.mask.sum(-1, keepdim=True) - 1
    return _forward(model, tokens.view(-1, 1), batch.mask, pos, batch.cache)


def _pad_left(t: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    extra = width - t.shape[dim]
    if extra == 0:
        return t
    pad = [0, 0] * (t.dim() - 1 - dim) + [extra, 0]
    return F.pad(t, pad)


def concat(a: PaddedBatch, b: PaddedBatch) -> PaddedBatch:
    """Join two batches (rows of ``a`` first), padding the narrower one on the left."""
    width = max(a.width, b.width)
    mask = torch.cat([_pad_left(a.mask, width, 1), _pad_left(b.mask, width, 1)], dim=0)
    for la, lb in zip(a.cache.layers, b.cache.layers, strict=True):
        la.keys = torch.cat([_pad_left(la.keys, width, 2), _pad_left(lb.keys, width, 2)], dim=0)
        la.values = torch.cat([_pad_left(la.values, width, 2), _pad_left(lb.values, width, 2)], dim=0)
    return PaddedBatch(mask, a.cache)


def select(batch: PaddedBatch, keep: list[int]) -> PaddedBatch | None:
    """Keep only rows ``keep`` (in that order) and trim columns that are padding in every kept row."""
    if not keep:
        return None
    if keep == list(range(batch.rows)):
        return batch
    idx = torch.tensor(keep, dtype=torch.long, device=batch.mask.device)
    mask = batch.mask.index_select(0, idx)
    first = int(mask.any(dim=0).nonzero()[0, 0])
    mask = mask[:, first:]
    for layer in batch.cache.layers:
        layer.keys = layer.keys.index_select(0, idx)[:, :, first:, :]
        layer.values = layer.values.index_select(0, idx)[:, :, first:, :]
    return PaddedBatch(mask, batch.cache)
