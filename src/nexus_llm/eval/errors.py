"""The one error type of the evaluation stage that is the user's to fix (shown without a traceback)."""

from __future__ import annotations

from nexus_llm.errors import UserError


class EvalError(UserError):
    """A bad input to ``nexus eval`` (missing data or dataset, wrong tokenizer, unknown task), with a fix."""


def as_eval_error(err: Exception) -> EvalError | None:
    """Storage problems (a path that cannot be read or written, S3 without credentials or unreachable) as
    an EvalError saying what to check; None for anything else, which stays a bug with its traceback."""
    from botocore.exceptions import BotoCoreError, NoCredentialsError

    s3_hint = (
        "For s3:// paths, set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or an AWS profile or role), and "
        "AWS_ENDPOINT_URL_S3 for a non-AWS endpoint (or storage: in nexus.yaml)."
    )
    if isinstance(err, NoCredentialsError):
        return EvalError(f"no S3 credentials found ({err}). {s3_hint}")
    if isinstance(err, BotoCoreError):
        return EvalError(f"S3 request failed: {err}. {s3_hint}")
    if isinstance(err, PermissionError):
        return EvalError(
            f"permission denied: {str(err).rstrip('.')}. The model and data must be readable and -o writable by you. {s3_hint}"
        )
    if isinstance(err, FileNotFoundError):  # storage and the stages' readers say which path and why
        return EvalError(f"not found: {err}")
    if isinstance(err, OSError):
        return EvalError(
            f"cannot read or write a path: {str(err).rstrip('.')}. Check MODEL, --data, --runs and -o "
            "(-o names a directory to create or reuse, not a file)."
        )
    return None
