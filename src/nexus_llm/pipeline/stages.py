"""The stages of ``nexus run``, in order; each is declared beside its code (``<stage>/stage.py``).

Each stage has a *key*: a hash of what :attr:`Stage.key_inputs` returns — its own settings, the content
identity of what it reads from outside the workspace, and the keys of the earlier stages it reads. A
stage whose key matches the one recorded at its last complete run, and whose manifest still exists, is
skipped. Changing a setting changes that stage's key and so the keys of every stage that reads it, and
only those rerun. To add a stage: write ``<stage>/stage.py`` with a :class:`~nexus_llm.workspace.Stage`
and put it in :data:`STAGES` (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Sequence

from nexus_llm.config import NexusConfig
from nexus_llm.data.stage import STAGE as DATA
from nexus_llm.eval.stage import STAGE as EVAL
from nexus_llm.models.stage import STAGE as BASE_MODEL
from nexus_llm.tokenizer.stage import TOKENIZE, TOKENIZER
from nexus_llm.train.stage import STAGE as TRAIN
from nexus_llm.workspace import Stage, digest

STAGES: tuple[Stage, ...] = (DATA, BASE_MODEL, TOKENIZER, TOKENIZE, TRAIN, EVAL)
NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)
BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}


def stage_keys(cfg: NexusConfig, stages: Sequence[Stage] = STAGES) -> dict[str, str]:
    """Every enabled stage's key, each built on the keys of the stages before it."""
    keys: dict[str, str] = {}
    for stage in stages:
        if stage.enabled(cfg):
            keys[stage.name] = digest(stage.key_inputs(cfg, keys))
    return keys
