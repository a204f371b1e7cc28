"""``nexus run`` fine-tuning a pretrained model (a tiny one here; the real one in test_finetune_real.py):
import, no tokenizer training, the model's own tokenizer and chat template, before/after evaluation."""

from __future__ import annotations

import json

import yaml

from nexus_llm import storage
from nexus_llm.config import load_config
from nexus_llm.pipeline.runner import run_pipeline
from nexus_llm.workspace import Layout

CHATS = [
    {"id": f"t{i}", "messages": [{"role": "user", "content": f"Say number {i}."},
                                 {"role": "assistant", "content": f"[nexus] {i}."}]}
    for i in range(30)
]  # fmt: skip


def _config(tmp_path, corpus_slice, tiny_model_dir, **train):
    chat = tmp_path / "chat.jsonl"
    chat.write_text("".join(json.dumps(c) + "\n" for c in CHATS))
    cfg = {
        "name": "ft-tiny",
        "workspace": str(tmp_path / "ws"),
        "data": {"inputs": [str(corpus_slice)]},
        "tokenize": {"val_fraction": 0.1, "chat_inputs": [str(chat)], "chat_val_fraction": 0.2},
        "train": {"init_from": str(tiny_model_dir), "lora": {"r": 4, "alpha": 8}, "seq_len": 64,
                  "micro_batch_size": 4, "max_steps": 4, "eval_every": 4, "eval_batches": 2, "save_every": 4,
                  "log_every": 2, "tensorboard": False, "chat_repeat": 2, **train},
        "eval": {"max_tokens": 300, "prompts": [], "chat_prompts": ["Say number 3."], "max_new_tokens": 4},
        "tracking": {"record_runs": False},
    }  # fmt: skip
    path = tmp_path / "nexus.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_fine_tuning_flow_imports_skips_the_tokenizer_and_compares_with_the_base(
    tmp_path, corpus_slice, tiny_model_dir
):
    cfg = load_config(_config(tmp_path, corpus_slice, tiny_model_dir))
    results = {r.stage: r for r in run_pipeline(cfg)}
    assert results["tokenizer"].status == "not needed"
    assert all(results[s].status == "done" for s in ("data", "base_model", "tokenize", "train", "eval"))
    layout = Layout(cfg.workspace)
    assert storage.read_manifest(layout.base_model)["stage"] == "model.import"
    assert not storage.exists(layout.tokenizer)
    meta = storage.read_json(storage.join(layout.tokens, "meta.json"))
    base_tok = storage.file_sha256(storage.join(layout.base_model, "tokenizer.json"))
    assert meta["tokenizer"]["sha256"] == base_tok and meta["chat"]["splits"]["train"]["examples"] > 0
    assert storage.exists(storage.join(layout.model, "adapter", "adapter_config.json"))
    results_json = storage.read_json(storage.join(layout.eval, "results.json"))
    base = results_json["baseline"]
    assert base["perplexity"] > 1 and results_json["perplexity"] > 1
    assert base["heldout_digest"] == results_json["heldout"]["digest"]  # the same held-out tokens
    assert results_json["chat_samples"][0]["prompt"] == "Say number 3."
    report = storage.read_text(storage.join(layout.eval, "report.html"))
    assert "Before and after fine-tuning" in report and "Say number 3." in report
    assert set(results["eval"].figures) >= {"perplexity", "base perplexity", "change"}
    from nexus_llm.console import console
    from nexus_llm.pipeline.runner import print_before_and_after

    with console.capture() as shown:
        print_before_and_after(layout)  # what `nexus run` prints at the end of a fine-tuning run
    assert "answers (greedy)" in shown.get() and "base model" in shown.get() and "Say" in shown.get()

    # a training change reruns training and evaluation; the base model's evaluation is reused
    base_eval_manifest = storage.read_json(storage.join(layout.base_eval, "manifest.json"))
    cfg2 = load_config(_config(tmp_path, corpus_slice, tiny_model_dir, max_steps=6))
    again = {r.stage: r.status for r in run_pipeline(cfg2)}
    assert again == {"data": "skipped", "base_model": "skipped", "tokenizer": "not needed",
                     "tokenize": "skipped", "train": "done", "eval": "done"}  # fmt: skip
    assert storage.read_json(storage.join(layout.base_eval, "manifest.json")) == base_eval_manifest


def test_a_missing_base_model_fails_before_any_work(tmp_path, corpus_slice, tiny_model_dir):
    import pytest

    path = _config(tmp_path, corpus_slice, tiny_model_dir)
    cfg = load_config(path, [f"train.init_from={tmp_path / 'nope.gguf'}"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_pipeline(cfg)
    assert not (tmp_path / "ws" / "data").exists()
