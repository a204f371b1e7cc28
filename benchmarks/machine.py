"""The machine a benchmark ran on, printed with its figures: CPU model, cores, the instruction-set
flags that decide training precision and matmul speed, memory, the load when it started, and the
library versions. A figure without this cannot be compared with another."""

from __future__ import annotations

import contextlib
import os
import platform
from typing import Any

FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def cpu_info() -> dict[str, Any]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {"model": model, "cores": os.cpu_count(), "flags": [f for f in FLAGS if f in flags]}


def memory_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def describe(**extra: Any) -> dict[str, Any]:
    """Everything above as a dict (for results files); ``extra`` adds run settings (precision, threads)."""
    import importlib.metadata as md

    versions = {}
    for name in ("torch", "transformers", "accelerate"):
        with contextlib.suppress(md.PackageNotFoundError):
            versions[name] = md.version(name)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu": cpu_info(),
        "memory_gib": round(memory_gib() or 0, 1),
        "load_average_1m": round(load[0], 2) if load else None,
        "python": platform.python_version(),
        "versions": versions,
        **extra,
    }


def summary_line(info: dict[str, Any]) -> str:
    cpu = info["cpu"]
    flags = ", ".join(cpu["flags"]) or "none of " + ", ".join(FLAGS)
    extra = "; ".join(
        f"{k} {v}"
        for k, v in info.items()
        if k not in {"cpu", "memory_gib", "load_average_1m", "python", "versions"}
    )
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    return (
        f"machine: {cpu['model']}, {cpu['cores']} CPUs, {info['memory_gib']} GiB; flags: {flags}; "
        f"load average {info['load_average_1m']} at start; Python {info['python']}, {versions}"
        + (f"; {extra}" if extra else "")
    )
