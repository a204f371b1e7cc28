"""Shared by the evaluation tests: held-out texts and a way to run the real `nexus` entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_TASK = REPO / "examples" / "tasks" / "paraphrase_local.yaml"

HELDOUT_TEXTS = [
    "Evaluation needs held-out text the model never trained on.",
    "Perplexity is the exponential of the mean negative log-likelihood per token.",
    "Bits per byte divide the same loss by the UTF-8 size of the text — café, naïve, 東京.",
    "A short one.",
    "Tokens, bytes and documents are counted once; every token after the first context token is predicted "
    "by the model, and the closing end-of-sequence token is predicted too.",
    "Hello world! This is a tiny corpus for hermetic tests.",
]


def nexus(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run the real console entry point in a subprocess (stderr kept apart for traceback checks).

    ``env`` is laid over this process's environment; a ``None`` value removes that variable.
    """
    script = Path(sys.executable).parent / "nexus"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "nexus_llm.cli"]
    merged = {**os.environ, **(env or {})}
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={k: v for k, v in merged.items() if v is not None},
        cwd=REPO,
    )
