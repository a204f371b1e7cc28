"""What the machine offers: CUDA, CPU bf16 instructions, and the precision a run uses."""

from __future__ import annotations

import platform

from nexus_llm.configbase import ConfigError

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_has_bf16() -> bool:
    """Native bf16 arithmetic (AVX512-BF16 or AMX); without it torch emulates bf16 and is slower than fp32."""
    return bool(cpu_flags() & set(BF16_CPU_FLAGS))


def resolve_precision(requested: str, cuda: bool) -> str:
    """``auto`` → bf16 on CUDA devices that support it and on CPUs with native bf16, else fp32."""
    import torch

    if requested == "fp16" and not cuda:
        raise ConfigError("train.precision fp16 needs a CUDA GPU; use bf16 or fp32 on CPU")
    if requested != "auto":
        return requested
    if cuda:
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_bf16() else "fp32"
