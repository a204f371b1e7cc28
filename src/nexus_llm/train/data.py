"""Training data over token shards: packed sequences and a resumable, exactly-once epoch order.

Sequences are windows of ``seq_len + 1`` tokens taken every ``seq_len`` tokens of a split's stream
(documents joined by EOS), so every token after the first is a prediction target exactly once and no
position is padding. The order of an epoch is a permutation seeded by ``(seed, epoch)``: the data
position is just ``(epoch, sequences consumed)``, so resuming slices the permutation in O(1) instead of
iterating through skipped batches, and no sequence is replayed or skipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nexus_llm.tokenizer import shards


class PackedTokens:
    """One split's shards as a single virtual token stream, cut into overlapping-by-one windows."""

    def __init__(self, tokens_dir: str, split: str, seq_len: int, meta: dict[str, Any] | None = None):
        self.meta = meta or shards.read_meta(tokens_dir)
        self.seq_len = seq_len
        self.arrays = list(shards.iter_split(tokens_dir, split, self.meta))
        self.offsets = np.cumsum([0] + [len(a) for a in self.arrays])
        self.total_tokens = int(self.offsets[-1])
        self.num_sequences = max(0, (self.total_tokens - 1) // seq_len)

    def __len__(self) -> int:
        return self.num_sequences

    def _span(self, start: int, length: int) -> np.ndarray:
        """Tokens [start, start+length) of the stream, across shard boundaries when needed."""
        shard = int(np.searchsorted(self.offsets, start, side="right")) - 1
        local = start - int(self.offsets[shard])
        arr = self.arrays[shard]
        if local + length <= len(arr):
            return np.asarray(arr[local : local + length])
        parts, need = [], length
        while need:
            piece = np.asarray(self.arrays[shard][local : local + need])
            parts.append(piece)
            need -= len(piece)
            shard, local = shard + 1, 0
        return np.concatenate(parts)

    def batch(self, indices: np.ndarray):
        """A ``(len(indices), seq_len + 1)`` int64 tensor of the given sequences."""
        import torch

        rows = [self._span(int(i) * self.seq_len, self.seq_len + 1) for i in indices]
        return torch.from_numpy(np.stack(rows).astype(np.int64))


@dataclass
class DataPosition:
    """Where training is in the data: the epoch and how many of its sequences have been consumed."""

    epoch: int = 0
    consumed: int = 0


@dataclass
class EpochOrder:
    """Deterministic order of sequence indices per epoch, and the batches of each optimizer step."""

    num_sequences: int
    seed: int
    _cache: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._cache:
            self._cache = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.num_sequences)}
        return self._cache[epoch]

    def next_step(self, pos: DataPosition, global_batch: int) -> tuple[np.ndarray, DataPosition]:
        """The sequences of the next optimizer step and the position after it.

        The last step of an epoch takes what is left (possibly fewer than ``global_batch``), so each
        sequence is seen exactly once per epoch.
        """
        if pos.consumed >= self.num_sequences:
            pos = DataPosition(pos.epoch + 1, 0)
        chosen = self.permutation(pos.epoch)[pos.consumed : pos.consumed + global_batch]
        return chosen, DataPosition(pos.epoch, pos.consumed + len(chosen))

    def steps_per_epoch(self, global_batch: int) -> int:
        return math.ceil(self.num_sequences / global_batch)


def slots(chosen: np.ndarray, accum: int, world: int, rank: int) -> list[np.ndarray]:
    """This rank's micro-batches of a step: slot ``m·world + rank`` for micro-step ``m``.

    The step's sequences are split as evenly as possible over ``accum × world`` slots; a slot may be
    empty on a short last step of an epoch (the rank then contributes zero loss and zero gradient).
    """
    parts = np.array_split(chosen, accum * world)
    return [parts[m * world + rank] for m in range(accum)]


def validation_indices(num_sequences: int, count: int, world: int, rank: int) -> np.ndarray:
    """``count`` validation sequences spread evenly over the split, strided over ranks (fixed across
    evaluations, so successive validation losses are comparable)."""
    if num_sequences == 0:
        return np.arange(0)
    chosen = np.unique(np.linspace(0, num_sequences - 1, min(count, num_sequences)).astype(np.int64))
    return chosen[rank::world]
