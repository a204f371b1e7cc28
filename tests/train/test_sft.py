"""Supervised fine-tuning on chat data: loss on assistant tokens only, packed conversations kept apart."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nexus_llm.config import parse_config
from nexus_llm.tokenizer import shards
from nexus_llm.tokenizer.config import TokenizeConfig
from nexus_llm.tokenizer.encode import run_tokenize
from nexus_llm.train.data import ChatRows, PackedTokens, TrainingData
from nexus_llm.train.loop import run_train
from nexus_llm.train.steps import _token_loss_sum
from support.stories import story_texts, write_curated

CHATS = [
    {"id": f"q{i}", "messages": [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": f"Name colour number {i}."},
        {"role": "assistant", "content": ["Red", "Green", "Blue", "Black"][i % 4] + "."},
    ]}
    for i in range(64)
]  # fmt: skip


@pytest.fixture(scope="module")
def sft_tokens(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("sft")
    data = write_curated(root / "curated", story_texts(80, seed=4))
    chat = root / "chat.jsonl"
    chat.write_text("".join(json.dumps(c) + "\n" for c in CHATS))
    cfg = TokenizeConfig(val_fraction=0.1, chat_inputs=[str(chat)], chat_val_fraction=0.1)
    run_tokenize(cfg, str(data), str(tiny_model_dir), str(root / "tokens"))
    return root / "tokens"


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()


def test_prompt_tokens_carry_no_loss(sft_tokens, tiny_model_dir, model):
    """Only assistant tokens are targets with weight; changing a prompt target changes nothing."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    meta = shards.read_meta(str(sft_tokens))
    rows = ChatRows(str(sft_tokens), "train", seq_len=160, meta=meta)
    assert rows.truncated == 0
    batch = TrainingData(None, rows).batch(np.arange(len(rows)))
    learned = tok.decode(batch.targets[batch.weights > 0])
    prompt = tok.decode(batch.targets[(batch.weights == 0) & (batch.inputs != rows.pad_id)])
    assert "Red." in learned and "Name colour" not in learned and "Answer in one word" not in learned
    assert "Name colour" in prompt
    with torch.no_grad():
        loss = float(_token_loss_sum(model, batch, 160, "cpu"))
        changed = batch.targets.copy()
        changed[batch.weights == 0] = 5  # every prompt and padding target replaced
        same = float(_token_loss_sum(model, type(batch)(batch.inputs, changed, batch.weights, batch.positions),
                                     160, "cpu"))  # fmt: skip
    assert loss == pytest.approx(same, rel=1e-6)
    assert TrainingData(None, rows).target_count(np.arange(len(rows))) == int(batch.weights.sum())


def test_packed_conversations_do_not_attend_to_each_other(sft_tokens, model):
    """A packed row's loss equals the sum of its conversations' losses computed one by one."""
    meta = shards.read_meta(str(sft_tokens))
    rows = ChatRows(str(sft_tokens), "train", seq_len=256, meta=meta)
    assert max(len(r) for r in rows.rows) >= 3  # several conversations share a row
    data = TrainingData(None, rows)
    index = next(i for i, r in enumerate(rows.rows) if len(r) >= 3)
    with torch.no_grad():
        packed = float(_token_loss_sum(model, data.batch(np.array([index])), 256, "cpu"))
        alone = 0.0
        for start, n in rows.rows[index]:
            ids = torch.from_numpy(rows.tokens[start : start + n + 1].astype(np.int64))[None]
            logits = model(input_ids=ids[:, :-1]).logits[0]
            losses = torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="none")
            alone += float(
                (losses * torch.from_numpy(rows.mask[start + 1 : start + 1 + n].astype(np.float32))).sum()
            )
    assert packed == pytest.approx(alone, rel=1e-5)


def test_text_windows_and_chat_rows_mix_in_one_index_space(sft_tokens):
    meta = shards.read_meta(str(sft_tokens))
    text = PackedTokens(str(sft_tokens), "train", 96, meta)
    chat = ChatRows(str(sft_tokens), "train", 96, meta)
    data = TrainingData(text, chat, chat_repeat=3)
    assert len(data) == len(text) + 3 * len(chat)
    mixed = data.batch(np.array([0, len(text), len(text) + len(chat)]))  # a window, then one row twice
    assert mixed.weights[0].tolist() == [1.0] * 96 and mixed.positions[0].tolist() == list(range(96))
    assert (mixed.inputs[1] == mixed.inputs[2]).all() and 0 < mixed.weights[1].sum() < 96


def test_lora_sft_with_text_trains_and_keeps_the_adapter(sft_tokens, tiny_model_dir, tmp_path):
    section = {
        "tokens": str(sft_tokens), "output_dir": str(tmp_path / "model"),
        "checkpoint_dir": str(tmp_path / "ckpt"), "run_dir": str(tmp_path / "runs"),
        "init_from": str(tiny_model_dir), "lora": {"r": 4, "alpha": 8}, "seq_len": 96, "micro_batch_size": 8,
        "max_steps": 16, "chat_repeat": 4, "warmup_steps": 1, "log_every": 4, "eval_every": 8,
        "eval_batches": 2, "save_every": 8, "num_threads": 1, "tensorboard": False, "learning_rate": 3e-3,
    }  # fmt: skip
    cfg = parse_config({"train": section}).train
    assert cfg.effective_learning_rate() == 3e-3 and cfg.effective_weight_decay() == 0.0
    summary = run_train(cfg, cfg.paths("unused"), seed=3)
    records = [json.loads(x) for x in (tmp_path / "runs" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["loss"] < records[0]["loss"]
    assert (tmp_path / "model" / "adapter" / "adapter_config.json").exists()
    assert (tmp_path / "model" / "model.safetensors").exists() and summary["step"] == 16


def test_fine_tuning_gets_fine_tuning_defaults():
    scratch = parse_config({}).train
    full = parse_config({"train": {"init_from": "m"}}).train
    lora = parse_config({"train": {"init_from": "m", "lora": {"r": 8}}}).train
    assert (scratch.effective_learning_rate(), scratch.effective_weight_decay()) == (1e-3, 0.1)
    assert (full.effective_learning_rate(), full.effective_weight_decay()) == (2e-5, 0.0)
    assert lora.effective_learning_rate() == 2e-4
    assert (
        parse_config({"train": {"init_from": "m", "learning_rate": 1e-4}}).train.effective_learning_rate()
        == 1e-4
    )
