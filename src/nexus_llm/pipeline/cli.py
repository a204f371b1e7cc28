"""``nexus run``, ``nexus status`` and ``nexus runs list``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from nexus_llm.cliopts import set_option
from nexus_llm.console import console, human, table

STAGE_HELP = "one of: data, base_model, tokenizer, tokenize, train, eval"


def run(
    config: Path = typer.Option(..., "-c", "--config", help="nexus.yaml describing the whole flow."),
    workspace: str = typer.Option(
        None, "--workspace", "-w", help="Local path or s3:// prefix (overrides the config's workspace)."
    ),
    force: str = typer.Option(
        None, "--force", help=f"Redo this stage and every stage after it ({STAGE_HELP})."
    ),
    until: str = typer.Option(None, "--until", help=f"Stop after this stage ({STAGE_HELP})."),
    no_registry: bool = typer.Option(
        False, "--no-registry", help="Do not record the run in the tracking store (tracking.record_runs)."
    ),
    overrides: list[str] | None = set_option(),
) -> None:
    """Run the whole flow: data prepare → tokenizer (or base model import) → tokenize → train → eval.

    A stage is skipped when its inputs (by content) and settings are unchanged since its last complete
    run; an interrupted run resumes where it stopped. Ends with where the model and report are and the
    command that serves the model.
    """
    from nexus_llm.config import load_config
    from nexus_llm.pipeline.runner import print_next_steps, print_summary, run_pipeline
    from nexus_llm.pipeline.stages import NAMES
    from nexus_llm.workspace import Layout

    cfg = load_config(config, overrides)
    for name, value in (("--force", force), ("--until", until)):
        if value is not None and value not in NAMES:
            raise typer.BadParameter(f"{value!r}: {STAGE_HELP}", param_hint=name)
    results = run_pipeline(cfg, workspace, force, until)
    layout = Layout(workspace or cfg.workspace)
    print_summary(results, layout)
    if (
        cfg.tracking.record_runs
        and not no_registry
        and all(r.status in ("done", "skipped", "not needed") for r in results)
    ):
        _register(cfg, layout, results)
    print_next_steps(results, layout)


def _register(cfg, layout, results) -> None:
    from nexus_llm import storage
    from nexus_llm.eval.results import RESULTS
    from nexus_llm.tracking import record_run, tracking_uri

    try:
        evaluation = storage.read_json(storage.join(layout.eval, RESULTS))
    except FileNotFoundError:
        evaluation = None
    run_id = record_run(
        cfg.tracking, cfg.name, cfg.model_dump(mode="json"), layout.root,
        next(r.key for r in results if r.stage == "eval"), {r.stage: r.figures for r in results}, evaluation,
    )  # fmt: skip
    if run_id:
        console.print(
            f"tracking: recorded run {run_id} in {tracking_uri(cfg.tracking)} (see `nexus runs list`)",
            soft_wrap=True,  # a URI broken over two lines cannot be copied
        )


def status(workspace: str = typer.Argument(..., help="Workspace directory or s3:// prefix.")) -> None:
    """Show which stages of a workspace are complete, with their key figures."""
    from nexus_llm.pipeline.status import workspace_status

    rows = [
        (r["stage"], r["status"], r["finished"] or "", ", ".join(f"{k} {v}" for k, v in r["figures"].items()))
        for r in workspace_status(workspace)
    ]
    console.print(table(f"nexus status {workspace}", ["stage", "status", "finished", "key figures"], rows))


def runs_list(
    config: Path = typer.Option(None, "-c", "--config", help="nexus.yaml (its tracking: section)."),
    limit: int = typer.Option(20, help="How many recent runs to show."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the completed `nexus run` flows recorded in the tracking store (MLflow), newest first."""
    from nexus_llm.config import load_config
    from nexus_llm.tracking import list_runs

    cfg = load_config(config)
    runs = list_runs(cfg.tracking, limit)
    if as_json:
        print(json.dumps(runs, indent=2))
        return
    rows = [
        (r["name"], r["run_id"][:8], _metric(r, "eval.perplexity"), _metric(r, "eval.bits_per_byte"),
         _metric(r, "train.loss"), r["model"] or "")
        for r in runs
    ]  # fmt: skip
    console.print(
        table("nexus runs", ["name", "run", "perplexity", "bits/byte", "train loss", "model"], rows)
    )


def _metric(run: dict, key: str) -> str:
    value = run["metrics"].get(key)
    return human(value) if value is not None else ""
