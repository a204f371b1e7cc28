"""The one error type of the evaluation stage that is the user's to fix (shown without a traceback)."""

from __future__ import annotations


class EvalError(ValueError):
    """A bad input to ``nexus eval`` (missing data or dataset, wrong tokenizer, unknown task), with a fix."""
