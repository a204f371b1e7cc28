"""Command-line options shared by every command that reads ``nexus.yaml`` (one definition, one help text).

A flag that overrides a config key is declared with :func:`schema_option`: its help is the schema field's
description and its default is the schema's, so ``--help`` always shows the real default and a flag
cannot drift from its key. The flag's value is ``None`` when not given; the command passes the given
ones to ``configbase.with_overrides``, which validates them like the file's values.
"""

from __future__ import annotations

from typing import Any

import typer
from pydantic import BaseModel

from nexus_llm.config import SET_HELP


def set_option():
    """``--set key.path=value`` (repeatable): any config key, typed and checked by the schema."""
    return typer.Option(None, "--set", help=SET_HELP, metavar="KEY=VALUE")


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "none"
    return str(value)


def schema_help(model: type[BaseModel], field: str, section: str) -> str:
    """The help of the flag for ``section.field``: the field's description, its default, its key."""
    info = model.model_fields[field]
    text = (info.description or field.replace("_", " ")).rstrip(".")
    text = text[:1].upper() + text[1:]
    default = info.get_default(call_default_factory=True)
    if "(default" not in text and default not in (None, {}, [], ()):
        text += f" (default: {_shown(default)})"
    return f"{text}; {section}.{field} in nexus.yaml."


def schema_option(model: type[BaseModel], field: str, section: str, *flags: str) -> Any:
    """A ``typer.Option`` for ``section.field`` (value ``None`` when not given; see the module doc)."""
    return typer.Option(None, *flags, help=schema_help(model, field, section))
