"""The exported model directory: replaces an older export completely; the tokenizer knows the context."""

from __future__ import annotations

import json

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from nexus_llm.config import ConfigError, parse_config
from nexus_llm.train.distributed import build_accelerator
from nexus_llm.train.export import export_model


def _tiny(context: int):
    config = LlamaConfig(vocab_size=320, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=context,
                         tie_word_embeddings=True)  # fmt: skip
    return LlamaForCausalLM(config)


def test_export_replaces_an_older_model_and_sets_the_tokenizer_context(tiny_tokenizer_dir, tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    for stale in ("model-00001-of-00002.safetensors", "model.safetensors.index.json", "old.txt"):
        (out / stale).write_text("from an older, bigger export")
    (out / "manifest.json").write_text(json.dumps({"stage": "train", "files": ["old.txt"]}))
    accelerator = build_accelerator(parse_config({}).train, "fp32")
    manifest = export_model(accelerator, _tiny(48), str(tiny_tokenizer_dir), str(out), {"stage": "train"})
    assert sorted(p.name for p in out.iterdir()) == sorted([*manifest["files"], "manifest.json"])
    assert "model.safetensors" in manifest["files"]
    assert AutoTokenizer.from_pretrained(out).model_max_length == 48
    assert AutoModelForCausalLM.from_pretrained(out).config.max_position_embeddings == 48


def test_an_output_dir_of_another_stage_is_refused_before_training(tmp_path):
    from nexus_llm.train.export import check_output_dir

    (tmp_path / "manifest.json").write_text(json.dumps({"stage": "eval", "files": ["results.json"]}))
    with pytest.raises(ConfigError, match="holds the output of `eval`"):
        check_output_dir(str(tmp_path))
    check_output_dir(str(tmp_path / "new"))  # absent or our own: fine
