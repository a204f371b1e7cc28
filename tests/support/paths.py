"""Where the tests find the checkout and the real model."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SMOLLM2_GGUF = Path(
    os.environ.get("NEXUS_SMOLLM2_GGUF", REPO / ".cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf")
)
