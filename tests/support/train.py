"""Training fixtures: token directories built in-process and tiny training configs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from support.stories import story_texts, write_curated

TINY_LLAMA = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
}


def make_tokens(
    root: Path, docs: int = 300, val_fraction: float = 0.1, tokenizer_dir: Path | None = None
) -> Path:
    """Curated story data → tokenizer (trained here unless given) → token shards; returns the tokens dir."""
    from nexus_llm.tokenizer.bpe import run_tokenizer_train
    from nexus_llm.tokenizer.config import TokenizeConfig, TokenizerConfig
    from nexus_llm.tokenizer.encode import run_tokenize

    data = write_curated(root / "curated", story_texts(docs, seed=3))
    if tokenizer_dir is None:
        tokenizer_dir = root / "tokenizer"
        run_tokenizer_train(TokenizerConfig(vocab_size=320), str(data), str(tokenizer_dir))
    cfg = TokenizeConfig(val_fraction=val_fraction, shard_tokens=4096)
    run_tokenize(cfg, str(data), str(tokenizer_dir), str(root / "tokens"))
    return root / "tokens"


def train_section(tokens: Path, out: Path, **overrides: Any) -> dict[str, Any]:
    """A ``train:`` mapping for a tiny, fast, deterministic run writing under ``out``."""
    section = {
        "tokens": str(tokens),
        "output_dir": str(out / "model"),
        "checkpoint_dir": str(out / "checkpoints"),
        "run_dir": str(out / "runs"),
        "model_overrides": dict(TINY_LLAMA),
        "seq_len": 32,
        "micro_batch_size": 4,
        "max_steps": 12,
        "warmup_steps": 2,
        "learning_rate": 3e-3,
        "log_every": 1,
        "eval_every": 6,
        "eval_batches": 2,
        "save_every": 4,
        "num_threads": 1,
        "tensorboard": False,
    }
    section.update(overrides)
    return section


def write_config(path: Path, train: dict[str, Any], **top: Any) -> Path:
    path.write_text(yaml.safe_dump({"seed": 7, **top, "train": train}))
    return path


def run_module(args: list[str], env: dict[str, str] | None = None, timeout: float = 240, **kw):
    """``python -m <args>`` in a subprocess with hermetic settings."""
    full_env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
    }
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", *args], env=full_env, capture_output=True, text=True, timeout=timeout, **kw
    )
