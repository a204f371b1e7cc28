"""Multi-process training: DDP (``torchrun``, gloo on CPU, NCCL on GPU), DeepSpeed ZeRO and FSDP.

Invalid combinations are rejected when the config is loaded, without importing DeepSpeed: DeepSpeed
itself accepts some of them silently (``offload_param`` under ZeRO stage 2 is ignored, so a run that
was meant to fit in memory runs out of it hours later). The model code knows nothing of this module;
:func:`build_accelerator` applies the strategy from outside.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from nexus_llm.configbase import ConfigError

if TYPE_CHECKING:
    from nexus_llm.train.config import TrainConfig


def _enabled(section: Any) -> bool:
    return isinstance(section, dict) and bool(section.get("enabled", False))


def _offload_device(zero: dict[str, Any], key: str) -> str:
    section = zero.get(key) or {}
    return str(section.get("device", "none")) if isinstance(section, dict) else "none"


def deepspeed_problems(ds: dict[str, Any], cfg: TrainConfig) -> list[str]:
    """What is wrong with a DeepSpeed config for this training run (empty when it is valid)."""
    problems = []
    zero = ds.get("zero_optimization") or {}
    stage = int(zero.get("stage", 0))
    if _offload_device(zero, "offload_param") not in ("none", "None") and stage != 3:
        problems.append(
            f"offload_param works only with ZeRO stage 3, but the stage is {stage} (DeepSpeed would ignore it "
            "silently and keep all parameters on the GPU). Set zero_stage: 3, or remove offload_param."
        )
    if _offload_device(zero, "offload_optimizer") not in ("none", "None") and stage == 0:
        problems.append("offload_optimizer needs ZeRO stage 1, 2 or 3 (the stage is 0). Raise zero_stage.")
    if stage == 3 and zero.get("stage3_gather_16bit_weights_on_model_save") is False:
        problems.append(
            "stage3_gather_16bit_weights_on_model_save is false: the trained model could not be exported "
            "(the weights stay partitioned). Set it to true, or remove it."
        )
    if _enabled(ds.get("fp16")) and _enabled(ds.get("bf16")):
        problems.append("fp16 and bf16 are both enabled; enable one (train.precision decides it when unset).")
    wanted = {
        "train_micro_batch_size_per_gpu": cfg.micro_batch_size,
        "gradient_accumulation_steps": cfg.grad_accum_steps,
    }
    for key, ours in wanted.items():
        value = ds.get(key, "auto")
        if value != "auto" and int(value) != ours:
            problems.append(f'{key} is {value} in the DeepSpeed config but {ours} in train:; use "auto".')
    for prec, other in (("bf16", "fp16"), ("fp16", "bf16")):
        if _enabled(ds.get(prec)) and cfg.precision in (other, "fp32"):
            problems.append(f"the DeepSpeed config enables {prec} but train.precision is {cfg.precision}.")
    return problems


def deepspeed_config(cfg: TrainConfig, precision: str | None = None) -> dict[str, Any]:
    """The DeepSpeed config for this run: the user's file or the ``deepspeed:`` fields, with batch sizes,
    clipping and precision filled in from ``train:`` so the two can never disagree."""
    settings = cfg.distributed.deepspeed
    ds = copy.deepcopy(cfg.deepspeed_file_config() or {})
    if not ds:
        zero: dict[str, Any] = {
            "stage": settings.zero_stage,
            "overlap_comm": True,
            "contiguous_gradients": True,
        }
        for key in ("offload_optimizer", "offload_param"):
            device = getattr(settings, key)
            if device != "none":
                zero[key] = {"device": device, "pin_memory": True}
        ds["zero_optimization"] = zero
    ds["train_micro_batch_size_per_gpu"] = cfg.micro_batch_size
    ds["gradient_accumulation_steps"] = cfg.grad_accum_steps
    ds.setdefault("gradient_clipping", cfg.grad_clip)
    if int(ds["zero_optimization"].get("stage", 0)) == 3:
        # the export gathers the partitioned weights into one 16-bit state dict; without this flag
        # accelerate refuses at the very end of training (seen on a GPU)
        ds["zero_optimization"].setdefault("stage3_gather_16bit_weights_on_model_save", True)
    if _offload_device(ds["zero_optimization"], "offload_optimizer") not in ("none", "None"):
        ds["zero_force_ds_cpu_optimizer"] = False  # we pass a torch AdamW (identical maths)
    precision = precision or cfg.precision
    if precision in ("bf16", "fp16") and not (_enabled(ds.get("bf16")) or _enabled(ds.get("fp16"))):
        ds[precision] = {"enabled": True}
    return ds


def check_distributed(cfg: TrainConfig) -> None:
    """Raise ``ConfigError`` naming every invalid distributed setting (called when the config loads)."""
    strategy = cfg.distributed.strategy
    if strategy == "deepspeed":
        problems = deepspeed_problems(cfg.deepspeed_file_config() or deepspeed_config(cfg), cfg)
        if cfg.lora is not None and cfg.distributed.deepspeed.zero_stage == 3:
            problems.append("LoRA with ZeRO stage 3 is not supported here; use zero_stage 2 for adapters.")
        if problems:
            raise ConfigError("distributed.deepspeed: " + " ".join(problems))
    if strategy == "fsdp" and cfg.precision == "fp16" and cfg.distributed.fsdp.cpu_offload:
        raise ConfigError("FSDP with cpu_offload and fp16 is unsupported by PyTorch; use bf16 or fp32.")
    if strategy != "ddp" and cfg.compile:
        raise ConfigError(
            f"compile is supported with ddp only here (strategy is {strategy}); set compile: false."
        )


def check_runtime(cfg: TrainConfig, cuda: bool) -> None:
    """Checks that need the machine: DeepSpeed and FSDP are GPU strategies."""
    strategy = cfg.distributed.strategy
    if strategy in ("deepspeed", "fsdp") and not cuda:
        raise ConfigError(
            f"distributed.strategy {strategy} needs CUDA GPUs; on CPU use strategy ddp "
            "(`torchrun --nproc-per-node N -m nexus_llm.train -c nexus.yaml`, gloo backend)."
        )
    if strategy == "deepspeed":
        import importlib.util

        if importlib.util.find_spec("deepspeed") is None:
            raise ConfigError(
                "distributed.strategy deepspeed needs the deepspeed package: pip install deepspeed"
            )


def reset_accelerator_state() -> None:
    """Forget the process-wide accelerate state of an earlier run (its precision, DeepSpeed/FSDP plugin,
    gradient-accumulation settings), so the next run in this process may choose others.

    accelerate keeps that state in class-level singletons and refuses a second ``Accelerator`` whose
    ``mixed_precision`` differs ("AcceleratorState has already been initialized and cannot be changed"): a
    notebook, a sweep or the tests training fp32 then bf16 in one process would fail. The process-level
    part (``PartialState``: device, rank, the torchrun process group) is kept: it does not change between
    runs, and tearing down the process group would break the ranks of a torchrun job.
    """
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()


def build_accelerator(cfg: TrainConfig, precision: str):
    """An ``accelerate.Accelerator`` for the strategy (DDP is picked up from torchrun's environment).

    Each call starts from a clean accelerate state (:func:`reset_accelerator_state`): the accelerator
    belongs to one run, and :func:`nexus_llm.train.loop.run_train` resets the state again when it ends.
    """
    import torch
    from accelerate import Accelerator
    from accelerate.utils import (
        DeepSpeedPlugin,
        DistributedDataParallelKwargs,
        FullyShardedDataParallelPlugin,
    )

    kwargs: dict[str, Any] = {
        "mixed_precision": "no" if precision == "fp32" else precision,
        "cpu": not torch.cuda.is_available(),  # without it accelerate ignores torchrun on CPU (no gloo group)
    }
    strategy = cfg.distributed.strategy
    if strategy == "ddp":
        # the only buffers (rotary frequencies) are constants: no need to broadcast them every forward
        kwargs["kwargs_handlers"] = [DistributedDataParallelKwargs(broadcast_buffers=False)]
    elif strategy == "deepspeed":
        kwargs["deepspeed_plugin"] = DeepSpeedPlugin(hf_ds_config=deepspeed_config(cfg, precision))
    elif strategy == "fsdp":
        fs = cfg.distributed.fsdp
        kwargs["fsdp_plugin"] = FullyShardedDataParallelPlugin(
            sharding_strategy=fs.sharding_strategy,
            cpu_offload=fs.cpu_offload,
            auto_wrap_policy="transformer_based_wrap",
            transformer_cls_names_to_wrap=["LlamaDecoderLayer"],
            activation_checkpointing=fs.activation_checkpointing,
            state_dict_type="SHARDED_STATE_DICT",
            use_orig_params=True,
        )
    reset_accelerator_state()
    return Accelerator(**kwargs)
