"""The model to train: a Llama preset from scratch, or a pretrained checkpoint (full or LoRA)."""

from __future__ import annotations

import os
from typing import Any

from nexus_llm import storage
from nexus_llm.configbase import ConfigError
from nexus_llm.train.config import TrainConfig
from nexus_llm.train.presets import llama_config


def _special_ids(meta: dict[str, Any]) -> dict[str, int]:
    return {k: meta[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if meta.get(k) is not None}


def build_model(cfg: TrainConfig, meta: dict[str, Any], seed: int):
    """A ``LlamaForCausalLM`` (or peft-wrapped model) in fp32; mixed precision is applied by accelerate."""
    import torch

    if cfg.init_from is not None:
        model = load_pretrained(cfg.init_from, meta)
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if cfg.lora is None:
            return model
        torch.manual_seed(seed)  # LoRA's A matrices are random: the same on every rank and every run
        if cfg.gradient_checkpointing:
            model.enable_input_require_grads()  # frozen embeddings: checkpointed blocks still need grads
        return apply_lora(model, cfg)
    from transformers import LlamaForCausalLM

    config = llama_config(
        cfg.preset, meta["vocab_size"], cfg.seq_len, _special_ids(meta), **cfg.model_overrides
    )
    torch.manual_seed(seed)  # the same initial weights on every rank and every fresh run
    model = LlamaForCausalLM(config)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def load_pretrained(name_or_path: str, meta: dict[str, Any]):
    """Load a HF causal LM on the CPU in fp32.

    Never with ``device_map="auto"``: it spreads layers over devices for inference and accelerate
    refuses to train such a model with DDP/DeepSpeed/FSDP; placement is accelerate's job.
    """
    import torch
    from transformers import AutoModelForCausalLM

    from nexus_llm.models.loading import resolve_model

    name_or_path = resolve_model(name_or_path)  # s3:// and model.tar.gz: the shared local cache
    check_same_tokenizer(name_or_path, meta)
    try:
        model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=torch.float32)
    except OSError as err:
        raise FileNotFoundError(f"train.init_from {name_or_path!r}: {err}") from None
    if model.config.vocab_size < meta["vocab_size"]:
        raise ConfigError(
            f"train.init_from has a {model.config.vocab_size}-token vocabulary but the tokens use "
            f"{meta['vocab_size']}: tokenize with the model's own tokenizer (--tokenizer {name_or_path})"
        )
    return model


def check_same_tokenizer(model_dir: str, meta: dict[str, Any]) -> None:
    """Fine-tuning data must be encoded with the model's tokenizer; compare the files' hashes."""
    tok_file = os.path.join(model_dir, "tokenizer.json")
    want = (meta.get("tokenizer") or {}).get("sha256")
    if want and os.path.isfile(tok_file) and storage.file_sha256(tok_file) != want:
        raise ConfigError(
            f"the tokens were encoded with a different tokenizer than {model_dir!r}'s: run "
            f"`nexus data tokenize DATA --tokenizer {model_dir} -o TOKENS` and train on those tokens"
        )


def apply_lora(model, cfg: TrainConfig):
    from peft import LoraConfig, get_peft_model

    assert cfg.lora is not None
    lora = LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=list(cfg.lora.target_modules),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def base_config(model) -> Any:
    """The transformers config of a plain or peft-wrapped model."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inner.config


def _numel(p) -> int:
    """Elements of a parameter, also when ZeRO-3 has partitioned it away (``numel()`` is then 0)."""
    return int(getattr(p, "ds_numel", 0) or p.numel())


def parameter_count(model) -> int:
    return sum(_numel(p) for p in model.parameters())


def trainable_fraction(model) -> float:
    total = parameter_count(model)
    return sum(_numel(p) for p in model.parameters() if p.requires_grad) / max(total, 1)


def make_optimizer(model, cfg: TrainConfig):
    """AdamW; weight decay on matrices only (not norms or biases)."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.effective_weight_decay()},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    # No empty group (LoRA trains matrices only) and no split that changes nothing (weight_decay 0):
    # DeepSpeed drops or merges such groups, and the LR scheduler, built on the groups given here, then
    # fails at its first step ("zip() argument 2 is longer than argument 1"; seen on a GPU with ZeRO-2/3).
    groups = [g for g in groups if g["params"]]
    if len(groups) > 1 and cfg.effective_weight_decay() == 0.0:
        groups = [{"params": params, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.effective_learning_rate(), betas=cfg.betas)
