"""The CPU kernels for decode steps in ``kernels/cpu.cpp``, compiled on first use.

torch ships no fast path for a decode step on a CPU with AVX2 but without AVX-512: its int4 kernel
dequantizes every weight to floating point before multiplying, and its int8 weight-only kernel has no
vectorised AVX2 path (SmolLM2-135M's 49152x576 output layer: 14 ms for one token, against 5 ms in
float32). ``cpu.cpp`` multiplies on 8-bit integers the way llama.cpp does (weights in blocks of 32
columns with their own scales, activations quantized per block on the fly). It also holds the small
operators a one-token step is made of, where torch pays a dispatch and an allocation per operator: RMSNorm
in one pass (torch runs five operators) and attention for one query token per sequence (torch's
flash-attention kernel tiles for long queries). docs/serve.md has the timings. It is built once with torch's C++ extension loader (g++ and ninja, about 40 s on 2 cores) into
torch's extension cache (``$TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``), one folder per
torch installation (:func:`build_dir`), which every later process of that installation reuses (``make
setup`` builds it).
Without a compiler, or on a CPU without AVX2 and FMA, :func:`kernels` returns None and the runner keeps
torch's kernels.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SOURCE = Path(__file__).parent / "kernels" / "cpu.cpp"
DISABLE_ENV = "NEXUS_NATIVE_KERNELS"
"""Set to ``0`` to keep torch's kernels (no build, no native code)."""


def build_dir() -> Path:
    """Where the kernels are built for the torch this process imports: one folder per torch installation,
    so two virtual environments do not rebuild over each other's build (torch's loader would, since the
    include paths differ)."""
    import torch

    root = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or Path.home() / ".cache" / "torch_extensions")
    key = hashlib.sha256(f"{torch.__version__}|{Path(torch.__file__).parent}".encode()).hexdigest()[:12]
    return root / f"nexus_cpu_kernels-{key}"


def unavailable_reason() -> str | None:
    """Why the kernels cannot be used on this machine, or None."""
    from nexus_llm.train.hardware import cpu_flags

    if os.environ.get(DISABLE_ENV, "1") == "0":
        return f"{DISABLE_ENV}=0"
    missing = {"avx2", "fma"} - cpu_flags()
    if missing:
        return f"the CPU lacks {', '.join(sorted(missing))}"
    for tool in ("c++", "ninja"):
        if shutil.which(tool) is None and not (tool == "ninja" and _pip_ninja()):
            return f"no {tool} on PATH (install g++ and ninja to build the native kernels)"
    return None


def _pip_ninja() -> bool:
    try:
        import ninja  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def kernels() -> Any | None:
    """The compiled module (``q4_mm``, ``q8_mm``, ``rms_norm``, ``add_rms_norm_``, ``decode_attention``),
    building it the first time; None where it cannot be."""
    reason = unavailable_reason()
    if reason:
        log.info("native CPU kernels off: %s", reason)
        return None
    from torch.utils.cpp_extension import load

    out = build_dir()
    try:
        out.mkdir(parents=True, exist_ok=True)
        return load(
            name="nexus_cpu_kernels",
            sources=[str(SOURCE)],
            build_directory=str(out),
            extra_cflags=["-O3", "-mavx2", "-mfma", "-mf16c", "-fopenmp"],
            extra_ldflags=["-fopenmp"],
            verbose=False,
        )
    except (RuntimeError, OSError, ImportError) as exc:  # a failed compile: keep torch's kernels
        log.warning("could not build the native CPU kernels (%s); using torch's", exc)
        return None


def main() -> int:
    """``python -m nexus_llm.serve.engine.native``: build the kernels now (``make setup`` does)."""
    import time

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.perf_counter()
    built = kernels()
    if built is None:
        print(f"native kernels not built: {unavailable_reason() or 'the build failed (see above)'}")
        return 1
    print(f"native kernels ready: {built.__file__} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
