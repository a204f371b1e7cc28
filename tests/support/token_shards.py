"""Write a token directory in the ``nexus-tokens-v1`` format (``nexus_llm.tokenizer.shards``) for tests.

Stages downstream of ``nexus data tokenize`` are tested against this tiny writer, which follows the
format's docstring: EOS-terminated documents in flat little-endian shards, then ``meta.json``, then
``manifest.json`` last (a token directory is complete exactly when its manifest exists).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def write_token_dir(
    out: Path, tokenizer, splits: dict[str, list[str]], shard_tokens: int | None = None
) -> dict:
    """Tokenize ``splits`` (name -> texts) into ``out``; ``shard_tokens`` splits a split into shards."""
    from nexus_llm.tokenizer.shards import dtype_for_vocab, shard_name

    vocab = len(tokenizer)
    dtype = dtype_for_vocab(vocab)
    meta = {
        "format": "nexus-tokens-v1",
        "dtype": dtype.name,
        "vocab_size": vocab,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "val_fraction": 0.5,
        "split_seed": 0,
        "splits": {},
    }
    for split, texts in splits.items():
        ids = [[*tokenizer(t)["input_ids"], tokenizer.eos_token_id] for t in texts]
        stream = np.array([i for doc in ids for i in doc], dtype=dtype)
        step = shard_tokens or max(len(stream), 1)
        files = []
        for index, start in enumerate(range(0, len(stream), step)):
            rel = shard_name(split, index)
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            stream[start : start + step].astype(dtype.newbyteorder("<")).tofile(out / rel)
            files.append(rel)
        meta["splits"][split] = {
            "files": files,
            "tokens": len(stream),
            "documents": len(texts),
            "bytes": sum(len(t.encode("utf-8")) for t in texts),
        }
    (out / "meta.json").write_text(json.dumps(meta))
    (out / "manifest.json").write_text(json.dumps({"stage": "tokenize", "outputs": ["meta.json"]}))
    return meta
