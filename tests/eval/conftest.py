"""Fixtures for the evaluation stage: held-out token shards, a training log, and one real CLI run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.eval_kit import EXAMPLE_TASK, HELDOUT_TEXTS, nexus
from support.token_shards import write_token_dir


@pytest.fixture(scope="session")
def token_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """A token directory whose val split is HELDOUT_TEXTS, in 40-token shards (documents span shards)."""
    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("tokens")
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    write_token_dir(out, tok, {"train": ["Some training text."], "val": HELDOUT_TEXTS}, shard_tokens=40)
    return out


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    rows = []
    for step in range(1, 41):
        row = {"step": step, "loss": 6.0 * 0.97**step, "lr": 3e-4, "tokens_per_second": 1000.0, "mfu": 0.1}
        if step % 10 == 0:
            row["val_loss"] = 6.2 * 0.97**step
        rows.append(json.dumps(row))
    (out / "metrics.jsonl").write_text("\n".join(rows) + "\n")
    return out


@pytest.fixture(scope="session")
def eval_run(tmp_path_factory, tiny_model_dir, token_dir, runs_dir):
    """One real `nexus eval` run: held-out shards, the example local task, a run directory, two prompts."""
    out = tmp_path_factory.mktemp("eval") / "evaldir"
    proc = nexus(
        "eval", str(tiny_model_dir), "-o", str(out), "--data", str(token_dir), "--runs", str(runs_dir),
        "--task", str(EXAMPLE_TASK), "--prompt", "Once upon a time", "--prompt", "The quick brown fox",
        "--max-new-tokens", "8",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return out, proc
