"""``nexus.yaml``: one typed section per stage, validated with errors that say how to fix the input.

Each stage keeps its own section model beside its code (``nexus_llm/<stage>/config.py``); this module
composes them into :class:`NexusConfig` and turns pydantic's errors into messages that name the bad
key, show the value that was given, and suggest the nearest valid key for a typo.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, model_validator

from nexus_llm.configbase import ConfigError, StrictModel, format_validation_error
from nexus_llm.data.config import DataConfig
from nexus_llm.deploy.config import AwsConfig
from nexus_llm.eval.config import EvalConfig
from nexus_llm.serve.config import ServeConfig
from nexus_llm.tokenizer.config import TokenizeConfig, TokenizerConfig
from nexus_llm.tracking import TrackingConfig
from nexus_llm.train.config import TrainConfig

__all__ = [
    "SET_HELP",
    "ConfigError",
    "NexusConfig",
    "StrictModel",
    "apply_overrides",
    "load_config",
    "parse_config",
]


class StorageConfig(StrictModel):
    """Object storage. Unset values fall back to the standard AWS variables."""

    endpoint_url: str | None = Field(
        None, description="S3 endpoint, e.g. http://127.0.0.1:8333 for SeaweedFS"
    )
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None

    def apply(self) -> None:
        from nexus_llm import storage

        storage.configure(self.endpoint_url, self.region, self.access_key_id, self.secret_access_key)


class NexusConfig(StrictModel):
    """The whole of ``nexus.yaml``."""

    name: str = Field("nexus", description="run name, used for the model id and run registry")
    workspace: str = Field("workspace", description="local path or s3:// prefix for every stage's output")
    seed: int = 1234
    storage: StorageConfig = StorageConfig()
    data: DataConfig = DataConfig()
    tokenizer: TokenizerConfig = TokenizerConfig()
    tokenize: TokenizeConfig = TokenizeConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    serve: ServeConfig = ServeConfig()
    aws: AwsConfig = AwsConfig()
    tracking: TrackingConfig = TrackingConfig()

    @model_validator(mode="after")
    def _heldout_split_follows_tokenize(self) -> NexusConfig:
        """Curation protects the documents ``tokenize`` will hold out: it needs the same split."""
        d = self.data.decontaminate
        split = {"val_fraction": self.tokenize.val_fraction, "split_seed": self.tokenize.split_seed}
        if d.val_fraction is None:
            self.data.decontaminate = d.model_copy(update=split)
        elif (d.val_fraction, d.split_seed) != (split["val_fraction"], split["split_seed"]):
            raise ValueError(
                "data.decontaminate.val_fraction/split_seed differ from tokenize.val_fraction/split_seed; "
                "remove them from data.decontaminate (they are taken from tokenize)"
            )
        return self


def parse_config(raw: dict[str, Any] | None, source: str = "nexus.yaml") -> NexusConfig:
    """Validate a config mapping; raise :class:`ConfigError` with a readable message."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, got {type(raw).__name__}.")
    try:
        return NexusConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source, NexusConfig)) from None


SET_HELP = (
    "Override one config key, typed by the schema: key.path=value (repeatable), e.g. "
    "--set train.max_steps=100 --set data.inputs=[docs/]. Values are read as YAML."
)


def set_dotted(raw: dict[str, Any], key: str, value: Any, origin: str) -> None:
    """Set ``key.path`` in ``raw`` to ``value``, creating sections; ``origin`` names the override in errors."""
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"{origin}: write key.path=value, e.g. train.max_steps=100")
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise ConfigError(f"{origin}: {where} is a value ({child!r}), not a section with keys")
        node = child
    node[parts[-1]] = value


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str] | None) -> dict[str, Any]:
    """``raw`` with each ``key.path=value`` set (the value read as YAML: numbers, lists, mappings, null).

    Sections missing from ``raw`` are created; the schema then validates and types every value, so an
    unknown key gets the usual "Did you mean" message and a wrong type names the key and the value.
    """
    merged = copy.deepcopy(raw)
    for item in overrides or ():
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: write key.path=value, e.g. --set train.max_steps=100")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML: {err}") from None
        set_dotted(merged, key, value, f"--set {item!r}")
    return merged


def load_config(
    path: str | os.PathLike[str] | None,
    overrides: Sequence[str] | None = None,
    values: Mapping[str, Any] | None = None,
    values_origin: str = "overrides",
) -> NexusConfig:
    """The one config resolver, for every command and every job entry point (Spark, Glue, SageMaker).

    ``path``: ``nexus.yaml`` as a local path or an ``s3://`` URI (None: the defaults of every section);
    ``overrides``: ``--set key.path=value`` strings (values read as YAML); ``values``: dotted keys with
    values already typed (SageMaker hyperparameters), named ``values_origin`` in errors. The result is
    validated against the schema, and its ``storage:`` settings are applied to the process.
    """
    from nexus_llm import storage

    raw: Any = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        if not storage.is_remote(source) and not Path(source).is_file():
            raise ConfigError(f"config file {source!r} not found. Pass -c with the path to your nexus.yaml.")
        try:
            raw = yaml.safe_load(storage.read_text(source))
        except yaml.YAMLError as err:
            raise ConfigError(f"{source}: not valid YAML: {err}") from None
    if overrides or values:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(
                f"{source}: the top level must be a mapping of sections, got {type(raw).__name__}."
            )
        raw = apply_overrides(raw, overrides)
        for key, value in (values or {}).items():
            set_dotted(raw, key, value, f"{values_origin} {key!r}")
        if overrides:
            source += " with --set " + " ".join(overrides)
        if values:
            source += f" + {values_origin}"
    cfg = parse_config(raw, source)
    cfg.storage.apply()
    return cfg
