"""The few numbers that say how each stage went, read from its manifest."""

from __future__ import annotations

from typing import Any


def key_figures(stage: str, manifest: dict[str, Any] | None) -> dict[str, Any]:
    if not manifest:
        return {}
    if stage == "data":
        return {
            "documents in": manifest.get("records_in"),
            "kept": manifest.get("records_out"),
            "quarantined": manifest.get("quarantined"),
        }
    if stage == "tokenizer":
        return {"vocab": manifest.get("vocab_size")}
    if stage == "tokenize":
        splits = manifest.get("splits", {})
        return {
            "train tokens": splits.get("train", {}).get("tokens"),
            "val tokens": splits.get("val", {}).get("tokens"),
        }
    if stage == "train":
        last = manifest.get("last") or {}
        return _clean(
            {
                "steps": manifest.get("step"),
                "loss": last.get("loss"),
                "val loss": last.get("val_loss"),
                "tokens/s": last.get("tokens_per_second"),
            }
        )
    if stage == "eval":
        return _clean({"perplexity": manifest.get("perplexity"), "bits/byte": manifest.get("bits_per_byte")})
    return {}


def _clean(figures: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in figures.items() if v is not None}
