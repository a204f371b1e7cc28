"""Packed sequences and the exactly-once, O(1)-resumable epoch order."""

from __future__ import annotations

import numpy as np
import pytest

from nexus_llm.tokenizer import shards
from nexus_llm.train.data import (
    DataPosition,
    EpochOrder,
    PackedTokens,
    TrainingData,
    slots,
    validation_indices,
)


def _write_tokens(root, parts: list[np.ndarray]) -> str:
    files = []
    for i, arr in enumerate(parts):
        rel = shards.shard_name("train", i)
        (root / "train").mkdir(parents=True, exist_ok=True)
        arr.astype(np.uint16).tofile(root / rel)
        files.append(rel)
    meta = {
        "format": shards.FORMAT, "dtype": "uint16", "vocab_size": 1000, "eos_token_id": 2,
        "splits": {"train": {"files": files, "tokens": sum(map(len, parts))}, "val": {"files": [], "tokens": 0}},
    }  # fmt: skip
    import json

    (root / "meta.json").write_text(json.dumps(meta))
    (root / "manifest.json").write_text(json.dumps({"stage": "tokenize", **meta}))  # complete
    return str(root)


def test_windows_cover_the_stream_across_shard_boundaries(tmp_path):
    stream = np.arange(3, 103)
    tokens = _write_tokens(tmp_path, [stream[:37], stream[37:41], stream[41:]])
    data = PackedTokens(tokens, "train", seq_len=8)
    assert len(data) == (100 - 1) // 8
    batch = data.batch(np.arange(len(data)))
    assert batch.inputs.shape == batch.targets.shape == (len(data), 8)
    assert batch.weights is None and batch.positions is None  # text: every target counts, plain positions
    for i in range(len(data)):
        assert batch.inputs[i].tolist() == stream[i * 8 : i * 8 + 8].tolist()
        assert batch.targets[i].tolist() == stream[i * 8 + 1 : i * 8 + 9].tolist()
    # every token after the first is a target exactly once
    targets = np.concatenate(list(batch.targets))
    assert targets.tolist() == stream[1 : 1 + len(targets)].tolist()
    assert data.target_count(np.arange(3)) == 24


def test_a_split_shorter_than_one_sequence_is_an_empty_dataset_not_a_crash(tmp_path):
    """A validation split with fewer tokens than seq_len (long sequences, little held-out text) has no
    windows; training then logs no validation loss instead of failing at start."""
    tokens = _write_tokens(tmp_path, [np.arange(3, 103)])
    val = TrainingData(PackedTokens(tokens, "val", seq_len=8), None)
    assert len(val) == 0 and val.seq_len == 8
    short = TrainingData(PackedTokens(tokens, "train", seq_len=200), None)
    assert len(short) == 0 and short.seq_len == 200


def test_epoch_order_sees_every_sequence_once_per_epoch_with_a_short_last_step():
    order = EpochOrder(num_sequences=23, seed=5)
    pos, seen = DataPosition(), {}
    for _ in range(3 * order.steps_per_epoch(5)):
        chosen, pos = order.next_step(pos, 5)
        seen.setdefault(pos.epoch, []).extend(chosen.tolist())
    assert sorted(seen) == [0, 1, 2]
    for indices in seen.values():
        assert sorted(indices) == list(range(23))
    assert seen[0] != seen[1]  # a new order each epoch


def test_resuming_from_a_position_continues_the_same_order_in_constant_time():
    a = EpochOrder(50, seed=1)
    pos, full = DataPosition(), []
    for _ in range(20):
        chosen, pos = a.next_step(pos, 7)
        full.append(chosen.tolist())
    pos = DataPosition()
    for _ in range(9):
        _, pos = a.next_step(pos, 7)
    b = EpochOrder(50, seed=1)  # a fresh process: only (epoch, consumed) survived
    resumed = []
    for _ in range(11):
        chosen, pos = b.next_step(DataPosition(pos.epoch, pos.consumed), 7)
        resumed.append(chosen.tolist())
    assert resumed == full[9:]


def test_slots_split_a_step_over_ranks_and_micro_steps():
    chosen = np.arange(10)
    per_rank = [slots(chosen, accum=2, world=2, rank=r) for r in range(2)]
    assert sorted(int(i) for r in per_rank for part in r for i in part) == list(range(10))
    short = [slots(np.arange(3), accum=2, world=2, rank=r) for r in range(2)]
    assert sum(len(p) == 0 for r in short for p in r) == 1  # one empty slot, not a crash


@pytest.mark.parametrize("n", [0, 3, 1000])
def test_validation_indices_are_fixed_and_spread(n):
    idx = [validation_indices(n, 40, 2, r) for r in range(2)]
    allidx = np.sort(np.concatenate(idx))
    assert len(allidx) == min(n, 40) and len(set(allidx.tolist())) == len(allidx)
    if n == 1000:
        assert allidx[-1] == 999
