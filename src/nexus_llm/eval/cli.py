"""``nexus eval MODEL -o EVALDIR`` and ``nexus eval compare A B``."""

from __future__ import annotations

import typer

app = typer.Typer(help="Evaluate a model: perplexity, bits per byte, lm-eval tasks, report.")


@app.callback(invoke_without_command=True)
def evaluate() -> None:
    """Evaluate a model (not built yet)."""
    raise NotImplementedError("nexus eval is not built yet")
