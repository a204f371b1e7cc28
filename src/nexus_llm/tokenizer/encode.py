"""``nexus data tokenize``: curated documents → packed token shards (format in :mod:`.shards`).

Memory stays bounded for any corpus: Parquet is read one row batch at a time, each batch is encoded
with the tokenizers library's multi-threaded ``encode_batch_fast`` (Rust threads, no Python processes
to feed), and tokens are appended to the open shard of their split, which is closed (and uploaded when
the output is remote) once it holds ``shard_tokens`` tokens.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import numpy as np
import pyarrow.compute as pc

from nexus_llm import storage
from nexus_llm.tokenizer import shards
from nexus_llm.tokenizer.bpe import TOKENIZER_FILE, load_encoder
from nexus_llm.tokenizer.chat import CHAT_DIR, encode_chat, expand_chat_inputs
from nexus_llm.tokenizer.config import TokenizeConfig
from nexus_llm.tokenizer.curated import count_rows, iter_batches, open_curated

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
)
TOKENIZER_SUBDIR = "tokenizer"
"""A copy of the tokenizer inside the tokens directory, so the directory alone can train a model."""


class ShardWriter:
    """Appends token arrays to numbered shard files of one split, rolling over at ``shard_tokens``."""

    def __init__(self, out_uri: str, split: str, dtype: np.dtype, shard_tokens: int, staging: str):
        self.out_uri, self.split, self.dtype = out_uri, split, dtype
        self.shard_tokens, self.staging = shard_tokens, staging
        self.files: list[str] = []
        self.tokens = 0
        self._fh = None
        self._in_shard = 0

    def _local_path(self, rel: str) -> str:
        if storage.is_remote(self.out_uri):
            return os.path.join(self.staging, *rel.split("/"))
        return os.path.join(self.out_uri, *rel.split("/")) + ".partial"

    def _open(self) -> None:
        rel = shards.shard_name(self.split, len(self.files))
        self.files.append(rel)
        path = self._local_path(rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self._fh = open(path, "wb")  # noqa: SIM115 - kept open across writes, closed in _finish
        self._in_shard = 0

    def _finish(self) -> None:
        if self._fh is None:
            return
        self._fh.close()
        self._fh = None
        rel = self.files[-1]
        path = self._local_path(rel)
        if storage.is_remote(self.out_uri):
            storage.upload_file_atomic(path, storage.join(self.out_uri, rel))
            os.remove(path)
        else:
            os.replace(path, path[: -len(".partial")])

    def write(self, tokens: np.ndarray) -> None:
        while tokens.size:
            if self._fh is None:
                self._open()
            room = self.shard_tokens - self._in_shard
            head, tokens = tokens[:room], tokens[room:]
            self._fh.write(head.astype(self.dtype, copy=False).tobytes())
            self._in_shard += head.size
            self.tokens += head.size
            if self._in_shard >= self.shard_tokens:
                self._finish()

    def close(self) -> list[str]:
        self._finish()
        return self.files


@contextmanager
def _parallelism(threads: int):
    """The tokenizers library's thread settings for this call only, restored afterwards.

    ``TOKENIZERS_PARALLELISM`` is read on every call, so ``threads: 1`` (serial) always holds and other
    values re-enable the pool even where a CLI disabled it. ``RAYON_NUM_THREADS`` sizes the Rust thread
    pool, which is created once per process at its first parallel use: ``threads > 1`` takes effect only
    when that is this call (as in ``nexus data tokenize``). Setting it for the call alone keeps it out of
    later stages and child processes, where it would otherwise leak.
    """
    wanted = {
        "TOKENIZERS_PARALLELISM": "false" if threads == 1 else "true",
        "RAYON_NUM_THREADS": str(threads) if threads > 1 else None,
    }
    old = {key: os.environ.get(key) for key in wanted}
    for key, value in wanted.items():
        if value is not None:
            os.environ[key] = value
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _flatten(encodings: list, eos_id: int, dtype: np.dtype) -> np.ndarray:
    """Each document's ids followed by EOS, as one flat array."""
    total = sum(len(e.ids) for e in encodings) + len(encodings)
    chained = itertools.chain.from_iterable((*e.ids, eos_id) for e in encodings)
    return np.fromiter(chained, dtype=dtype, count=total)


OUTPUTS = (shards.META, *shards.SPLITS, CHAT_DIR, TOKENIZER_SUBDIR)
"""What a run writes besides its manifest (shards and their ``.partial`` files live under the splits)."""


def _same_location(a: str, b: str) -> bool:
    if storage.is_remote(a) or storage.is_remote(b):
        return a.rstrip("/") == b.rstrip("/")
    return os.path.realpath(a) == os.path.realpath(b)


def _prepare_output(out_uri: str, tokenizer_uri: str) -> None:
    """Clear an older run's outputs, its manifest first: an interrupted rerun is never mistaken for
    complete, and no stale shard or ``.partial`` file of an older (longer) run stays beside new ones."""
    storage.claim_output(out_uri, "tokenize", "tokens")
    for name in OUTPUTS:
        target = storage.join(out_uri, name)
        if name == TOKENIZER_SUBDIR and _same_location(target, tokenizer_uri):
            continue  # tokenizing again with an earlier run's copy of the tokenizer: it is the input
        storage.remove(target)
    storage.makedirs(out_uri)


def run_tokenize(
    cfg: TokenizeConfig,
    data_uri: str,
    tokenizer_uri: str,
    out_uri: str,
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Encode curated data at ``data_uri`` into shards under ``out_uri``; ``manifest.json`` last."""
    data = open_curated(data_uri)
    tok = load_encoder(tokenizer_uri)
    eos_id = tok.token_to_id(tokenizer_special(tokenizer_uri, "eos_token"))
    vocab_size = tok.get_vocab_size(with_added_tokens=True)
    dtype = shards.dtype_for_vocab(vocab_size, cfg.dtype)
    chat_files = expand_chat_inputs(cfg.chat_inputs) if cfg.chat_inputs else []  # before any work
    _prepare_output(out_uri, tokenizer_uri)
    started = time.perf_counter()
    docs = {s: 0 for s in shards.SPLITS}
    nbytes = {s: 0 for s in shards.SPLITS}
    empty = 0
    with tempfile.TemporaryDirectory(prefix="nexus-tokens-") as staging, _parallelism(cfg.threads):
        writers = {s: ShardWriter(out_uri, s, dtype, cfg.shard_tokens, staging) for s in shards.SPLITS}
        for batch in iter_batches(data, ["id", "text"], cfg.batch_rows):
            ids, texts = batch.column(0).to_pylist(), batch.column(1)
            lengths = pc.binary_length(texts).to_pylist()
            texts = texts.to_pylist()
            by_split: dict[str, list[int]] = {s: [] for s in shards.SPLITS}
            for i, (doc_id, n) in enumerate(zip(ids, lengths, strict=True)):
                if not n:
                    empty += 1
                    continue
                by_split[shards.split_of(str(doc_id), cfg.val_fraction, cfg.split_seed)].append(i)
            for split, rows in by_split.items():
                if not rows:
                    continue
                encodings = tok.encode_batch_fast([texts[i] for i in rows], add_special_tokens=False)
                writers[split].write(_flatten(encodings, eos_id, dtype))
                docs[split] += len(rows)
                nbytes[split] += sum(lengths[i] for i in rows)
            if on_progress:
                on_progress(len(ids))
        files = {s: w.close() for s, w in writers.items()}
        tokens = {s: w.tokens for s, w in writers.items()}
    chat = None
    if chat_files:
        chat = encode_chat(chat_files, load_chat_tokenizer(tokenizer_uri), out_uri, dtype,
                           cfg.chat_val_fraction, cfg.split_seed)  # fmt: skip
    seconds = time.perf_counter() - started
    if not _same_location(tokenizer_uri, storage.join(out_uri, TOKENIZER_SUBDIR)):
        # tokenizer files only: --tokenizer may be a whole model directory (weights and all)
        storage.copy_flat_dir(tokenizer_uri, storage.join(out_uri, TOKENIZER_SUBDIR), only=TOKENIZER_FILES)
    meta = {
        "format": shards.FORMAT,
        "dtype": dtype.name,
        "vocab_size": vocab_size,
        "bos_token_id": tok.token_to_id(tokenizer_special(tokenizer_uri, "bos_token")),
        "eos_token_id": eos_id,
        "pad_token_id": tok.token_to_id(tokenizer_special(tokenizer_uri, "pad_token")),
        "val_fraction": cfg.val_fraction,
        "split_seed": cfg.split_seed,
        "splits": {
            s: {"files": files[s], "tokens": tokens[s], "documents": docs[s], "bytes": nbytes[s]}
            for s in shards.SPLITS
        },
        "skipped_empty_documents": empty,
        "chat": chat,
        "tokenizer": {
            "uri": tokenizer_uri,
            "sha256": storage.file_sha256(storage.join(tokenizer_uri, TOKENIZER_FILE)),
            "copy": TOKENIZER_SUBDIR,
        },
        "input": {"uri": data_uri, "manifest_sha256": data.manifest_sha256, "documents": count_rows(data)},
        "settings": cfg.model_dump(),
        "seconds": round(seconds, 3),
        "tokens_per_second": round(sum(tokens.values()) / max(seconds, 1e-9), 1),
        "bytes_per_second": round(sum(nbytes.values()) / max(seconds, 1e-9), 1),
    }
    storage.write_json_atomic(storage.join(out_uri, shards.META), meta)  # the format description
    storage.write_manifest(out_uri, {"stage": "tokenize", **meta})  # last: the completion marker
    return meta


def load_chat_tokenizer(tokenizer_uri: str) -> Any:
    """The transformers tokenizer (it renders chat templates), from a local or ``s3://`` directory."""
    from transformers import AutoTokenizer

    local = tokenizer_uri
    if storage.is_remote(tokenizer_uri):
        local = tempfile.mkdtemp(prefix="nexus-chat-tokenizer-")
        storage.copy_flat_dir(tokenizer_uri, local, only=TOKENIZER_FILES)
    return AutoTokenizer.from_pretrained(local)


def tokenizer_special(tokenizer_uri: str, key: str) -> str:
    """A special token's string from ``tokenizer_config.json`` (e.g. ``eos_token``)."""
    cfg = storage.read_json(storage.join(tokenizer_uri, "tokenizer_config.json"))
    value = cfg.get(key)
    if isinstance(value, dict):
        value = value.get("content")
    if not value:
        raise ValueError(f"{tokenizer_uri}: tokenizer_config.json has no {key}; retrain the tokenizer")
    return value
