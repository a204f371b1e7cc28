"""Distributed configs: invalid DeepSpeed/FSDP combinations are rejected at load, without deepspeed."""

from __future__ import annotations

import json

import pytest

from nexus_llm.config import ConfigError, parse_config
from nexus_llm.train.config import TrainConfig
from nexus_llm.train.distributed import check_runtime, deepspeed_config

GUIDE_DS_CONFIG = {  # the guide's ZeRO-2 config, offload_param included
    "fp16": {"enabled": "auto"},
    "zero_optimization": {
        "stage": 2,
        "offload_optimizer": {"device": "cpu", "pin_memory": True},
        "offload_param": {"device": "cpu", "pin_memory": True},
    },
    "train_micro_batch_size_per_gpu": "auto",
    "gradient_accumulation_steps": "auto",
}


def _train(**kw):
    return parse_config({"train": kw}).train


def test_offload_param_below_stage_3_is_rejected_with_a_fix():
    with pytest.raises(ConfigError, match=r"offload_param works only with ZeRO stage 3.*Set zero_stage: 3"):
        _train(distributed={"strategy": "deepspeed", "deepspeed": {"zero_stage": 2, "offload_param": "cpu"}})


def test_the_guides_deepspeed_file_is_rejected(tmp_path):
    path = tmp_path / "ds_config.json"
    path.write_text(json.dumps(GUIDE_DS_CONFIG))
    with pytest.raises(ConfigError, match="offload_param works only with ZeRO stage 3"):
        _train(distributed={"strategy": "deepspeed", "deepspeed": {"config_file": str(path)}})
    fixed = {**GUIDE_DS_CONFIG, "zero_optimization": {**GUIDE_DS_CONFIG["zero_optimization"], "stage": 3}}
    path.write_text(json.dumps(fixed))
    cfg = _train(
        micro_batch_size=4, distributed={"strategy": "deepspeed", "deepspeed": {"config_file": str(path)}}
    )
    ds = deepspeed_config(cfg, "bf16")
    assert ds["train_micro_batch_size_per_gpu"] == 4 and ds["zero_optimization"]["stage"] == 3
    assert ds["zero_force_ds_cpu_optimizer"] is False


@pytest.mark.parametrize(
    ("ds", "message"),
    [
        (
            {"zero_optimization": {"stage": 0, "offload_optimizer": {"device": "cpu"}}},
            "needs ZeRO stage 1, 2 or 3",
        ),
        (
            {"fp16": {"enabled": True}, "bf16": {"enabled": True}, "zero_optimization": {"stage": 2}},
            "both enabled",
        ),
        (
            {"train_micro_batch_size_per_gpu": 16, "zero_optimization": {"stage": 1}},
            "16 in the DeepSpeed config",
        ),
    ],
)
def test_other_invalid_deepspeed_files(tmp_path, ds, message):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps(ds))
    with pytest.raises(ConfigError, match=message):
        _train(distributed={"strategy": "deepspeed", "deepspeed": {"config_file": str(path)}})


def test_valid_zero3_with_offload_builds_a_consistent_config():
    cfg = _train(
        micro_batch_size=2, grad_accum_steps=8, grad_clip=0.5,
        distributed={"strategy": "deepspeed", "deepspeed": {"zero_stage": 3, "offload_param": "cpu", "offload_optimizer": "cpu"}},
    )  # fmt: skip
    ds = deepspeed_config(cfg, "bf16")
    assert ds["zero_optimization"]["offload_param"]["device"] == "cpu"
    assert (ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"]) == (2, 8)
    assert ds["gradient_clipping"] == 0.5 and ds["bf16"] == {"enabled": True}
    # without it the export at the end of a ZeRO-3 run fails (seen on an H200: scripts/gpu_check.py)
    assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    assert (
        "stage3_gather_16bit_weights_on_model_save"
        not in deepspeed_config(
            _train(distributed={"strategy": "deepspeed", "deepspeed": {"zero_stage": 2}}), "bf16"
        )["zero_optimization"]
    )


def test_a_zero3_file_that_cannot_export_the_model_is_rejected(tmp_path):
    path = tmp_path / "ds.json"
    path.write_text(
        json.dumps({"zero_optimization": {"stage": 3, "stage3_gather_16bit_weights_on_model_save": False}})
    )
    with pytest.raises(ConfigError, match="could not be exported"):
        _train(distributed={"strategy": "deepspeed", "deepspeed": {"config_file": str(path)}})


def _groups(model, **train):
    from nexus_llm.train.model import make_optimizer

    return make_optimizer(model, _train(**train)).param_groups


def test_optimizer_groups_are_never_empty_or_redundant(tiny_model_dir):
    """DeepSpeed drops empty groups and the scheduler then fails at its first step (seen with LoRA on
    ZeRO-2 and with weight_decay 0 on ZeRO-3 on a GPU): every group has parameters and a reason to exist."""
    from transformers import AutoModelForCausalLM

    from nexus_llm.train.model import apply_lora

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    decayed, plain = _groups(model, weight_decay=0.1)
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decayed["params"]) and all(p.ndim < 2 for p in plain["params"])
    (single,) = _groups(model, weight_decay=0.0)
    assert len(single["params"]) == len(list(model.parameters()))
    lora = apply_lora(
        model, _train(init_from=str(tiny_model_dir), lora={"r": 4, "target_modules": ["q_proj"]})
    )
    (adapters,) = _groups(lora, weight_decay=0.1, init_from=str(tiny_model_dir), lora={"r": 4})
    assert adapters["params"] and all(p.ndim == 2 for p in adapters["params"])


def test_gpu_strategies_are_refused_on_cpu_with_the_alternative():
    cfg = _train(distributed={"strategy": "fsdp"})
    with pytest.raises(ConfigError, match="use strategy ddp"):
        check_runtime(cfg, cuda=False)


def test_lora_without_a_base_model_is_rejected():
    with pytest.raises(ConfigError, match="lora needs init_from"):
        _train(lora={"r": 4})


def test_pretrained_models_are_never_loaded_with_device_map(monkeypatch, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from nexus_llm.train.model import load_pretrained

    seen = {}
    original = AutoModelForCausalLM.from_pretrained

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", spy)
    load_pretrained(str(tiny_model_dir), {"vocab_size": 10})
    assert "device_map" not in seen


def test_unknown_train_keys_get_a_suggestion():
    with pytest.raises(ConfigError, match="Did you mean 'max_steps'"):
        _train(max_step=3)
    assert isinstance(_train(), TrainConfig)
