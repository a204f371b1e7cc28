"""Command-line options shared by every command that reads ``nexus.yaml`` (one definition, one help text)."""

from __future__ import annotations

import typer

from nexus_llm.config import SET_HELP


def set_option():
    """``--set key.path=value`` (repeatable): any config key, typed and checked by the schema."""
    return typer.Option(None, "--set", help=SET_HELP, metavar="KEY=VALUE")
