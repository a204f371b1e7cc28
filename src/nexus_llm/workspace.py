"""The workspace: where every stage of ``nexus run`` writes, and what a stage is.

::

    <workspace>/                 a local path or an s3:// prefix
      data/curated/              part-*.parquet, rejected/, quarantine/, manifest.json
      base_model/                the pretrained model to fine-tune, imported (when train.init_from is set)
      tokenizer/                 tokenizer.json, tokenizer_config.json, manifest.json (training from scratch)
      tokens/                    train/*.bin, val/*.bin, chat/ (SFT data), tokenizer/, meta.json, manifest.json
      checkpoints/               checkpoint-<step>/ (only complete ones are resumed)
      model/                     a Hugging Face model directory (+ adapter/ after LoRA), manifest.json
      eval/                      results.json, report.html, manifest.json; base/ holds the base model's
      runs/                      metrics.jsonl, TensorBoard events, loss.png
      .nexus/stages/<stage>.json the key each stage last ran with, and whether it completed

Every stage writes its outputs first and its ``manifest.json`` last: a stage is complete exactly when
its manifest exists. docs/architecture.md describes the contracts between stages.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nexus_llm import storage

if TYPE_CHECKING:
    from nexus_llm.config import NexusConfig


@dataclass(frozen=True)
class Layout:
    """The paths of one workspace (see the module docstring)."""

    root: str

    def path(self, *parts: str) -> str:
        return storage.join(self.root, *parts)

    @property
    def curated(self) -> str:
        return self.path("data", "curated")

    @property
    def base_model(self) -> str:
        return self.path("base_model")

    @property
    def tokenizer(self) -> str:
        return self.path("tokenizer")

    @property
    def tokens(self) -> str:
        return self.path("tokens")

    @property
    def tokens_tokenizer(self) -> str:
        """The copy of the tokenizer saved with the token shards (what training exports with the model)."""
        return self.path("tokens", "tokenizer")

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
    def base_eval(self) -> str:
        return self.path("eval", "base")

    @property
    def runs(self) -> str:
        return self.path("runs")

    def state(self, stage: str) -> str:
        """Where ``nexus run`` records a stage's key (``.nexus/stages/<stage>.json``)."""
        return self.path(".nexus", "stages", f"{stage}.json")


def beside_model(model_uri: str, name: str, marker: str) -> str | None:
    """``<workspace>/<name>`` when ``model_uri`` is a workspace's ``model/`` directory and the workspace
    has ``<name>/<marker>`` (e.g. ``tokens`` + ``meta.json``), else None."""
    model_uri = str(model_uri).rstrip("/")
    if storage.is_remote(model_uri):
        root = posixpath.dirname(model_uri)
    else:
        root = os.path.dirname(os.path.abspath(model_uri))  # keep symlinks
    candidate = Layout(root).path(name)
    return candidate if storage.exists(storage.join(candidate, marker)) else None


def digest(obj: Any) -> str:
    """A short, stable hash of a JSON-able object (stage keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _always(_cfg: NexusConfig) -> bool:
    return True


@dataclass(frozen=True)
class Stage:
    """One stage of the flow, declared beside its code (``<stage>/stage.py``).

    - ``output(layout)``: the directory whose ``manifest.json`` marks the stage complete;
    - ``key_inputs(cfg, keys)``: what the stage's key hashes — its settings, the content identity of what
      it reads from outside the workspace, and the keys of the earlier stages it reads (``keys``);
    - ``run(cfg, layout)``: do the work, return the manifest (or a summary);
    - ``figures(manifest)``: the few numbers ``nexus run`` and ``nexus status`` show;
    - ``enabled(cfg)``: whether the flow needs the stage (e.g. no tokenizer training when fine-tuning);
    - ``on_new_key(layout)``: called before the stage runs with a key other than its last one.
    """

    name: str
    output: Callable[[Layout], str]
    key_inputs: Callable[[NexusConfig, Mapping[str, str]], Any]
    run: Callable[[NexusConfig, Layout], dict[str, Any]]
    figures: Callable[[dict[str, Any]], dict[str, Any]]
    enabled: Callable[[NexusConfig], bool] = _always
    on_new_key: Callable[[Layout], None] | None = None
    doc: str = ""


def rounded(figures: dict[str, Any]) -> dict[str, Any]:
    """Figures without empty values, floats to 4 decimals (the shared shape of every stage's figures)."""
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in figures.items() if v is not None}
