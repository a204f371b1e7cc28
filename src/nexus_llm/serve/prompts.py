"""Prompt text and chat messages to token ids, for any engine that tokenizes with a Hugging Face tokenizer.

Both calls block (a long text takes the tokenizer seconds), so the HTTP layer runs them in worker
threads; they are serialized by a lock because a fast tokenizer mutates its Rust state when a call
changes truncation or padding, and a concurrent call then fails ("Already borrowed").
"""

from __future__ import annotations

import threading
from typing import Any

from nexus_llm.serve.engine import NoChatTemplate


class PromptEncoder:
    """``encode`` and ``encode_chat`` of the :class:`~nexus_llm.serve.engine.Engine` seam, over one tokenizer."""

    def __init__(self, tokenizer: Any, bos_id: int | None) -> None:
        self.tokenizer = tokenizer
        self.bos_id = bos_id
        self._lock = threading.Lock()

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; an empty prompt becomes the BOS token (a model needs one token to start)."""
        with self._lock:
            ids = list(self.tokenizer(text).input_ids)
        if not ids:
            if self.bos_id is None:
                raise ValueError("the prompt is empty and the tokenizer has no BOS token to start from")
            ids = [self.bos_id]
        return ids

    def encode_chat(self, messages: list[dict[str, Any]]) -> list[int]:
        """Token ids of a conversation rendered by the tokenizer's chat template (with the generation prompt)."""
        if not getattr(self.tokenizer, "chat_template", None):
            raise NoChatTemplate("this model's tokenizer has no chat template; use /v1/completions")
        # Rendering (Jinja, pure Python, up to a 1 MiB conversation) needs no lock; only tokenizing does.
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        with self._lock:
            ids = list(self.tokenizer(text, add_special_tokens=False).input_ids)
        return ids or self.encode("")
