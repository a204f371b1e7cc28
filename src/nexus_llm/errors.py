"""User errors: the one exception type for a problem the user can fix, and the one place that maps
errors to what the command line prints and its exit status.

Raise :class:`UserError` (or a subclass: ``ConfigError``, ``ModelError``, ``EvalError``, ...) with a
message that says what was wrong and how to fix it; never print-and-exit from a stage. The ``nexus``
command's root group calls :func:`exit_for` on whatever a command raised (see ``cli.NexusGroup``), so
the message is printed once, without a traceback, and the exit status is the same for every command.
"""

from __future__ import annotations

import errno

USER_ERROR_EXIT_CODE = 2
"""Exit status for anything the user can fix: a bad config value, a missing file, a full disk."""

STORAGE_UNREACHABLE_EXIT_CODE = 3
"""Exit status when the object store could not be reached: nothing to fix in the command; run it again."""


class UserError(ValueError):
    """A problem the user can fix, with a message that says how (printed without a traceback)."""

    label = "error"


# Which extra provides a third-party module, for a helpful message when one is not installed.
EXTRAS = {
    "ftfy": "data", "scipy": "data", "py3langid": "data", "phonenumbers": "data",
    "pyspark": "spark", "py4j": "spark",
    "torch": "model", "transformers": "model", "tokenizers": "model", "safetensors": "model",
    "gguf": "model",
    "accelerate": "train", "peft": "train", "tensorboard": "train", "matplotlib": "train", "mlflow": "train",
    "lm_eval": "eval",
    "fastapi": "serve", "uvicorn": "serve", "httpx": "serve", "prometheus_client": "serve",
    "llguidance": "serve", "jsonschema": "serve",
    "boto3": "aws", "botocore": "aws", "troposphere": "aws",
    "sqlalchemy": "registry", "alembic": "registry",
}  # fmt: skip


def exit_for(err: Exception) -> tuple[str, str, int] | None:
    """``(label, message, exit status)`` for an error the user should see as a message, or None for a
    bug, which keeps its traceback."""
    if isinstance(err, ModuleNotFoundError):
        extra = EXTRAS.get((err.name or "").split(".")[0])
        if extra is None:
            return None
        return (
            "missing dependency",
            f"this command needs {err.name!r}. Install it with: pip install 'nexus-llm[{extra}]' "
            "(or 'nexus-llm[all]')",
            USER_ERROR_EXIT_CODE,
        )
    if isinstance(err, UserError):
        return err.label, str(err), USER_ERROR_EXIT_CODE
    if isinstance(err, FileNotFoundError):
        return "not found", str(err), USER_ERROR_EXIT_CODE
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:  # a full disk, said plainly
        message = err.strerror if err.strerror and not err.filename else str(err)
        return "disk full", message, USER_ERROR_EXIT_CODE
    from nexus_llm.storage import unreachable

    if (message := unreachable(err)) is not None:
        return "storage error", message, STORAGE_UNREACHABLE_EXIT_CODE
    return None
