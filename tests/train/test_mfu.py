"""FLOPs per token by the stated formula, GPU peaks from the table, CPU peak measured once and cached."""

from __future__ import annotations

import pytest
from transformers import LlamaConfig

from nexus_llm.train import mfu


def test_flops_per_token_is_6n_plus_attention_term():
    cfg = LlamaConfig(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2)  # fmt: skip
    per_layer = 64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 128
    n = 2 * per_layer + 64 * 1000
    assert mfu.matmul_weights(cfg) == n
    assert mfu.train_flops_per_token(cfg, seq_len=256) == 6 * n + 12 * 2 * 4 * 16 * 256
    assert mfu.train_flops_per_token(cfg, 256, trainable_fraction=0.0) == 4 * n + 12 * 2 * 4 * 16 * 256


def test_gpu_peaks_come_from_the_table():
    assert mfu.gpu_peak_flops("NVIDIA H100 80GB HBM3", "bf16") == 989e12
    assert mfu.gpu_peak_flops("NVIDIA H100 PCIe", "bf16") == 756e12
    assert mfu.gpu_peak_flops("NVIDIA A10G", "fp32") == 31.2e12
    assert mfu.gpu_peak_flops("Some Future GPU", "bf16") is None


def test_cpu_peak_is_measured_once_then_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls = []
    monkeypatch.setattr(mfu, "measure_cpu_peak", lambda p: calls.append(p) or 1.5e10)
    assert mfu.cpu_peak_flops("fp32") == 1.5e10
    assert mfu.cpu_peak_flops("fp32") == 1.5e10
    assert calls == ["fp32"]
    assert (tmp_path / "nexus_llm" / "cpu_peak_flops.json").exists()


def test_cpu_matmul_benchmark_gives_a_plausible_figure():
    peak = mfu.measure_cpu_peak("fp32", seconds=0.05, n=256)
    assert 1e8 < peak < 1e14
    with pytest.raises(KeyError):
        mfu.measure_cpu_peak("int3")
