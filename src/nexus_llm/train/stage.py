"""The ``train`` stage of ``nexus run``: token shards → trained (or fine-tuned) model in ``model/``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nexus_llm import storage
from nexus_llm.console import console
from nexus_llm.workspace import Layout, Stage, rounded

PATH_FIELDS = {"tokens", "tokenizer", "output_dir", "checkpoint_dir", "run_dir"}


class StageInterrupted(RuntimeError):
    """A stage stopped early on purpose (e.g. SIGTERM during training) and can be resumed."""


def _key(cfg, keys: Mapping[str, str]) -> Any:
    seed = cfg.train.seed if cfg.train.seed is not None else cfg.seed
    key = {
        "tokens": keys["tokenize"],
        "settings": cfg.train.model_dump(mode="json", exclude=PATH_FIELDS),
        "seed": seed,
        "name": cfg.name,
    }
    if cfg.train.init_from is not None:
        key["base_model"] = keys["base_model"]
    return key


def _set_aside_checkpoints(layout: Layout) -> None:
    """Checkpoints written under another training key are stale: set them aside, never resume them."""
    if storage.listdir(layout.checkpoints):
        console.print(
            "[yellow]training settings or data changed: starting from scratch, not from old checkpoints[/]"
        )
        storage.remove(layout.checkpoints)


def _run(cfg, layout: Layout) -> dict[str, Any]:
    from nexus_llm.train.loop import run_train

    update = {
        "tokens": layout.tokens,
        "tokenizer": layout.tokens_tokenizer,
        "output_dir": layout.model,
        "checkpoint_dir": layout.checkpoints,
        "run_dir": layout.runs,
    }
    if cfg.train.init_from is not None:
        update["init_from"] = layout.base_model  # the imported copy (base_model stage)
    train = cfg.train.model_copy(update=update)
    seed = train.seed if train.seed is not None else cfg.seed
    summary = run_train(train, train.paths(layout.root), seed, cfg.name, cfg.tracking)
    if summary.get("interrupted"):
        raise StageInterrupted("training was interrupted after saving a checkpoint; rerun to resume")
    return summary


def _figures(m: dict[str, Any]) -> dict[str, Any]:
    last = m.get("last") or {}
    return rounded(
        {
            "steps": m.get("step"),
            "loss": last.get("loss"),
            "val loss": last.get("val_loss"),
            "tokens/s": last.get("tokens_per_second"),
        }
    )


STAGE = Stage(
    "train", lambda layout: layout.model, _key, _run, _figures, on_new_key=_set_aside_checkpoints,
    doc="pretrain or fine-tune",
)  # fmt: skip
