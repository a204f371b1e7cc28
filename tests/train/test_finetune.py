"""Fine-tuning a local Hugging Face checkpoint, full or LoRA, on tokens made with its tokenizer."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from nexus_llm.config import ConfigError, parse_config
from nexus_llm.train.loop import run_train
from support.train import make_tokens, train_section


@pytest.fixture(scope="module")
def model_tokens(tiny_model_dir, tmp_path_factory):
    return make_tokens(tmp_path_factory.mktemp("ft"), docs=60, tokenizer_dir=tiny_model_dir)


def _run(tokens, out, **kw):
    section = train_section(tokens, out, max_steps=4, save_every=4, eval_every=4, **kw)
    section.pop("model_overrides")
    cfg = parse_config({"train": section}).train
    return run_train(cfg, cfg.paths(str(out)), seed=7)


def _weights(model_dir):
    return load_file(str(model_dir / "model.safetensors"))


def test_full_fine_tune_changes_every_layer(tiny_model_dir, model_tokens, tmp_path):
    _run(model_tokens, tmp_path, init_from=str(tiny_model_dir))
    before, after = _weights(tiny_model_dir), _weights(tmp_path / "model")
    assert not torch.equal(
        before["model.layers.0.mlp.up_proj.weight"], after["model.layers.0.mlp.up_proj.weight"]
    )


def test_lora_is_merged_into_a_plain_model(tiny_model_dir, model_tokens, tmp_path):
    summary = _run(model_tokens, tmp_path, init_from=str(tiny_model_dir), learning_rate=1e-2,
                   lora={"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]})  # fmt: skip
    after = _weights(tmp_path / "model")
    assert not any("lora" in k for k in after)
    before = _weights(tiny_model_dir)
    assert not torch.equal(
        before["model.layers.0.self_attn.q_proj.weight"], after["model.layers.0.self_attn.q_proj.weight"]
    )
    assert torch.equal(
        before["model.layers.0.mlp.up_proj.weight"], after["model.layers.0.mlp.up_proj.weight"]
    )
    AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    assert summary["flops_per_token"] < summary["parameters"] * 6  # frozen weights cost 4 FLOPs, not 6


def test_tokens_from_another_tokenizer_are_refused(tiny_model_dir, tmp_path):
    other = make_tokens(tmp_path / "other", docs=20)
    with pytest.raises(ConfigError, match="different tokenizer"):
        _run(other, tmp_path, init_from=str(tiny_model_dir))
    assert not (tmp_path / "model" / "manifest.json").exists()
    assert json.loads((other / "meta.json").read_text())["tokenizer"]["sha256"]


def test_lora_adapters_start_from_the_same_weights_for_the_same_seed(tiny_model_dir):
    from nexus_llm.train.model import build_model

    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    cfg = parse_config({"train": {"init_from": str(tiny_model_dir), "lora": lora}}).train

    def adapters(seed):
        model = build_model(cfg, {"vocab_size": 10}, seed)
        return {k: v.detach().clone() for k, v in model.state_dict().items() if "lora_A" in k}

    first, again, other = adapters(7), adapters(7), adapters(8)
    assert first and all(torch.equal(first[k], again[k]) for k in first)
    assert not any(torch.equal(first[k], other[k]) for k in first)
