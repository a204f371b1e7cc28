"""Shared base for configuration sections (kept apart from ``config.py`` so stage modules can import it)."""

from __future__ import annotations

import difflib
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from nexus_llm.errors import UserError


class ConfigError(UserError):
    """A configuration problem, with a message meant for the user (no traceback needed)."""

    label = "config error"


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

    given = {k: v for k, v in values.items() if v is not None}
    if not given:
        return section
    try:
        return type(section).model_validate({**section.model_dump(), **given})
    except ValidationError as err:
        raise ConfigError(
            format_validation_error(err, f"command-line options ({name})", type(section))
        ) from None


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
