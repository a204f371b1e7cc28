"""Shared base for configuration sections (kept apart from ``config.py`` so stage modules can import it)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ConfigError(ValueError):
    """A configuration problem, with a message meant for the user (no traceback needed)."""


class StrictModel(BaseModel):
    """Base for config sections: unknown keys are errors (a typo must never be silently ignored)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
