"""Tokens, checkpoints, runs and the model on S3 (SeaweedFS): a job on a new machine resumes from them."""

from __future__ import annotations

import json

import pytest

from nexus_llm import storage
from nexus_llm.config import parse_config
from nexus_llm.tokenizer.bpe import run_tokenizer_train
from nexus_llm.tokenizer.config import TokenizeConfig, TokenizerConfig
from nexus_llm.tokenizer.encode import run_tokenize
from nexus_llm.train.checkpoint import complete_checkpoints
from nexus_llm.train.loop import run_train
from support.stories import story_texts, write_curated
from support.train import train_section

pytestmark = pytest.mark.s3


def test_training_on_s3_resumes_on_a_new_machine(s3_env, tmp_path, monkeypatch):
    bucket = s3_env.create_bucket("train-resume")
    data = write_curated(tmp_path / "curated", story_texts(60, seed=9))
    run_tokenizer_train(TokenizerConfig(vocab_size=320), str(data), f"{bucket}/tokenizer")
    meta = run_tokenize(
        TokenizeConfig(val_fraction=0.1), str(data), f"{bucket}/tokenizer", f"{bucket}/tokens"
    )
    assert storage.exists(f"{bucket}/tokens/{meta['splits']['train']['files'][0]}")

    def train(max_steps, machine):
        monkeypatch.setenv("NEXUS_STAGING_DIR", str(tmp_path / machine))  # a machine's local disk
        section = train_section(tmp_path, tmp_path, max_steps=max_steps, save_every=2, eval_every=2)
        section.update(tokens=f"{bucket}/tokens", output_dir=f"{bucket}/model",
                       checkpoint_dir=f"{bucket}/checkpoints", run_dir=f"{bucket}/runs")  # fmt: skip
        cfg = parse_config({"train": section}).train
        return run_train(cfg, cfg.paths(bucket), seed=7)

    first = train(4, "machine-a")
    assert [s for s, _ in complete_checkpoints(f"{bucket}/checkpoints")] == [2, 4]
    second = train(6, "machine-b")
    assert second["resumed_from"] == f"{bucket}/checkpoints/checkpoint-4" and second["step"] == 6
    assert first["step"] == 4
    manifest = json.loads(storage.read_text(f"{bucket}/model/manifest.json"))
    assert manifest["step"] == 6 and "model.safetensors" in manifest["files"]
    lines = storage.read_text(f"{bucket}/runs/metrics.jsonl").splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3, 4, 5, 6]
