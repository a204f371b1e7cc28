"""Model FLOPs utilisation: the FLOPs a step needs by the model's shape, over the device's peak.

Training FLOPs per token (Chowdhery et al. 2022, PaLM, appendix B)::

    6·N + 12·L·H·Q·T

N counts the weights of every matrix multiply (attention and MLP projections of all layers, and the
output head; the input embedding is a lookup, not a multiply), L is layers, H attention heads, Q the
head dimension and T the sequence length; 6 = 2 (multiply-add) × 3 (forward, and backward for
activations and for weights). The attention term counts the full T×T score matrix (no discount for
causal masking), as PaLM does. Frozen weights (LoRA) skip the weight-gradient multiply: 4 per weight.

Peak: on CUDA a table of published dense bf16/fp32 figures; on CPU a short matmul benchmark in the
training dtype with the training thread count, cached per CPU model, threads, dtype and torch version.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from nexus_llm.train.hardware import cpu_model

# Dense (no sparsity) peak FLOP/s per GPU: (bf16/fp16 tensor cores, plain fp32), from vendor data sheets.
GPU_PEAK_FLOPS: dict[str, tuple[float, float]] = {
    "H200": (989e12, 67e12),
    "H100 PCIe": (756e12, 51e12),
    "H100": (989e12, 67e12),
    "B200": (2250e12, 80e12),
    "A100": (312e12, 19.5e12),
    "A10G": (70e12, 31.2e12),
    "A10": (125e12, 31.2e12),
    "L40S": (362e12, 91.6e12),
    "L4": (121e12, 30.3e12),
    "V100": (125e12, 15.7e12),
    "T4": (65e12, 8.1e12),
}


def matmul_weights(config: Any) -> int:
    """N: weights that take part in matrix multiplies, from a Llama-style ``config``."""
    d, layers = config.hidden_size, config.num_hidden_layers
    heads = config.num_attention_heads
    q = getattr(config, "head_dim", None) or d // heads
    kv = getattr(config, "num_key_value_heads", None) or heads
    attention = d * heads * q + 2 * d * kv * q + heads * q * d
    mlp = 3 * d * config.intermediate_size
    return layers * (attention + mlp) + d * config.vocab_size


def train_flops_per_token(config: Any, seq_len: int, trainable_fraction: float = 1.0) -> float:
    """6·N + 12·L·H·Q·T (weights that are frozen count 4·N instead of 6·N)."""
    n = matmul_weights(config)
    heads = config.num_attention_heads
    q = getattr(config, "head_dim", None) or config.hidden_size // heads
    weights = n * (4 + 2 * trainable_fraction)
    return weights + 12 * config.num_hidden_layers * heads * q * seq_len


def gpu_peak_flops(device_name: str, precision: str) -> float | None:
    """The table's peak for a CUDA device name, or None when the device is not listed."""
    for key, (half, single) in GPU_PEAK_FLOPS.items():
        if key.lower() in device_name.lower():
            return single if precision == "fp32" else half
    return None


def _cache_file() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "nexus_llm" / "cpu_peak_flops.json"


def measure_cpu_peak(dtype_name: str, seconds: float = 0.5, n: int = 1024, trials: int = 5) -> float:
    """FLOP/s of an n×n matmul in ``dtype_name`` with the current torch thread count.

    Timed by the process's CPU time divided by the thread count, best of ``trials``: on a machine
    shared with other work, wall time would count the moments the threads were not running and
    give a low peak (and so an MFU above 100%).
    """
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype_name]
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.mm(a, b)  # warm-up: thread pool and kernels
    threads, best = torch.get_num_threads(), 0.0
    for _ in range(trials):
        runs, wall, cpu = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - wall < seconds / trials or runs < 2:
            torch.mm(a, b)
            runs += 1
        busy = max(time.process_time() - cpu, 1e-9) / threads
        best = max(best, 2 * n**3 * runs / busy)
    return best


def cpu_peak_flops(precision: str) -> float:
    """Measured CPU matmul peak, cached so that every run compares against the same figure."""
    import torch

    key = f"{cpu_model()}|threads={torch.get_num_threads()}|{precision}|torch={torch.__version__}"
    path = _cache_file()
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    if key not in cache:
        cache[key] = measure_cpu_peak(precision)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(cache, indent=1))
        except OSError:
            pass  # a read-only home only costs a re-measurement next time
    return float(cache[key])


def device_peak_flops(device: Any, precision: str) -> tuple[float | None, str]:
    """(peak FLOP/s of one device, where the figure comes from)."""
    if getattr(device, "type", str(device)) == "cuda":
        import torch

        name = torch.cuda.get_device_name(device)
        peak = gpu_peak_flops(name, precision)
        return peak, f"table: {name}" if peak else f"unknown GPU {name!r}: MFU not reported"
    return cpu_peak_flops(precision), f"measured {precision} matmul on {cpu_model()}"
