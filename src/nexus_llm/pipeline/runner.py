"""``nexus run``: every stage in order into one workspace, skipping what has not changed.

Before a stage runs, its key is recorded as *started*; after it completes, as *complete* with its key
figures. A rerun skips a stage whose recorded key matches and whose manifest exists. When training's
key changed since checkpoints were written (a setting changed), those checkpoints are set aside rather
than resumed; when it did not (an interrupted run), training resumes from them.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from nexus_llm import storage
from nexus_llm.config import NexusConfig
from nexus_llm.console import console, human, table
from nexus_llm.pipeline.stages import NAMES, STAGES, stage_keys
from nexus_llm.workspace import Layout, Stage


@dataclass
class StageResult:
    stage: str
    status: str  # "skipped" (up to date), "done", "failed", "not run", "not needed" (disabled here)
    seconds: float = 0.0
    figures: dict[str, Any] = field(default_factory=dict)
    key: str = ""


def read_state(layout: Layout, stage: str) -> dict[str, Any] | None:
    try:
        return storage.read_json(layout.state(stage))
    except FileNotFoundError:
        return None


def is_up_to_date(layout: Layout, stage: Stage, key: str) -> bool:
    state = read_state(layout, stage.name)
    return bool(
        state and state.get("complete") and state.get("key") == key
        and storage.read_manifest(stage.output(layout)) is not None
    )  # fmt: skip


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def run_pipeline(
    cfg: NexusConfig,
    workspace: str | None = None,
    force: str | None = None,
    until: str | None = None,
    stages: Sequence[Stage] = STAGES,
) -> list[StageResult]:
    """Run the flow; ``force`` redoes a stage and all after it, ``until`` stops after a stage."""
    for name, value in (("--force", force), ("--until", until)):
        if value is not None and value not in NAMES:
            raise ValueError(f"{name} {value!r}: choose one of {', '.join(NAMES)}")
    layout = Layout(workspace or cfg.workspace)
    storage.makedirs(layout.root)
    keys = stage_keys(cfg, stages)
    active = [s for s in stages if s.enabled(cfg)]
    last = NAMES.index(until) if until else len(NAMES) - 1
    forced = NAMES.index(force) if force else len(NAMES)
    results = [StageResult(s.name, "not run" if s.enabled(cfg) else "not needed", key=keys.get(s.name, ""))
               for s in stages]  # fmt: skip
    for i, (stage, result) in enumerate(zip(stages, results, strict=True)):
        if i > last:
            break
        if not stage.enabled(cfg):
            continue
        header = f"[bold cyan][{active.index(stage) + 1}/{len(active)}] {stage.name}[/]"
        key = keys[stage.name]
        if i < forced and is_up_to_date(layout, stage, key):
            result.status = "skipped"
            result.figures = (read_state(layout, stage.name) or {}).get("figures", {})
            console.print(f"{header} up to date, skipped")
            continue
        console.rule(f"{header} running")
        previous = read_state(layout, stage.name)
        if stage.on_new_key and previous is not None and previous.get("key") != key:
            stage.on_new_key(layout)
        storage.write_json_atomic(
            layout.state(stage.name), {"stage": stage.name, "key": key, "complete": False, "started": _now()}
        )
        started = time.perf_counter()
        try:
            manifest = stage.run(cfg, layout)
        except BaseException:
            result.status, result.seconds = "failed", time.perf_counter() - started
            print_summary(results, layout)
            raise
        result.status, result.seconds = "done", time.perf_counter() - started
        result.figures = stage.figures(manifest or {})
        storage.write_json_atomic(
            layout.state(stage.name),
            {"stage": stage.name, "key": key, "complete": True, "finished": _now(),
             "seconds": round(result.seconds, 2), "figures": result.figures},
        )  # fmt: skip
    return results


def print_summary(results: list[StageResult], layout: Layout) -> None:
    rows = [
        (r.stage, r.status, f"{r.seconds:.1f} s" if r.status in ("done", "failed") else "",
         ", ".join(f"{k} {_fmt(v)}" for k, v in r.figures.items()))
        for r in results
        if r.status != "not needed"
    ]  # fmt: skip
    console.print(table(f"nexus run → {layout.root}", ["stage", "status", "time", "key figures"], rows))


def _short(text: str, limit: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def before_and_after(evaluation: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(question, base model's answer, fine-tuned model's answer) of each ``eval.chat_prompts`` entry."""
    after = {s["prompt"]: s["completion"] for s in evaluation.get("chat_samples") or []}
    before = {
        s["prompt"]: s["completion"] for s in (evaluation.get("baseline") or {}).get("chat_samples") or []
    }
    return [(q, before[q], a) for q, a in after.items() if q in before]


def print_before_and_after(layout: Layout) -> None:
    """The base and the fine-tuned model's answers to the configured chat prompts, side by side."""
    from nexus_llm.eval.results import RESULTS

    try:
        evaluation = storage.read_json(storage.join(layout.eval, RESULTS))
    except FileNotFoundError:
        return
    rows = [(_short(q, 50), _short(b), _short(a)) for q, b, a in before_and_after(evaluation)]
    if rows:
        console.print(table("answers (greedy)", ["asked", "base model", "fine-tuned"], rows, text=True))


def print_next_steps(results: list[StageResult], layout: Layout) -> None:
    done = {r.stage for r in results if r.status in ("done", "skipped")}
    if all(r.status in ("skipped", "not needed") for r in results):
        console.print("[green]Nothing to do: every stage is up to date with its inputs and settings.[/]")
    if "eval" in done and "base_model" in done:
        print_before_and_after(layout)
    if "train" in done:
        console.print(f"model:  {layout.model}")
    if "eval" in done:
        console.print(f"report: {storage.join(layout.eval, 'report.html')}")
    if "train" in done:
        console.print(f"serve:  [bold]nexus serve {layout.model}[/]  (then open http://127.0.0.1:8080/)")


def _fmt(value: Any) -> str:
    return human(value)
