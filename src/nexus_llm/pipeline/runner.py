"""``nexus run``: every stage in order into one workspace, skipping what has not changed.

Before a stage runs, its key is recorded as *started*; after it completes, as *complete* with its key
figures. A rerun skips a stage whose recorded key matches and whose manifest exists. When training's
key changed since checkpoints were written (a setting changed), those checkpoints are set aside rather
than resumed; when it did not (an interrupted run), training resumes from them.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

from nexus_llm import storage
from nexus_llm.config import NexusConfig
from nexus_llm.console import console, human, table
from nexus_llm.pipeline.figures import key_figures
from nexus_llm.pipeline.stages import STAGES, Layout, inputs_digest, run_stage, stage_keys


@dataclass
class StageResult:
    stage: str
    status: str  # "skipped" (up to date), "done", "failed", "not run"
    seconds: float = 0.0
    figures: dict[str, Any] = field(default_factory=dict)
    key: str = ""


def read_state(layout: Layout, stage: str) -> dict[str, Any] | None:
    try:
        return storage.read_json(layout.state(stage))
    except FileNotFoundError:
        return None


def is_up_to_date(layout: Layout, stage: str, key: str) -> bool:
    state = read_state(layout, stage)
    return bool(
        state and state.get("complete") and state.get("key") == key
        and storage.read_manifest(layout.output_of(stage)) is not None
    )  # fmt: skip


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _before_train(layout: Layout, previous: dict[str, Any] | None, key: str) -> None:
    """Checkpoints written under another training key are stale: set them aside, never resume them."""
    if previous is None or previous.get("key") == key:
        return
    if storage.listdir(layout.checkpoints):
        console.print(
            "[yellow]training settings or data changed: starting from scratch, not from old checkpoints[/]"
        )
        storage.remove(layout.checkpoints)


def run_pipeline(
    cfg: NexusConfig,
    workspace: str | None = None,
    force: str | None = None,
    until: str | None = None,
) -> list[StageResult]:
    """Run the flow; ``force`` redoes a stage and all after it, ``until`` stops after a stage."""
    for name, value in (("--force", force), ("--until", until)):
        if value is not None and value not in STAGES:
            raise ValueError(f"{name} {value!r}: choose one of {', '.join(STAGES)}")
    layout = Layout(workspace or cfg.workspace)
    storage.makedirs(layout.root)
    keys = stage_keys(cfg, inputs_digest(cfg))
    last = STAGES.index(until) if until else len(STAGES) - 1
    forced = STAGES.index(force) if force else len(STAGES)
    results = [StageResult(s, "not run", key=keys[s]) for s in STAGES]
    for i, stage in enumerate(STAGES[: last + 1]):
        result = results[i]
        header = f"[bold cyan][{i + 1}/{len(STAGES)}] {stage}[/]"
        if i < forced and is_up_to_date(layout, stage, keys[stage]):
            result.status = "skipped"
            result.figures = (read_state(layout, stage) or {}).get("figures", {})
            console.print(f"{header} up to date, skipped")
            continue
        console.rule(f"{header} running")
        previous = read_state(layout, stage)
        if stage == "train":
            _before_train(layout, previous, keys[stage])
        storage.write_json_atomic(
            layout.state(stage), {"stage": stage, "key": keys[stage], "complete": False, "started": _now()}
        )
        started = time.perf_counter()
        try:
            manifest = run_stage(stage, cfg, layout)
        except BaseException:
            result.status, result.seconds = "failed", time.perf_counter() - started
            print_summary(results, layout)
            raise
        result.status, result.seconds = "done", time.perf_counter() - started
        result.figures = key_figures(stage, manifest)
        storage.write_json_atomic(
            layout.state(stage),
            {"stage": stage, "key": keys[stage], "complete": True, "finished": _now(),
             "seconds": round(result.seconds, 2), "figures": result.figures},
        )  # fmt: skip
    return results


def print_summary(results: list[StageResult], layout: Layout) -> None:
    rows = [
        (r.stage, r.status, f"{r.seconds:.1f} s" if r.status in ("done", "failed") else "",
         ", ".join(f"{k} {_fmt(v)}" for k, v in r.figures.items()))
        for r in results
    ]  # fmt: skip
    console.print(table(f"nexus run → {layout.root}", ["stage", "status", "time", "key figures"], rows))


def print_next_steps(results: list[StageResult], layout: Layout) -> None:
    done = {r.stage for r in results if r.status in ("done", "skipped")}
    if all(r.status == "skipped" for r in results):
        console.print("[green]Nothing to do: every stage is up to date with its inputs and settings.[/]")
    if "train" in done:
        console.print(f"model:  {layout.model}")
    if "eval" in done:
        console.print(f"report: {storage.join(layout.eval, 'report.html')}")
    if "train" in done:
        console.print(f"serve:  [bold]nexus serve {layout.model}[/]")


def _fmt(value: Any) -> str:
    return human(value)
