"""Held-out documents for perplexity: a token directory's split, or curated Parquet tokenized on the fly.

Both sources give the same thing: a list of documents as token-id arrays, each ending with the EOS id
(exactly as ``nexus data tokenize`` lays them out in its shards: text tokens without special tokens,
then EOS), and the number of UTF-8 bytes of the text those tokens encode, for bits per byte. A BOS,
when the model wants one, is added at scoring time (see ``perplexity``).

Byte counts: a whole token split uses ``bytes`` from its ``meta.json``; curated data counts the bytes of
its texts; when ``limit``/``max_tokens`` keep only part of a token split, the kept documents are decoded
with the tokenizer and their text counted (exact for lossless byte-level BPE tokenizers).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Literal

import numpy as np

from nexus_llm import storage
from nexus_llm.eval.errors import EvalError
from nexus_llm.tokenizer import shards


@dataclass
class HeldOut:
    """Documents to score and the size of the text they encode."""

    source: str
    kind: Literal["tokens", "curated"]
    documents: list[np.ndarray]
    bytes: int
    bytes_source: Literal["meta", "text", "decoded"]
    digest: str
    complete: bool = True
    """False when ``limit`` or ``max_tokens`` left part of the source out."""
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return int(sum(len(d) for d in self.documents))


def load_heldout(
    uri: str, tokenizer, split: str = "val", limit: int | None = None, max_tokens: int | None = None
) -> HeldOut:
    """Read held-out documents from a token directory or curated Parquet data at ``uri``."""
    if storage.exists(storage.join(uri, shards.META)):
        return _from_tokens(uri, tokenizer, split, limit, max_tokens)
    files = _curated_files(uri)
    if files:
        return _from_curated(uri, files, tokenizer, limit, max_tokens)
    raise EvalError(
        f"{uri!r} is neither a token directory (no meta.json) nor curated data (no part-*.parquet). "
        "Pass --data with the output of `nexus data tokenize` or of `nexus data prepare`."
    )


class _Budget:
    """Keeps whole documents in order until ``limit`` documents or ``max_tokens`` tokens are taken."""

    def __init__(self, limit: int | None, max_tokens: int | None) -> None:
        self.limit, self.max_tokens = limit, max_tokens
        self.docs: list[np.ndarray] = []
        self.tokens = 0
        self.cut = False
        """True when the last document was cut short to fit ``max_tokens``."""

    @property
    def full(self) -> bool:
        by_docs = self.limit is not None and len(self.docs) >= self.limit
        by_tokens = self.max_tokens is not None and self.tokens >= self.max_tokens
        return by_docs or by_tokens

    def take(self, doc: np.ndarray) -> None:
        if self.max_tokens is not None and self.tokens + len(doc) > self.max_tokens:
            doc = doc[: self.max_tokens - self.tokens]
            self.cut = True
        self.docs.append(np.asarray(doc, dtype=np.int64))
        self.tokens += len(doc)

    def fill(self, docs) -> bool:
        """Take from ``docs`` until full; True when every document was taken whole."""
        for doc in docs:
            if self.full:
                return False
            self.take(doc)
        return not self.cut


def _check_tokenizer(meta: dict[str, Any], tokenizer, uri: str) -> None:
    eos = tokenizer.eos_token_id
    if meta.get("eos_token_id") != eos or int(meta.get("vocab_size", 0)) > len(tokenizer):
        raise EvalError(
            f"{uri} was tokenized with a different tokenizer (eos id {meta.get('eos_token_id')}, vocabulary "
            f"{meta.get('vocab_size')}) than the model's (eos id {eos}, vocabulary {len(tokenizer)}). "
            "Tokenize the held-out data with the model's tokenizer, or pass curated data as --data."
        )


def _iter_token_documents(uri: str, split: str, meta: dict[str, Any]):
    """Documents of a split with their EOS, even when one spans two shards."""
    eos = int(meta["eos_token_id"])
    carry = np.zeros(0, dtype=np.int64)
    for shard in shards.iter_split(uri, split, meta):
        stream = np.concatenate([carry, shard.astype(np.int64)]) if len(carry) else shard
        ends = np.flatnonzero(stream == eos)
        for doc in shards.split_documents(stream, eos):
            yield np.append(doc, eos)
        carry = np.asarray(stream[ends[-1] + 1 :] if len(ends) else stream, dtype=np.int64)
    if len(carry):
        yield carry  # a final document without its EOS


def _from_tokens(uri: str, tokenizer, split: str, limit: int | None, max_tokens: int | None) -> HeldOut:
    meta = shards.read_meta(uri)
    info = meta.get("splits", {}).get(split)
    if not info or not info.get("files"):
        raise EvalError(
            f"{uri} has no {split!r} split (splits: {', '.join(meta.get('splits', {})) or 'none'}). "
            "Tokenize with a validation fraction above 0, or choose another split with --split."
        )
    _check_tokenizer(meta, tokenizer, uri)
    budget = _Budget(limit, max_tokens)
    complete = budget.fill(_iter_token_documents(uri, split, meta))
    if complete and "bytes" in info:
        n_bytes, how = int(info["bytes"]), "meta"
    else:
        n_bytes, how = _decoded_bytes(budget.docs, tokenizer), "decoded"
    # what the tokens are, not when they were made: the same data tokenized again compares as the same
    digest = shards.content_digest(meta)
    return HeldOut(uri, "tokens", budget.docs, n_bytes, how, digest, complete, {"split": split})


def _decoded_bytes(docs: list[np.ndarray], tokenizer) -> int:
    texts = tokenizer.batch_decode([d.tolist() for d in docs], skip_special_tokens=True)
    return sum(len(t.encode("utf-8")) for t in texts)


def _curated_files(uri: str) -> list[str]:
    if uri.endswith(".parquet"):
        return [uri] if storage.exists(uri) else []
    try:
        return storage.expand([storage.join(uri, "part-*.parquet")])
    except FileNotFoundError:
        return []


def _read_texts(files: list[str], limit: int | None):
    import pyarrow.parquet as pq

    taken = 0
    for path in files:
        try:
            with storage.open_file(path) as fh:
                table = pq.read_table(fh, columns=["text"])
        except (KeyError, ValueError, OSError) as err:  # pyarrow's ArrowInvalid is a ValueError
            raise EvalError(f"{path}: not curated data with a `text` column ({err}).") from None
        for text in table.column("text").to_pylist():
            if limit is not None and taken >= limit:
                return
            if text:
                taken += 1
                yield text


def _from_curated(
    uri: str, files: list[str], tokenizer, limit: int | None, max_tokens: int | None
) -> HeldOut:
    texts: list[str] = []

    def documents():
        stream = _read_texts(files, None if limit is None else limit + 1)
        while chunk := list(islice(stream, 256)):  # tokenize in batches: the fast tokenizer is parallel
            encoded = tokenizer(chunk, add_special_tokens=False, verbose=False)["input_ids"]
            for text, ids in zip(chunk, encoded, strict=True):
                texts.append(text)
                yield np.array([*ids, tokenizer.eos_token_id], dtype=np.int64)

    budget = _Budget(limit, max_tokens)
    complete = budget.fill(documents())
    if budget.cut:
        n_bytes, how = _decoded_bytes(budget.docs, tokenizer), "decoded"
    else:
        n_bytes, how = sum(len(t.encode("utf-8")) for t in texts[: len(budget.docs)]), "text"
    return HeldOut(uri, "curated", budget.docs, n_bytes, how, _files_digest(uri, files), complete)


def _files_digest(uri: str, files: list[str]) -> str:
    manifest = storage.read_manifest(uri) if not uri.endswith(".parquet") else None
    h = hashlib.sha256()
    if manifest is not None:
        h.update(storage.read_bytes(storage.join(uri, storage.MANIFEST)))
    else:
        for path in files:
            h.update(f"{storage.basename(path)}:{storage.size(path)}\n".encode())
    return h.hexdigest()
