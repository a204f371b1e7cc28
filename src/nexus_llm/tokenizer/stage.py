"""The ``tokenizer`` and ``tokenize`` stages of ``nexus run``.

``tokenizer`` trains a BPE tokenizer on the curated text, for a model trained from scratch; when
fine-tuning (``train.init_from``) it is not needed: ``tokenize`` encodes with the base model's own
tokenizer (and its chat template, for ``tokenize.chat_inputs``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nexus_llm.workspace import Layout, Stage, digest, rounded


def _from_scratch(cfg) -> bool:
    return cfg.train.init_from is None


def tokenizer_source(cfg, layout: Layout) -> str:
    """The tokenizer the shards are encoded with: the trained one, or the base model's."""
    return layout.tokenizer if _from_scratch(cfg) else layout.base_model


def _tokenizer_key(cfg, keys: Mapping[str, str]) -> Any:
    return {"data": keys["data"], "settings": cfg.tokenizer.model_dump(mode="json")}


def _tokenizer_run(cfg, layout: Layout) -> dict[str, Any]:
    from nexus_llm.tokenizer.bpe import run_tokenizer_train

    return run_tokenizer_train(cfg.tokenizer, layout.curated, layout.tokenizer)


def _tokenize_key(cfg, keys: Mapping[str, str]) -> Any:
    key: dict[str, Any] = {
        "data": keys["data"],
        "tokenizer": keys["tokenizer"] if _from_scratch(cfg) else keys["base_model"],
        "settings": cfg.tokenize.model_dump(mode="json"),
    }
    if cfg.tokenize.chat_inputs:
        from nexus_llm.data.plan import input_identities

        key["chat"] = digest(input_identities(cfg.tokenize.chat_inputs))
    return key


def _tokenize_run(cfg, layout: Layout) -> dict[str, Any]:
    from nexus_llm.tokenizer.encode import run_tokenize

    return run_tokenize(cfg.tokenize, layout.curated, tokenizer_source(cfg, layout), layout.tokens)


def _tokenize_figures(m: dict[str, Any]) -> dict[str, Any]:
    splits = m.get("splits", {})
    chat = (m.get("chat") or {}).get("splits") or {}
    return rounded(
        {
            "train tokens": splits.get("train", {}).get("tokens"),
            "val tokens": splits.get("val", {}).get("tokens"),
            "chat examples": (
                chat.get("train", {}).get("examples", 0) + chat.get("val", {}).get("examples", 0)
            )
            if chat
            else None,
            "chat quarantined": (m.get("chat") or {}).get("quarantined") or None,
        }
    )


TOKENIZER = Stage(
    "tokenizer", lambda layout: layout.tokenizer, _tokenizer_key, _tokenizer_run,
    lambda m: rounded({"vocab": m.get("vocab_size")}), enabled=_from_scratch, doc="train a BPE tokenizer",
)  # fmt: skip
TOKENIZE = Stage(
    "tokenize", lambda layout: layout.tokens, _tokenize_key, _tokenize_run, _tokenize_figures,
    doc="token shards (+ chat data)",
)  # fmt: skip
