"""The stages of ``nexus run``: where each writes in the workspace, what it depends on, how it runs.

Each stage has a *key*: a hash of its own settings and the keys of the stages it reads (the data stage:
its settings and the content fingerprints of its inputs). A stage whose key matches the one recorded at
its last complete run, and whose manifest still exists, is skipped. Changing a setting changes that
stage's key and so the keys of every stage after it, and only those rerun.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nexus_llm import storage
from nexus_llm.config import NexusConfig

STAGES = ("data", "tokenizer", "tokenize", "train", "eval")


@dataclass(frozen=True)
class Layout:
    """The workspace layout of DESIGN.md."""

    root: str

    def path(self, *parts: str) -> str:
        return storage.join(self.root, *parts)

    @property
    def curated(self) -> str:
        return self.path("data", "curated")

    @property
    def tokenizer(self) -> str:
        return self.path("tokenizer")

    @property
    def tokens(self) -> str:
        return self.path("tokens")

    @property
    def checkpoints(self) -> str:
        return self.path("checkpoints")

    @property
    def model(self) -> str:
        return self.path("model")

    @property
    def eval(self) -> str:
        return self.path("eval")

    @property
    def runs(self) -> str:
        return self.path("runs")

    def output_of(self, stage: str) -> str:
        return {
            "data": self.curated,
            "tokenizer": self.tokenizer,
            "tokenize": self.tokens,
            "train": self.model,
            "eval": self.eval,
        }[stage]

    def state(self, stage: str) -> str:
        """Where the run records a stage's key (``.nexus/stages/<stage>.json``)."""
        return self.path(".nexus", "stages", f"{stage}.json")


def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def stage_keys(cfg: NexusConfig, inputs_digest: str) -> dict[str, str]:
    """Every stage's key, each built on the keys of the stages before it."""
    data = digest({"inputs": inputs_digest, "settings": cfg.data.settings_digest_fields()})
    tokenizer = digest({"data": data, "settings": cfg.tokenizer.model_dump(mode="json")})
    tokenize = digest(
        {"data": data, "tokenizer": tokenizer, "settings": cfg.tokenize.model_dump(mode="json")}
    )
    train_settings = cfg.train.model_dump(
        mode="json", exclude={"tokens", "tokenizer", "output_dir", "checkpoint_dir", "run_dir"}
    )
    seed = cfg.train.seed if cfg.train.seed is not None else cfg.seed
    train = digest({"tokens": tokenize, "settings": train_settings, "seed": seed, "name": cfg.name})
    eval_settings = cfg.eval.model_dump(mode="json", exclude={"data", "runs"})
    evaluation = digest({"model": train, "settings": eval_settings})
    return {"data": data, "tokenizer": tokenizer, "tokenize": tokenize, "train": train, "eval": evaluation}


def inputs_digest(cfg: NexusConfig) -> str:
    """Content identity of the raw inputs (fingerprints: xxh3 locally, ETag on S3)."""
    from nexus_llm.data.plan import input_identities

    if not cfg.data.inputs:
        raise FileNotFoundError(
            "nexus.yaml has no data.inputs: list the raw files, directories or globs to curate"
        )
    return digest(input_identities(cfg.data.inputs))


def run_stage(stage: str, cfg: NexusConfig, layout: Layout) -> dict[str, Any]:
    """Run one stage into the workspace; returns its manifest or summary."""
    return _RUNNERS[stage](cfg, layout)


def _data(cfg: NexusConfig, layout: Layout) -> dict[str, Any]:
    from nexus_llm.data.prepare import print_summary, run_prepare

    manifest = run_prepare(cfg.data.inputs, layout.curated, cfg.data)
    print_summary(manifest)
    return manifest


def _tokenizer(cfg: NexusConfig, layout: Layout) -> dict[str, Any]:
    from nexus_llm.tokenizer.bpe import run_tokenizer_train

    return run_tokenizer_train(cfg.tokenizer, layout.curated, layout.tokenizer)


def _tokenize(cfg: NexusConfig, layout: Layout) -> dict[str, Any]:
    from nexus_llm.tokenizer.encode import run_tokenize

    return run_tokenize(cfg.tokenize, layout.curated, layout.tokenizer, layout.tokens)


def _train(cfg: NexusConfig, layout: Layout) -> dict[str, Any]:
    from nexus_llm.train.loop import run_train

    train = cfg.train.model_copy(
        update={
            "tokens": layout.tokens,
            "tokenizer": layout.tokenizer,
            "output_dir": layout.model,
            "checkpoint_dir": layout.checkpoints,
            "run_dir": layout.runs,
        }
    )
    seed = train.seed if train.seed is not None else cfg.seed
    summary = run_train(train, train.paths(layout.root), seed, cfg.name)
    if summary.get("interrupted"):
        raise StageInterrupted("training was interrupted after saving a checkpoint; rerun to resume")
    return summary


def _eval(cfg: NexusConfig, layout: Layout) -> dict[str, Any]:
    from nexus_llm.eval.run import run_eval

    evaluation = cfg.eval.model_copy(update={"data": layout.tokens, "runs": layout.runs})
    return run_eval(evaluation, layout.model, layout.eval)


class StageInterrupted(RuntimeError):
    """A stage stopped early on purpose (e.g. SIGTERM during training) and can be resumed."""


_RUNNERS: dict[str, Callable[[NexusConfig, Layout], dict[str, Any]]] = {
    "data": _data,
    "tokenizer": _tokenizer,
    "tokenize": _tokenize,
    "train": _train,
    "eval": _eval,
}
