"""An evaluation directory's files: ``results.json`` (the numbers, the contract other tools read) and
``report.html``; :func:`load_results` reads the first for ``nexus eval compare`` and the pipeline."""

from __future__ import annotations

from typing import Any

from nexus_llm import storage
from nexus_llm.eval.errors import EvalError

RESULTS = "results.json"
REPORT = "report.html"


def load_results(uri: str) -> dict[str, Any]:
    """``results.json`` of an evaluation directory (or the file itself)."""
    path = uri if uri.endswith(".json") else storage.join(uri, RESULTS)
    try:
        results = storage.read_json(path)
    except FileNotFoundError:
        raise EvalError(f"{path} not found: pass evaluation directories written by `nexus eval`.") from None
    except ValueError as err:
        raise EvalError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(results, dict) or "perplexity" not in results:
        raise EvalError(f"{path} is not a nexus eval results file (no `perplexity`).")
    return results
