"""The one error type of model import and loading: a message for the user, no traceback."""

from __future__ import annotations

from nexus_llm.configbase import ConfigError


class ModelError(ConfigError):
    """A model source or directory that cannot be used, with what is wrong and how to fix it."""
