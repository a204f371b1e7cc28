"""Shared base for configuration sections (kept apart from ``config.py`` so stage modules can import it)."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict


class ConfigError(ValueError):
    """A configuration problem, with a message meant for the user (no traceback needed)."""


class StrictModel(BaseModel):
    """Base for config sections: unknown keys are errors (a typo must never be silently ignored)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


M = TypeVar("M", bound=StrictModel)


def with_overrides(section: M, name: str, **values: Any) -> M:
    """``section`` with command-line values applied (``None`` = option not given), validated again.

    Every CLI that takes options overriding its ``nexus.yaml`` section uses this, so a bad value on the
    command line gets the same readable error as one in the file (``ConfigError`` naming ``name``).
    """
    from pydantic import ValidationError

    from nexus_llm.config import format_validation_error  # config imports this module: import late

    given = {k: v for k, v in values.items() if v is not None}
    if not given:
        return section
    try:
        return type(section).model_validate({**section.model_dump(), **given})
    except ValidationError as err:
        raise ConfigError(
            format_validation_error(err, f"command-line options ({name})", type(section))
        ) from None
