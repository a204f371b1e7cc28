"""``nexus status WORKSPACE``: which stages are complete, with their key figures."""

from __future__ import annotations

from typing import Any

from nexus_llm import storage
from nexus_llm.pipeline.stages import STAGES
from nexus_llm.workspace import Layout


def workspace_status(root: str) -> list[dict[str, Any]]:
    """One row per stage: complete or not, where, when, and its key figures (from its manifest)."""
    layout = Layout(root)
    rows = []
    for stage in STAGES:
        output = stage.output(layout)
        manifest = storage.read_manifest(output)
        try:
            state = storage.read_json(layout.state(stage.name))
        except FileNotFoundError:
            state = {}
        if manifest is None and not state and stage.name in ("base_model", "tokenizer"):
            continue  # a stage this workspace's flow did not need
        if manifest is not None:
            status = "complete"
        elif state and not state.get("complete"):
            status = "interrupted"
        else:
            status = "missing"
        rows.append(
            {
                "stage": stage.name,
                "status": status,
                "output": output,
                "finished": state.get("finished"),
                "figures": stage.figures(manifest) if manifest else {},
            }
        )
    return rows
