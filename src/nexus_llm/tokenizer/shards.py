"""The token-shard format shared by ``nexus data tokenize``, ``nexus train`` and ``nexus eval``.

Layout under a tokens directory (local path or ``s3://`` prefix)::

    train/shard-00000.bin ...   flat little-endian arrays of token ids (uint16 when the vocabulary fits,
    val/shard-00000.bin ...     else uint32); every document is its tokens followed by one EOS id
    meta.json                   written last (the stage is complete exactly when it exists)

``meta.json``::

    {"format": "nexus-tokens-v1", "dtype": "uint16", "vocab_size": 8192,
     "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0,
     "val_fraction": 0.01, "split_seed": 0,
     "splits": {"train": {"files": ["train/shard-00000.bin"], "tokens": 123, "documents": 4, "bytes": 456},
                "val":   {...}},
     ...}

``bytes`` counts the UTF-8 bytes of the documents' text, so evaluation can report bits per byte.
A document's split depends only on its id (and the seed), never on worker count or input order.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import xxhash

from nexus_llm import storage

FORMAT = "nexus-tokens-v1"
META = "meta.json"
SPLITS = ("train", "val")


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (vocab_size <= 65536), else uint32."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def split_of(doc_id: str, val_fraction: float, seed: int = 0) -> str:
    """``"val"`` for a deterministic ``val_fraction`` of document ids, else ``"train"``."""
    h = xxhash.xxh64_intdigest(doc_id.encode("utf-8"), seed=seed)
    return "val" if h < val_fraction * 2.0**64 else "train"


def shard_name(split: str, index: int) -> str:
    return f"{split}/shard-{index:05d}.bin"


def read_meta(tokens_dir: str) -> dict[str, Any]:
    """The tokens ``meta.json``; raises ``FileNotFoundError`` with a hint when the stage is incomplete."""
    uri = storage.join(tokens_dir, META)
    try:
        meta = storage.read_json(uri)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{uri} not found: {tokens_dir!r} is not a complete token directory. "
            "Run `nexus data tokenize DATA --tokenizer DIR -o TOKENS` first."
        ) from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{uri}: unknown token format {meta.get('format')!r} (expected {FORMAT!r})")
    return meta


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
