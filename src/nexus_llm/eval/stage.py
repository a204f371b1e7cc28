"""The ``eval`` stage of ``nexus run``: the trained model scored on the held-out tokens; when fine-tuning,
the base model too, on the same data with the same settings, so the report shows what training changed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nexus_llm import storage
from nexus_llm.workspace import Layout, Stage, rounded


def _key(cfg, keys: Mapping[str, str]) -> Any:
    return {"model": keys["train"], "settings": cfg.eval.model_dump(mode="json", exclude={"data", "runs"})}


def _run(cfg, layout: Layout) -> dict[str, Any]:
    from nexus_llm.eval.run import run_eval

    evaluation = cfg.eval.model_copy(update={"data": layout.tokens, "runs": layout.runs})
    baseline = None
    if cfg.train.init_from is not None:
        base = evaluation.model_copy(update={"runs": None})
        baseline = run_eval(base, layout.base_model, layout.base_eval, reuse=True)
    return run_eval(
        evaluation, layout.model, layout.eval, baseline_uri=layout.base_eval if baseline else None
    )


def _figures(m: dict[str, Any]) -> dict[str, Any]:
    figures = {"perplexity": m.get("perplexity"), "bits/byte": m.get("bits_per_byte")}
    base = (m.get("baseline") or {}).get("perplexity")
    if base and m.get("perplexity"):
        figures["base perplexity"] = base
        figures["change"] = f"{(m['perplexity'] - base) / base:+.1%}"
    return rounded(figures)


STAGE = Stage("eval", lambda layout: layout.eval, _key, _run, _figures, doc="perplexity, tasks, report")


def baseline_of(eval_uri: str) -> str | None:
    """The base model's evaluation beside a fine-tuned one (``eval/base``), when there is one."""
    base = storage.join(eval_uri, "base")
    return base if storage.read_manifest(base) is not None else None
