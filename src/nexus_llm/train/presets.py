"""Llama-architecture presets, from a demo that learns on 2 CPU cores in minutes to 1B+ parameters.

Shapes follow published models where one exists (``1b`` is TinyLlama-1.1B's, ``3b`` Llama-3.2-3B's);
the vocabulary size always comes from the tokenizer and the context length from ``train.seq_len``.
Parameter counts below are for an 8192-token vocabulary (demo: 4096).
"""

from __future__ import annotations

from typing import Any

from nexus_llm.configbase import ConfigError

PRESETS: dict[str, dict[str, Any]] = {
    # ~1.4M parameters with a 4096 vocabulary: a few minutes on 2 CPU cores gives recognisable text
    "demo": dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=4, tie_word_embeddings=True),
    # ~14M
    "small": dict(hidden_size=384, intermediate_size=1024, num_hidden_layers=6, num_attention_heads=6,
                  num_key_value_heads=6, tie_word_embeddings=True),
    # ~91M (GPT-2 small scale)
    "base": dict(hidden_size=768, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=12,
                 num_key_value_heads=12, tie_word_embeddings=True),
    # ~300M
    "350m": dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=24, num_attention_heads=16,
                 num_key_value_heads=8, tie_word_embeddings=False),
    # ~630M
    "700m": dict(hidden_size=1536, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=24,
                 num_key_value_heads=8, tie_word_embeddings=False),
    # ~1.0B, TinyLlama-1.1B's shape
    "1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
               num_key_value_heads=4, tie_word_embeddings=False),
    # ~2.8B, Llama-3.2-3B's shape
    "3b": dict(hidden_size=3072, intermediate_size=8192, num_hidden_layers=28, num_attention_heads=24,
               num_key_value_heads=8, tie_word_embeddings=True),
}  # fmt: skip


def llama_config(preset: str, vocab_size: int, seq_len: int, special_ids: dict[str, int], **overrides: Any):
    """A ``LlamaConfig`` for ``preset`` sized for the tokenizer and the training context."""
    from transformers import LlamaConfig

    fields = {**PRESETS[preset], **overrides}
    fields.setdefault("max_position_embeddings", seq_len)
    fields.setdefault("rope_theta", 10000.0)
    try:
        return LlamaConfig(vocab_size=vocab_size, **special_ids, **fields)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"train.model_overrides {overrides}: {err}") from None
