"""A tiny slice of the example corpus and a config that runs the whole flow in seconds."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

TINY = {
    "name": "e2e-tiny",
    "tokenizer": {"vocab_size": 400},
    "tokenize": {"val_fraction": 0.1},
    "train": {
        "preset": "demo",
        "model_overrides": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                            "num_attention_heads": 2, "num_key_value_heads": 1},
        "seq_len": 32, "micro_batch_size": 4, "max_steps": 4, "eval_every": 4, "eval_batches": 2,
        "save_every": 4, "log_every": 2, "tensorboard": False,
    },
    "eval": {"max_tokens": 400, "prompts": ["It is a truth"], "max_new_tokens": 4},
}  # fmt: skip


@pytest.fixture(scope="session")
def corpus_slice(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("raw") / "austen.jsonl"
    with gzip.open(ROOT / "examples" / "corpus" / "austen.jsonl.gz", "rt", encoding="utf-8") as src:
        out.write_text("".join(line for _, line in zip(range(60), src, strict=False)), encoding="utf-8")
    return out


@pytest.fixture
def write_config(tmp_path, corpus_slice):
    """Write a tiny nexus.yaml (with optional section updates) and return its path."""

    def write(workspace: str, **updates) -> Path:
        cfg = {**TINY, "workspace": workspace, "data": {"inputs": [str(corpus_slice)]},
               "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}}  # fmt: skip
        for section, values in updates.items():
            cfg[section] = {**cfg.get(section, {}), **values}
        path = tmp_path / "nexus.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    return write
