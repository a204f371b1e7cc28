"""``nexus status WORKSPACE``: which stages are complete, with their key figures."""

from __future__ import annotations

from typing import Any

from nexus_llm import storage
from nexus_llm.pipeline.figures import key_figures
from nexus_llm.pipeline.stages import STAGES, Layout


def workspace_status(root: str) -> list[dict[str, Any]]:
    """One row per stage: complete or not, where, when, and its key figures (from its manifest)."""
    layout = Layout(root)
    rows = []
    for stage in STAGES:
        output = layout.output_of(stage)
        manifest = storage.read_manifest(output)
        try:
            state = storage.read_json(layout.state(stage))
        except FileNotFoundError:
            state = {}
        if manifest is not None:
            status = "complete"
        elif state and not state.get("complete"):
            status = "interrupted"
        else:
            status = "missing"
        rows.append(
            {
                "stage": stage,
                "status": status,
                "output": output,
                "finished": state.get("finished"),
                "figures": key_figures(stage, manifest),
            }
        )
    return rows
