"""The ``train:`` section of ``nexus.yaml``.

Paths default to sub-directories of the top-level ``workspace`` (see :meth:`TrainConfig.paths`); the
``nexus run`` orchestrator and the SageMaker entrypoint set them explicitly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from nexus_llm import storage
from nexus_llm.configbase import ConfigError, StrictModel
from nexus_llm.train.presets import PRESETS

PresetName = Literal[tuple(PRESETS)]  # type: ignore[valid-type]


class LoraSettings(StrictModel):
    """Low-rank adapters (peft) on a model loaded with ``init_from``; merged into the exported model."""

    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class DeepSpeedSettings(StrictModel):
    """DeepSpeed ZeRO for GPUs. Either the fields below or ``config_file`` (a ds_config.json)."""

    config_file: str | None = Field(
        None, description="a DeepSpeed JSON config; checked like the fields below"
    )
    zero_stage: Literal[0, 1, 2, 3] = 2
    offload_optimizer: Literal["none", "cpu", "nvme"] = "none"
    offload_param: Literal["none", "cpu", "nvme"] = Field("none", description="ZeRO stage 3 only")


class FsdpSettings(StrictModel):
    """PyTorch FSDP for GPUs (through accelerate)."""

    sharding_strategy: Literal["FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD"] = "FULL_SHARD"
    cpu_offload: bool = False
    activation_checkpointing: bool = False


class DistributedSettings(StrictModel):
    """How multi-process runs (``torchrun``) share the work: DDP everywhere, DeepSpeed/FSDP on GPUs."""

    strategy: Literal["ddp", "deepspeed", "fsdp"] = "ddp"
    deepspeed: DeepSpeedSettings = DeepSpeedSettings()
    fsdp: FsdpSettings = FsdpSettings()


class TrainConfig(StrictModel):
    """``nexus train`` settings."""

    # where things are (None = the workspace sub-directory, docs/architecture.md)
    tokens: str | None = Field(None, description="token directory from `nexus data tokenize`")
    tokenizer: str | None = Field(
        None, description="tokenizer to export with the model (default: the tokens' copy)"
    )
    output_dir: str | None = Field(None, description="exported Hugging Face model directory")
    checkpoint_dir: str | None = Field(
        None, description="checkpoints (local or s3://); resumed automatically"
    )
    run_dir: str | None = Field(None, description="metrics.jsonl, TensorBoard events, loss.png")
    # model
    preset: PresetName = Field("demo", description=f"Llama architecture size: {', '.join(PRESETS)}")
    model_overrides: dict[str, Any] = Field(
        default_factory=dict, description="LlamaConfig fields to change, e.g. {num_hidden_layers: 2}"
    )
    init_from: str | None = Field(None, description="fine-tune this HF checkpoint (local path or hub id)")
    lora: LoraSettings | None = Field(
        None, description="train LoRA adapters instead of all weights (needs init_from)"
    )
    # schedule
    seq_len: int = Field(256, ge=8, description="tokens per training sequence (packed, no padding)")
    micro_batch_size: int = Field(8, ge=1, description="sequences per process per forward pass")
    grad_accum_steps: int = Field(1, ge=1)
    chat_repeat: int = Field(
        1,
        ge=1,
        description="passes over the chat (SFT) rows per epoch of the text: small instruction "
        "sets need several",
    )
    gradient_checkpointing: bool = Field(
        False, description="recompute activations in the backward pass: less memory, ~30% more compute"
    )
    max_steps: int | None = Field(
        None, ge=1, description="optimizer steps; None = `epochs` passes over the data"
    )
    epochs: float = Field(1.0, gt=0)
    learning_rate: float | None = Field(
        None,
        gt=0,
        description="peak AdamW rate; null = 1e-3 from scratch, 2e-4 for LoRA, 2e-5 for full fine-tuning",
    )
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="cosine decay ends at learning_rate × this")
    warmup_steps: int = Field(20, ge=0)
    weight_decay: float | None = Field(
        None, ge=0, description="on matrices only; null = 0.1 from scratch, 0 when fine-tuning"
    )
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = Field(1.0, ge=0, description="0 disables clipping")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto",
        description="auto: bf16 where the hardware has it (CUDA, or CPUs with avx512_bf16/AMX), else fp32",
    )
    compile: bool = Field(False, description="torch.compile the model (slow start, faster steps on GPU)")
    seed: int | None = Field(None, description="None = the top-level seed")
    num_threads: int = Field(0, ge=0, description="torch CPU threads per process; 0 = torch's default")
    # logging, evaluation, checkpoints
    log_every: int = Field(10, ge=1)
    eval_every: int = Field(100, ge=1)
    eval_batches: int = Field(
        20, ge=1, description="validation micro-batches per evaluation (shared by all processes)"
    )
    save_every: int = Field(200, ge=1)
    save_total_limit: int = Field(2, ge=1, description="complete checkpoints kept")
    tensorboard: bool = True
    record_samples: bool = Field(False, description="write the sequence indices of every step to run_dir")
    distributed: DistributedSettings = DistributedSettings()

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.lora is not None and self.init_from is None:
            raise ValueError(
                "lora needs init_from (a pretrained checkpoint to adapt); remove lora to pretrain"
            )
        if self.init_from is not None and self.model_overrides:
            raise ValueError("model_overrides apply to presets only; remove them when using init_from")
        from nexus_llm.train.distributed import check_distributed

        check_distributed(self)
        return self

    @property
    def finetuning(self) -> bool:
        return self.init_from is not None

    def effective_learning_rate(self) -> float:
        """The peak rate: the configured one, else one that suits the run (fine-tuning needs far lower
        rates than pretraining from scratch; LoRA's few new weights take about 10× a full fine-tune's)."""
        if self.learning_rate is not None:
            return self.learning_rate
        if not self.finetuning:
            return 1e-3
        return 2e-4 if self.lora is not None else 2e-5

    def effective_weight_decay(self) -> float:
        if self.weight_decay is not None:
            return self.weight_decay
        return 0.0 if self.finetuning else 0.1

    def paths(self, workspace: str) -> TrainPaths:
        """Concrete locations, filling unset ones from the workspace layout."""
        from nexus_llm.workspace import Layout

        layout = Layout(workspace)
        tokens = self.tokens or layout.tokens
        return TrainPaths(
            tokens=tokens,
            tokenizer=self.tokenizer or storage.join(tokens, "tokenizer"),  # the tokens' copy
            output_dir=self.output_dir or layout.model,
            checkpoint_dir=self.checkpoint_dir or layout.checkpoints,
            run_dir=self.run_dir or layout.runs,
        )

    def deepspeed_file_config(self) -> dict[str, Any] | None:
        path = self.distributed.deepspeed.config_file
        if path is None:
            return None
        try:
            return json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"distributed.deepspeed.config_file {path!r}: {err}") from None


@dataclass(frozen=True)
class TrainPaths:
    tokens: str
    tokenizer: str
    output_dir: str
    checkpoint_dir: str
    run_dir: str
