"""The token-shard format shared by ``nexus data tokenize``, ``nexus train`` and ``nexus eval``.

Layout under a tokens directory (local path or ``s3://`` prefix)::

    train/shard-00000.bin ...   flat little-endian arrays of token ids (uint16 when the vocabulary fits,
    val/shard-00000.bin ...     else uint32); every document is its tokens followed by one EOS id
    tokenizer/                  a copy of the tokenizer the shards were encoded with
    meta.json                   the format description (below), written after the shards
    manifest.json               written last: the directory is complete exactly when it exists

One rule for every reader: :func:`read_meta` returns ``meta.json`` only when ``manifest.json`` exists,
so a directory that an interrupted run left behind is never read as complete. (``meta.json`` describes
the format and may exist before the run finished; only the manifest marks completion, as in every stage.)

``meta.json``::

    {"format": "nexus-tokens-v1", "dtype": "uint16", "vocab_size": 8192,
     "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0,
     "val_fraction": 0.01, "split_seed": 0,
     "splits": {"train": {"files": ["train/shard-00000.bin"], "tokens": 123, "documents": 4, "bytes": 456},
                "val":   {...}},
     "tokenizer": {"sha256": "...", ...}, "settings": {...}, "seconds": 1.2, ...}

``bytes`` counts the UTF-8 bytes of the documents' text, so evaluation can report bits per byte.
A document's split depends only on its id (and the seed), never on worker count or input order.
:func:`content_digest` identifies the tokens themselves (not when or where they were made).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import xxhash

from nexus_llm import storage

FORMAT = "nexus-tokens-v1"
META = "meta.json"
SPLITS = ("train", "val")


def dtype_for_vocab(vocab_size: int, requested: str = "auto") -> np.dtype:
    """uint16 when every id fits (vocab_size <= 65536), else uint32; a requested type that is too narrow
    (or a vocabulary beyond uint32) is an error before any work."""
    from nexus_llm.configbase import ConfigError

    if vocab_size > 1 << 32:
        raise ConfigError(f"a {vocab_size:,}-token vocabulary does not fit the token shards (uint32 at most)")
    if requested == "uint16" and vocab_size > 1 << 16:
        raise ConfigError(
            f"tokenize.dtype uint16 holds ids below 65,536 but the tokenizer has {vocab_size:,} tokens: "
            "use dtype auto or uint32"
        )
    if requested in ("uint16", "uint32"):
        return np.dtype(requested)
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def split_of(doc_id: str, val_fraction: float, seed: int = 0) -> str:
    """``"val"`` for a deterministic ``val_fraction`` of document ids, else ``"train"``."""
    h = xxhash.xxh64_intdigest(doc_id.encode("utf-8"), seed=seed)
    return "val" if h < val_fraction * 2.0**64 else "train"


def shard_name(split: str, index: int) -> str:
    return f"{split}/shard-{index:05d}.bin"


def read_meta(tokens_dir: str) -> dict[str, Any]:
    """The tokens ``meta.json`` of a complete directory (one with ``manifest.json``).

    Raises ``FileNotFoundError`` with a hint when the directory is missing or incomplete, and
    ``ValueError`` for an unknown format.
    """
    rerun = "Run `nexus data tokenize DATA --tokenizer DIR -o TOKENS` (again) and pass TOKENS."
    manifest = storage.join(tokens_dir, storage.MANIFEST)
    if not storage.exists(manifest):
        raise FileNotFoundError(
            f"{manifest} not found: {tokens_dir!r} is not a complete token directory "
            f"(missing, or its tokenization was interrupted). {rerun}"
        )
    uri = storage.join(tokens_dir, META)
    try:
        meta = storage.read_json(uri)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{uri} not found: {tokens_dir!r} is not a token directory. {rerun}"
        ) from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{uri}: unknown token format {meta.get('format')!r} (expected {FORMAT!r})")
    return meta


CONTENT_SETTINGS = ("val_fraction", "split_seed", "shard_tokens")
"""The ``tokenize`` settings that change the shards' bytes (threads and batch size do not)."""


def content_digest(meta: dict[str, Any]) -> str:
    """SHA-256 of what the tokens are: format, dtype, vocabulary and special ids, each split's files
    and counts, the tokenizer's hash and the settings that shape the shards.

    Run timings (``seconds``, ``tokens_per_second``, ...) and locations (input and tokenizer URIs) are
    left out, so tokenizing the same data again, on another machine or into another directory, gives
    the same digest: checkpoints made on the first copy stay resumable on the second.
    """
    settings = meta.get("settings") or {}
    content = {
        "format": meta.get("format"),
        "dtype": meta.get("dtype"),
        "vocab_size": meta.get("vocab_size"),
        "special_ids": [meta.get(f"{k}_token_id") for k in ("bos", "eos", "pad")],
        "splits": {
            name: {k: split.get(k) for k in ("files", "tokens", "documents", "bytes")}
            for name, split in sorted((meta.get("splits") or {}).items())
        },
        "tokenizer_sha256": (meta.get("tokenizer") or {}).get("sha256"),
        "settings": {k: settings.get(k, meta.get(k)) for k in CONTENT_SETTINGS},
    }
    chat = meta.get("chat")
    if chat:  # only when present: token directories without chat data keep their earlier digest
        content["chat"] = {
            "splits": {s: {k: v.get(k) for k in ("examples", "tokens", "target_tokens")}
                       for s, v in sorted(chat["splits"].items())},
            "template_sha256": chat.get("template_sha256"),
            "val_fraction": chat.get("val_fraction"),
        }  # fmt: skip
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def read_shard(tokens_dir: str, relpath: str, dtype: np.dtype) -> np.ndarray:
    """One shard as an array: memory-mapped when local, read whole when remote."""
    uri = storage.join(tokens_dir, relpath)
    if storage.is_remote(uri):
        return np.frombuffer(storage.read_bytes(uri), dtype=dtype)
    return np.memmap(uri, dtype=dtype, mode="r")


def iter_split(tokens_dir: str, split: str, meta: dict[str, Any] | None = None) -> Iterator[np.ndarray]:
    """The shards of one split, in order."""
    meta = meta or read_meta(tokens_dir)
    dtype = np.dtype(meta["dtype"])
    for rel in meta["splits"][split]["files"]:
        yield read_shard(tokens_dir, rel, dtype)


def split_documents(tokens: np.ndarray, eos_id: int) -> list[np.ndarray]:
    """Cut a flat EOS-separated stream back into documents (EOS removed)."""
    ends = np.flatnonzero(tokens == eos_id)
    docs, start = [], 0
    for end in ends:
        docs.append(tokens[start:end])
        start = end + 1
    return docs
