"""``nexus.yaml``: one typed section per stage, validated with errors that say how to fix the input.

Each stage keeps its own section model beside its code (``nexus_llm/<stage>/config.py``); this module
composes them into :class:`NexusConfig` and turns pydantic's errors into messages that name the bad
key, show the value that was given, and suggest the nearest valid key for a typo.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from nexus_llm.configbase import ConfigError, StrictModel
from nexus_llm.data.config import DataConfig
from nexus_llm.deploy.config import AwsConfig
from nexus_llm.eval.config import EvalConfig
from nexus_llm.pipeline.registry import RegistryConfig
from nexus_llm.serve.config import ServeConfig
from nexus_llm.tokenizer.config import TokenizeConfig, TokenizerConfig
from nexus_llm.train.config import TrainConfig

__all__ = ["ConfigError", "NexusConfig", "StrictModel", "load_config", "parse_config"]


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
    registry: RegistryConfig = RegistryConfig()

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


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Valid keys of the (nested) model section at ``loc``, for 'did you mean' hints."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(str(part))
        if field is None:
            return []
        current = field.annotation
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def format_validation_error(err: ValidationError, source: str, model: type[BaseModel]) -> str:
    lines = [f"{source}: {len(err.errors())} problem(s) in the configuration:"]
    for e in err.errors():
        loc = tuple(e["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            valid = _fields_at(model, loc[:-1])
            guess = difflib.get_close_matches(str(loc[-1]), valid, n=1)
            hint = f" Did you mean '{guess[0]}'?" if guess else ""
            lines.append(f"  - {key}: unknown key.{hint} Valid keys here: {', '.join(valid) or '(none)'}.")
            continue
        given = e.get("input")
        shown = "" if isinstance(given, dict) else f" (got {given!r})"
        lines.append(f"  - {key}: {e['msg']}{shown}.")
    lines.append("Fix these keys in the file (see examples/nexus.yaml for a complete, valid example).")
    return "\n".join(lines)


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


def load_config(path: str | os.PathLike[str] | None) -> NexusConfig:
    """Load ``nexus.yaml`` (defaults for every section when ``path`` is None)."""
    if path is None:
        return NexusConfig()
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} not found. Pass -c with the path to your nexus.yaml.")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{p}: not valid YAML: {err}") from None
    cfg = parse_config(raw, str(p))
    cfg.storage.apply()
    return cfg
