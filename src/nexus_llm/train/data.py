"""Training data over token shards: packed sequences and a resumable, exactly-once epoch order.

Sequences are windows of ``seq_len + 1`` tokens taken every ``seq_len`` tokens of a split's stream
(documents joined by EOS), so every token after the first is a prediction target exactly once and no
position is padding. The order of an epoch is a permutation seeded by ``(seed, epoch)``: the data
position is just ``(epoch, sequences consumed)``, so resuming slices the permutation in O(1) instead of
iterating through skipped batches, and no sequence is replayed or skipped.

Chat data (supervised fine-tuning, see :mod:`nexus_llm.tokenizer.chat`) comes as whole conversations
with a loss mask on assistant tokens. They are packed differently: whole conversations, in order, into
rows of at most ``seq_len`` inputs, each conversation with its own position ids starting at 0. With no
attention mask, transformers turns restarting positions into a block-diagonal causal mask (its packed-
sequence detection), so a conversation never attends to the one packed before it; a conversation's last
token has no target, and padding carries no loss. :class:`TrainingData` puts text windows and chat rows
(repeated ``chat_repeat`` times per epoch, as small SFT sets need several passes) in one index space.
"""

from __future__ import annotations

import itertools
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

    def window(self, index: int) -> np.ndarray:
        """Sequence ``index``: ``seq_len + 1`` tokens (inputs are all but the last, targets all but the first)."""
        return self._span(int(index) * self.seq_len, self.seq_len + 1)

    def batch(self, indices: np.ndarray) -> Batch:
        rows = np.stack([self.window(int(i)) for i in indices]).astype(np.int64)
        return Batch(rows[:, :-1], rows[:, 1:])

    def target_count(self, indices: np.ndarray) -> int:
        return len(indices) * self.seq_len

    def real_tokens(self, indices: np.ndarray) -> int:
        return len(indices) * self.seq_len


@dataclass
class Batch:
    """A micro-batch: inputs and targets ``(B, T)``; optional per-target weights (0/1 loss mask) and
    position ids (restarting at each packed conversation). ``None`` means all ones / ``arange(T)``."""

    inputs: np.ndarray
    targets: np.ndarray
    weights: np.ndarray | None = None
    positions: np.ndarray | None = None

    def tensors(self, device) -> dict[str, Any]:
        import torch

        def put(a, dtype):
            return None if a is None else torch.from_numpy(np.ascontiguousarray(a)).to(device, dtype)

        return {
            "input_ids": put(self.inputs, torch.long),
            "targets": put(self.targets, torch.long),
            "weights": put(self.weights, torch.float32),
            "position_ids": put(self.positions, torch.long),
        }


class ChatRows:
    """One chat split packed into rows of ``seq_len`` inputs: whole conversations, in order."""

    def __init__(self, tokens_dir: str, split: str, seq_len: int, meta: dict[str, Any]):
        from nexus_llm.tokenizer.chat import read_chat_split

        self.seq_len = seq_len
        self.pad_id = int(meta.get("pad_token_id") or meta.get("eos_token_id") or 0)
        self.tokens, self.mask, starts = read_chat_split(tokens_dir, split, meta)
        self.examples = [(int(a), int(b)) for a, b in itertools.pairwise(starts) if b - a >= 2]
        self.truncated = 0
        self.rows: list[list[tuple[int, int]]] = []  # (start, inputs) of each conversation in a row
        row, used = [], 0
        for start, end in self.examples:
            n = end - start - 1  # inputs: all tokens but the last
            if n > seq_len:
                n, self.truncated = seq_len, self.truncated + 1
            if row and used + n > seq_len:
                self.rows.append(row)
                row, used = [], 0
            row.append((start, n))
            used += n
        if row:
            self.rows.append(row)
        self._targets = [sum(int(self.mask[s + 1 : s + 1 + n].sum()) for s, n in r) for r in self.rows]
        self._real = [sum(n for _s, n in r) for r in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def row(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(inputs, targets, weights, positions) of row ``index``, padded to ``seq_len``."""
        t = self.seq_len
        inputs = np.full(t, self.pad_id, np.int64)
        targets = np.full(t, self.pad_id, np.int64)
        weights = np.zeros(t, np.float32)
        positions = np.zeros(t, np.int64)
        at = 0
        for start, n in self.rows[index]:
            inputs[at : at + n] = self.tokens[start : start + n]
            targets[at : at + n] = self.tokens[start + 1 : start + 1 + n]
            weights[at : at + n] = self.mask[start + 1 : start + 1 + n]
            positions[at : at + n] = np.arange(n)
            at += n
        positions[at:] = np.arange(t - at)  # padding: its own (loss-free) sequence
        return inputs, targets, weights, positions

    def target_count_row(self, index: int) -> int:
        return self._targets[index]

    def real_tokens_row(self, index: int) -> int:
        return self._real[index]


class TrainingData:
    """Text windows (:class:`PackedTokens`) and chat rows (:class:`ChatRows`) as one indexed dataset.

    Indices ``[0, n_text)`` are text windows; the next ``n_chat × chat_repeat`` are chat rows, each row
    ``chat_repeat`` times. Text-only data keeps the plain batches (no weights, no positions)."""

    def __init__(self, text: PackedTokens | None, chat: ChatRows | None, chat_repeat: int = 1):
        self.text, self.chat = text, chat
        self.n_text = len(text) if text is not None else 0
        self.n_chat = len(chat) if chat is not None else 0
        self.chat_repeat = chat_repeat if self.n_chat else 0
        # an empty split (fewer tokens than one sequence) is falsy: test for None, not truth
        self.seq_len = (text if text is not None else chat).seq_len  # type: ignore[union-attr]

    def __len__(self) -> int:
        return self.n_text + self.n_chat * self.chat_repeat

    def _chat_index(self, i: int) -> int:
        return (i - self.n_text) % self.n_chat

    def batch(self, indices: np.ndarray) -> Batch:
        if self.n_chat == 0:
            assert self.text is not None
            return self.text.batch(indices)
        parts = []
        for i in (int(x) for x in indices):
            if i < self.n_text:
                w = self.text.window(i).astype(np.int64)  # type: ignore[union-attr]
                parts.append((w[:-1], w[1:], np.ones(self.seq_len, np.float32), np.arange(self.seq_len)))
            else:
                parts.append(self.chat.row(self._chat_index(i)))  # type: ignore[union-attr]
        inputs, targets, weights, positions = (np.stack(col) for col in zip(*parts, strict=True))
        return Batch(inputs, targets, weights, positions)

    def target_count(self, indices: np.ndarray) -> int:
        return sum(
            self.seq_len if i < self.n_text else self.chat.target_count_row(self._chat_index(i))  # type: ignore[union-attr]
            for i in (int(x) for x in indices)
        )

    def real_tokens(self, indices: np.ndarray) -> int:
        return sum(
            self.seq_len if i < self.n_text else self.chat.real_tokens_row(self._chat_index(i))  # type: ignore[union-attr]
            for i in (int(x) for x in indices)
        )


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
