"""Chat (instruction) data for supervised fine-tuning: OpenAI-shaped ``messages`` → tokens + loss mask.

Input: JSON lines, one conversation per line, ``{"messages": [{"role": ..., "content": ...}, ...]}``
(any other keys are kept out of the tokens; an ``id`` names the record). A record is *quarantined* — kept
with its file, line, error and raw text, and counted — when it is not JSON, has no ``messages`` list,
a message has an unknown role or non-string content, it has no assistant turn, or the model's chat
template cannot render it. Nothing is dropped silently.

Each conversation is rendered with the model's own chat template (the tokenizer's ``chat_template``) and
tokenized once; the loss mask marks the tokens of each assistant turn (its content and the template's
end-of-turn marker), so the model learns to answer, not to write prompts. The assistant spans are found
by rendering: the text up to a turn (with the generation prompt) and through it are both prefixes of the
whole conversation, and the characters between them are the turn. Token offsets map the span to tokens.
This works for any template whose rendering of a conversation extends the rendering of its beginning
(every mainstream template); one that does not is reported per record. transformers'
``return_assistant_tokens_mask`` needs ``{% generation %}`` markers that few templates carry.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nexus_llm import storage
from nexus_llm.configbase import ConfigError
from nexus_llm.tokenizer import shards

ROLES = ("system", "user", "assistant")
CHAT_DIR = "chat"
QUARANTINE = "chat/quarantine.jsonl"


class BadRecord(ValueError):
    """A chat record that cannot be used, with the reason."""


def parse_record(line: bytes) -> tuple[str | None, list[dict[str, str]]]:
    """``(id, messages)`` of one JSON line; :class:`BadRecord` says what is wrong."""
    try:
        obj = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadRecord(f"not valid JSON: {err}") from None
    if not isinstance(obj, dict):
        raise BadRecord(f"a record must be a JSON object, got {type(obj).__name__}")
    messages = obj.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRecord("no 'messages' list (OpenAI shape: [{'role': ..., 'content': ...}, ...])")
    clean = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise BadRecord(f"messages[{i}] is not an object")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise BadRecord(f"messages[{i}].role is {role!r}; use one of {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise BadRecord(f"messages[{i}].content must be a string, got {type(content).__name__}")
        clean.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" for m in clean):
        raise BadRecord("no assistant turn: there is nothing to learn from this conversation")
    rid = obj.get("id")
    return (str(rid) if rid is not None else None), clean


def _render(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def assistant_spans(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of its assistant turns."""
    try:
        full = _render(tokenizer, messages, False)
    except Exception as err:  # jinja's raise_exception, undefined variables, ...
        raise BadRecord(f"the chat template cannot render this conversation: {err}") from None
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        try:
            before = _render(tokenizer, messages[:i], True) if i else ""
            through = _render(tokenizer, messages[: i + 1], False)
        except Exception as err:
            raise BadRecord(f"the chat template cannot render this conversation: {err}") from None
        if not (full.startswith(through) and through.startswith(before)):
            raise BadRecord(
                "the chat template renders a conversation differently from its beginning, so the "
                "assistant turns cannot be located"
            )
        spans.append((len(before), len(through)))
    return full, spans


def encode_conversation(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[list[int], list[int]]:
    """Token ids of the rendered conversation and a 0/1 mask: 1 on the tokens of assistant turns."""
    text, spans = assistant_spans(tokenizer, messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), enc["offset_mapping"]
    mask = [0] * len(ids)
    for k, (start, _end) in enumerate(offsets):
        if any(a <= start < b for a, b in spans):
            mask[k] = 1
    if not any(mask):
        raise BadRecord("no assistant token survived tokenization (empty assistant turns?)")
    return ids, mask


@dataclass
class ChatSplit:
    tokens: list[np.ndarray] = field(default_factory=list)
    masks: list[np.ndarray] = field(default_factory=list)

    def add(self, ids: list[int], mask: list[int], dtype: np.dtype) -> None:
        self.tokens.append(np.asarray(ids, dtype=dtype))
        self.masks.append(np.asarray(mask, dtype=np.uint8))

    def write(self, out_uri: str, split: str) -> dict[str, Any]:
        tokens = np.concatenate(self.tokens) if self.tokens else np.zeros(0, np.uint32)
        masks = np.concatenate(self.masks) if self.masks else np.zeros(0, np.uint8)
        starts = np.cumsum([0] + [len(t) for t in self.tokens]).astype(np.int64)
        files = {
            "tokens": f"{CHAT_DIR}/{split}.bin",
            "mask": f"{CHAT_DIR}/{split}.mask.bin",
            "starts": f"{CHAT_DIR}/{split}.starts.bin",
        }
        for key, arr in (("tokens", tokens), ("mask", masks), ("starts", starts)):
            storage.write_bytes_atomic(storage.join(out_uri, files[key]), arr.tobytes())
        return {
            "files": files,
            "examples": len(self.tokens),
            "tokens": int(tokens.size),
            "target_tokens": int(masks.sum()),
        }


def _lines(uri: str) -> Iterable[tuple[int, bytes]]:
    with storage.open_file(uri, "rb", compression="infer") as fh:
        for n, line in enumerate(fh, start=1):
            if line.strip():
                yield n, line.rstrip(b"\r\n")


def expand_chat_inputs(inputs: list[str]) -> list[str]:
    """The chat files named by ``inputs`` (files, directories, globs); a missing one fails before any work."""
    try:
        files = storage.expand(inputs, suffixes=(".jsonl", ".jsonl.gz", ".json"))
    except FileNotFoundError as err:
        raise ConfigError(f"tokenize.chat_inputs: {err}") from None
    if not files:
        raise ConfigError(
            f"tokenize.chat_inputs {inputs}: no .jsonl chat files found there. Give JSON-lines files of "
            '{"messages": [{"role": "user", "content": ...}, {"role": "assistant", "content": ...}]}'
        )
    return files


def encode_chat(
    inputs: list[str], tokenizer: Any, out_uri: str, dtype: np.dtype, val_fraction: float, split_seed: int
) -> dict[str, Any]:
    """Validate, render and encode every conversation into ``out_uri/chat/``; returns ``meta['chat']``."""
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            "chat data needs a chat template, and this tokenizer has none: fine-tune a model that has one "
            "(e.g. an instruct model imported with `nexus model import`)"
        )
    started = time.perf_counter()
    splits = {s: ChatSplit() for s in shards.SPLITS}
    quarantined: list[dict[str, Any]] = []
    records = 0
    for uri in expand_chat_inputs(inputs):
        for line_no, raw in _lines(uri):
            records += 1
            try:
                rid, messages = parse_record(raw)
                ids, mask = encode_conversation(tokenizer, messages)
            except BadRecord as err:
                quarantined.append({"file": uri, "line": line_no, "error": str(err),
                                    "raw": raw.decode("utf-8", errors="replace")})  # fmt: skip
                continue
            key = rid if rid is not None else hashlib.sha256(raw).hexdigest()[:16]
            splits[shards.split_of(key, val_fraction, split_seed)].add(ids, mask, dtype)
    text = "".join(json.dumps(q, ensure_ascii=False) + "\n" for q in quarantined)
    storage.write_text_atomic(storage.join(out_uri, QUARANTINE), text)
    described = {s: split.write(out_uri, s) for s, split in splits.items()}
    if described["train"]["examples"] == 0:
        raise ConfigError(
            f"none of the {records} chat records in {inputs} can be used ({len(quarantined)} quarantined, "
            f"see {storage.join(out_uri, QUARANTINE)})"
        )
    return {
        "inputs": list(inputs),
        "records_in": records,
        "quarantined": len(quarantined),
        "quarantine": QUARANTINE,
        "val_fraction": val_fraction,
        "template_sha256": hashlib.sha256(tokenizer.chat_template.encode()).hexdigest(),
        "splits": described,
        "seconds": round(time.perf_counter() - started, 3),
    }


def read_chat_split(
    tokens_dir: str, split: str, meta: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(tokens, mask, starts)`` of one chat split (``starts`` has one more entry than examples)."""
    described = meta["chat"]["splits"][split]
    files = described["files"]
    dtype = np.dtype(meta["dtype"])
    if described["examples"] == 0:  # an empty file cannot be memory-mapped
        return np.zeros(0, dtype), np.zeros(0, np.uint8), np.zeros(1, np.int64)
    tokens = shards.read_shard(tokens_dir, files["tokens"], dtype)
    mask = shards.read_shard(tokens_dir, files["mask"], np.dtype(np.uint8))
    starts = shards.read_shard(tokens_dir, files["starts"], np.dtype(np.int64))
    return np.asarray(tokens), np.asarray(mask), np.asarray(starts)
