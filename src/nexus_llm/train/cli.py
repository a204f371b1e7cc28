"""``nexus train`` (also ``python -m nexus_llm.train`` for torchrun)."""

from __future__ import annotations

from pathlib import Path

import typer

from nexus_llm.cliopts import schema_option, set_option
from nexus_llm.console import console, table
from nexus_llm.train.config import TrainConfig


def _opt(field: str, *flags: str):
    return schema_option(TrainConfig, field, "train", *flags)


def train(
    config: Path | None = typer.Option(
        None, "-c", "--config", help="nexus.yaml (train: section and workspace)."
    ),
    tokens: str | None = _opt("tokens"),
    output_dir: str | None = _opt("output_dir", "-o", "--output-dir"),
    checkpoint_dir: str | None = _opt("checkpoint_dir"),
    run_dir: str | None = _opt("run_dir"),
    workspace: str | None = typer.Option(
        None, help="Workspace whose tokens/, model/, ... to use by default."
    ),
    max_steps: int | None = _opt("max_steps"),
    preset: str | None = _opt("preset"),
    overrides: list[str] | None = set_option(),
) -> None:
    """Train or fine-tune a model on token shards; resumes from the latest complete checkpoint."""
    from nexus_llm.config import load_config
    from nexus_llm.configbase import with_overrides
    from nexus_llm.train.loop import INTERRUPTED_EXIT_CODE, run_train

    full = load_config(config, overrides)
    cfg = with_overrides(
        full.train, "train", tokens=tokens, output_dir=output_dir, checkpoint_dir=checkpoint_dir,
        run_dir=run_dir, max_steps=max_steps, preset=preset,
    )  # fmt: skip
    paths = cfg.paths(workspace or full.workspace)
    seed = cfg.seed if cfg.seed is not None else full.seed
    summary = run_train(cfg, paths, seed, full.name, full.tracking)
    if summary.get("interrupted"):
        raise typer.Exit(INTERRUPTED_EXIT_CODE)
    last = summary.get("last") or {}
    rows = [
        ["steps", summary["step"]],
        ["tokens seen", summary["tokens_seen"]],
        ["final loss", last.get("loss")],
        ["validation loss", last.get("val_loss")],
        ["tokens/s (last window)", last.get("tokens_per_second")],
        ["MFU (last window)", f"{100 * last['mfu']:.1f}%" if last.get("mfu") is not None else "n/a"],
        ["precision", summary["precision"]],
        ["seconds", summary["seconds"]],
        ["model", paths.output_dir],
        ["metrics", paths.run_dir],
    ]
    if "files" in summary:  # the main process exported the model
        console.print(table("training done", ["", "value"], rows))
