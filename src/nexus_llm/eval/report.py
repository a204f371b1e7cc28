"""``report.html``: one self-contained page (inline CSS and SVG, no scripts, no network) with the numbers,
the training loss curve when the run directory is known, and the sample generations."""

from __future__ import annotations

import io
import json
import math
from importlib import resources
from typing import Any

from nexus_llm import storage


def read_training_log(runs_uri: str) -> dict[str, Any] | None:
    """Loss (and validation loss) per step from a run's ``metrics.jsonl``; None when there is none."""
    uri = runs_uri if runs_uri.endswith(".jsonl") else storage.join(runs_uri, "metrics.jsonl")
    if not storage.exists(uri):
        return None
    steps, loss, val_steps, val_loss = [], [], [], []
    for line in storage.read_text(uri).splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a crash must not hide the rest of the curve
        if not isinstance(row, dict) or not isinstance(row.get("step"), int | float):
            continue
        if _finite(row.get("loss")):
            steps.append(row["step"])
            loss.append(float(row["loss"]))
        if _finite(row.get("val_loss")):
            val_steps.append(row["step"])
            val_loss.append(float(row["val_loss"]))
    if not loss and not val_loss:
        return None
    return {
        "source": uri,
        "points": len(loss),
        "steps": steps,
        "loss": loss,
        "val_steps": val_steps,
        "val_loss": val_loss,
        "last_step": steps[-1] if steps else val_steps[-1],
        "last_loss": loss[-1] if loss else None,
        "last_val_loss": val_loss[-1] if val_loss else None,
    }


def training_summary(log: dict[str, Any] | None) -> dict[str, Any] | None:
    """What results.json keeps of the training log (the curve itself stays in metrics.jsonl)."""
    if log is None:
        return None
    return {k: log[k] for k in ("source", "points", "last_step", "last_loss", "last_val_loss")}


def loss_curve_svg(log: dict[str, Any]) -> str:
    """The loss curve as an inline ``<svg>`` element drawn by matplotlib (no pyplot, no global state)."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "nexus-eval", "font.size": 10}):
        fig = Figure(figsize=(8, 3.4))
        ax = fig.subplots()
        if log["loss"]:
            ax.plot(log["steps"], log["loss"], color="#2f5bd3", linewidth=1.4, label="training loss")
        if log["val_loss"]:
            ax.plot(
                log["val_steps"],
                log["val_loss"],
                "o-",
                color="#d0512f",
                markersize=4,
                label="validation loss",
            )
        ax.set_xlabel("step")
        ax.set_ylabel("loss (nats/token)")
        ax.grid(True, alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(frameon=False)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    svg = buf.getvalue()
    return svg[svg.index("<svg") :]


def task_rows(tasks: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, entry in sorted(tasks.items()):
        for metric, value in entry.get("metrics", {}).items():
            rows.append(
                {
                    "task": entry.get("alias") or name,
                    "metric": metric,
                    "value": value,
                    "stderr": entry.get("stderr", {}).get(metric),
                    "samples": entry.get("samples"),
                    "num_fewshot": entry.get("num_fewshot"),
                }
            )
    return rows


def fmt(value: Any) -> str:
    """Numbers as shown everywhere in the report (the browser test looks for exactly this form)."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) else str(value)
    return str(value)


def render_report(results: dict[str, Any], training_log: dict[str, Any] | None) -> str:
    import jinja2

    template = resources.files("nexus_llm.eval").joinpath("report.html.jinja").read_text(encoding="utf-8")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.from_string(template).render(
        model=results["model"],
        model_name=storage.basename(results["model"]),
        created=results["created"],
        device=results.get("device", ""),
        seconds=results.get("seconds", 0.0),
        perplexity=results.get("perplexity"),
        bits_per_byte=results.get("bits_per_byte"),
        heldout=results.get("heldout"),
        training=results.get("training"),
        loss_svg=loss_curve_svg(training_log) if training_log else None,
        task_rows=task_rows(results.get("tasks", {})),
        samples=results.get("samples", []),
        chat_samples=results.get("chat_samples") or [],
        overlap=results.get("training_overlap"),
        **_baseline_context(results),
        settings=json.dumps(results.get("settings", {}), indent=2, sort_keys=True),
        fmt=fmt,
    )


def _baseline_context(results: dict[str, Any]) -> dict[str, Any]:
    """The base model's figures and answers beside the fine-tuned model's (empty when not fine-tuned)."""
    from nexus_llm.eval.compare import compare, heldout_note

    base = results.get("baseline")
    if not base:
        return {"baseline": None, "baseline_rows": [], "baseline_note": None, "chat_pairs": []}
    as_results = {"perplexity": base.get("perplexity"), "bits_per_byte": base.get("bits_per_byte"),
                  "tasks": base.get("tasks") or {}, "heldout": {"digest": base.get("heldout_digest")}}  # fmt: skip
    mine = {**results, "heldout": {"digest": (results.get("heldout") or {}).get("digest")}}
    before = {s["prompt"]: s["completion"] for s in base.get("chat_samples") or []}
    pairs = [
        (s["prompt"], before.get(s["prompt"], "–"), s["completion"])
        for s in results.get("chat_samples") or []
    ]
    return {
        "baseline": base,
        "baseline_rows": compare(as_results, mine),
        "baseline_note": heldout_note(as_results, mine),
        "chat_pairs": pairs,
    }


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
