"""Prompt text and chat messages to token ids and back, for any engine with a Hugging Face tokenizer.

Encoding blocks (a long text takes the tokenizer seconds), so the HTTP layer runs it in worker threads;
calls into the tokenizer are serialized by a lock because a fast tokenizer mutates its Rust state when
a call changes truncation or padding, and a concurrent call then fails ("Already borrowed").

Token texts (for logprobs) come from a table built once at load: one ``decode`` per vocabulary entry,
so answering with logprobs never calls the tokenizer per token on the event loop.
"""

from __future__ import annotations

import threading
from typing import Any

from nexus_llm.serve.engine.base import NoChatTemplate


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet (printable stand-ins for the 256 bytes), inverted."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars, n = printable[:], 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


class PromptEncoder:
    """``encode``/``encode_chat``/``decode`` of the :class:`~nexus_llm.serve.engine.base.Engine` seam."""

    def __init__(self, tokenizer: Any, bos_id: int | None, vocab_size: int | None = None) -> None:
        self.tokenizer = tokenizer
        self.bos_id = bos_id
        self._lock = threading.Lock()
        size = vocab_size or len(tokenizer)
        pieces = tokenizer.convert_ids_to_tokens(list(range(min(size, len(tokenizer)))))
        byte_level = _is_byte_level(tokenizer)
        decoder = _byte_decoder() if byte_level else {}
        self._texts: list[str] = []
        self._bytes: list[bytes] = []
        for i, piece in enumerate(pieces):
            text = tokenizer.decode([i]) if piece is not None else ""
            self._texts.append(text)
            if byte_level and piece is not None and all(c in decoder for c in piece):
                self._bytes.append(bytes(decoder[c] for c in piece))
            else:
                self._bytes.append(text.encode("utf-8"))
        while len(self._texts) < size:  # model rows past the tokenizer's vocabulary (padding)
            self._texts.append("")
            self._bytes.append(b"")

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of ``text``; an empty prompt becomes the BOS token (a model needs one token to start)."""
        with self._lock:
            ids = list(self.tokenizer(text, add_special_tokens=add_special_tokens).input_ids)
        if not ids and add_special_tokens:
            if self.bos_id is None:
                raise ValueError("the prompt is empty and the tokenizer has no BOS token to start from")
            ids = [self.bos_id]
        return ids

    def render_chat(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True) -> str:
        """The conversation as the chat template writes it."""
        if not getattr(self.tokenizer, "chat_template", None):
            raise NoChatTemplate("this model's tokenizer has no chat template; use /v1/completions")
        return self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=add_generation_prompt, tokenize=False
        )

    def encode_chat(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True) -> list[int]:
        """Token ids of a conversation rendered by the tokenizer's chat template (with the generation prompt)."""
        # Rendering (Jinja, pure Python, up to a 1 MiB conversation) needs no lock; only tokenizing does.
        text = self.render_chat(messages, add_generation_prompt)
        with self._lock:
            ids = list(self.tokenizer(text, add_special_tokens=False).input_ids)
        return ids or self.encode("")

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        with self._lock:
            return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def token_text(self, token: int) -> str:
        return self._texts[token] if 0 <= token < len(self._texts) else ""

    def token_bytes(self, token: int) -> bytes:
        return self._bytes[token] if 0 <= token < len(self._bytes) else b""

    def info(self, context_length: int) -> dict[str, Any]:
        """What vLLM's ``GET /tokenizer_info`` returns (lm-eval's remote tokenizer reads it)."""
        t = self.tokenizer
        return {
            "tokenizer_class": type(t).__name__,
            "bos_token": t.bos_token,
            "eos_token": t.eos_token,
            "pad_token": t.pad_token,
            "unk_token": t.unk_token,
            "chat_template": getattr(t, "chat_template", None),
            "add_bos_token": bool(getattr(t, "add_bos_token", False)),
            "model_max_length": context_length,
            "vocab_size": len(self._texts),
        }


def _is_byte_level(tokenizer: Any) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = getattr(backend, "decoder", None)
    return decoder is not None and "ByteLevel" in repr(decoder)
