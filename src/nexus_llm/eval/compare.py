"""``nexus eval compare A B``: two evaluations side by side, with the difference and which is better."""

from __future__ import annotations

from typing import Any

from nexus_llm.eval.results import load_results

__all__ = ["compare", "heldout_note", "load_results"]


def _row(name: str, a: float | None, b: float | None, higher_is_better: bool | None) -> dict[str, Any]:
    diff = rel = better = None
    if a is not None and b is not None:
        diff = b - a
        rel = diff / abs(a) if a else None
        if higher_is_better is not None:
            better = "=" if diff == 0 else ("B" if (diff > 0) == higher_is_better else "A")
    return {"metric": name, "a": a, "b": b, "diff": diff, "rel": rel, "better": better}


def compare(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows for the held-out figures and every task metric found in either result."""
    rows = [
        _row("perplexity", a.get("perplexity"), b.get("perplexity"), False),
        _row("bits_per_byte", a.get("bits_per_byte"), b.get("bits_per_byte"), False),
    ]
    ta, tb = a.get("tasks", {}) or {}, b.get("tasks", {}) or {}
    for task in sorted(set(ta) | set(tb)):
        ea, eb = ta.get(task, {}), tb.get(task, {})
        metrics = dict.fromkeys([*ea.get("metrics", {}), *eb.get("metrics", {})])
        for metric in metrics:
            hib = {**eb.get("higher_is_better", {}), **ea.get("higher_is_better", {})}.get(metric, True)
            va, vb = ea.get("metrics", {}).get(metric), eb.get("metrics", {}).get(metric)
            rows.append(_row(f"{task} {metric}", va, vb, hib))
    return rows


def heldout_note(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    """A warning when the two evaluations did not score the same held-out tokens.

    The same text in other tokens (another tokenizer) still compares by bits per byte; other text (a
    different byte count) compares by nothing.
    """
    ha, hb = a.get("heldout") or {}, b.get("heldout") or {}
    if not ha or not hb:
        return None
    same = ha.get("digest") == hb.get("digest") and ha.get("tokens_predicted") == hb.get("tokens_predicted")
    if same:
        return None
    if ha.get("bytes") != hb.get("bytes"):  # other text: no per-token or per-byte figure compares
        return (
            "the held-out text differs (source, split, or a --limit/--max-tokens cut): neither perplexity "
            "nor bits per byte is comparable. Re-run both evaluations with the same --data and limits."
        )
    return "the held-out text is the same but the tokens differ: compare bits per byte, not perplexity"
