"""Precision follows the machine: ``auto`` is bf16 on CUDA and on CPUs with bf16 instructions, else fp32.

The CPU's flags are forced both ways here, so one machine proves both choices whatever its own CPU has.
"""

from __future__ import annotations

import pytest

from nexus_llm.configbase import ConfigError
from nexus_llm.train import hardware


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"avx2", "avx512f"}, "fp32"),
        ({"avx2", "avx512f", "avx512_bf16"}, "bf16"),
        ({"avx2", "amx_bf16", "amx_tile"}, "bf16"),
        (set(), "fp32"),
    ],
)
def test_auto_precision_follows_the_cpu_flags(monkeypatch, flags, expected):
    monkeypatch.setattr(hardware, "cpu_flags", lambda: flags)
    assert hardware.resolve_precision("auto", cuda=False) == expected


@pytest.mark.parametrize("requested", ["fp32", "bf16"])
def test_an_explicit_precision_is_kept_whatever_the_cpu(monkeypatch, requested):
    for flags in (set(), {"amx_bf16"}):
        monkeypatch.setattr(hardware, "cpu_flags", lambda flags=flags: flags)
        assert hardware.resolve_precision(requested, cuda=False) == requested


def test_fp16_on_a_cpu_is_refused_with_the_alternatives():
    with pytest.raises(ConfigError, match="bf16 or fp32"):
        hardware.resolve_precision("fp16", cuda=False)
