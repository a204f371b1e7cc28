"""Decontamination: training documents that share a word n-gram with evaluation texts.

GPT-3 (Brown et al. 2020, appendix C) and Llama 2 report 13-gram overlap between training data and
benchmarks; the rule here is GPT-3's: a training document is contaminated when it shares a 13-gram
(``data.decontaminate.ngram``) with an evaluation text, or contains the whole evaluation text when
that is shorter than 13 words (and at least ``min_words`` long); an n-gram found in more than
``max_train_docs`` (10) training documents is common phrasing or boilerplate, not a leak, and is
ignored. Words are compared as every filter sees them (lower-cased, punctuation as separators, after
the same cleaning), so case, punctuation and spacing changes do not hide a copy.

Evaluation texts come from two places:

* ``sources``: lm-eval task YAML files (their local ``data_files`` are read), data files (``.jsonl``,
  ``.json``, ``.parquet``, ``.csv``, ``.txt``, ``.md``) or directories of them (a curated directory
  contributes its ``part-*.parquet``); every string field of a record is a text (or ``text_fields``).
  These are known before the run, so each split checks its documents while it filters them, on the
  n-gram hashes the filters already computed.
* the held-out split (``heldout_split``): the documents ``nexus data tokenize`` will put in its
  validation split (a fixed fraction of ids, ``tokenize.val_fraction``), which ``nexus eval`` scores
  perplexity on. They are known only once deduplication has decided which documents survive, so a
  later pass reads the kept training documents again and checks them against the held-out n-grams.

Counts go to the curated manifest under ``decontamination``; :func:`overlap_report` reads them back
for ``nexus eval``.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import yaml

from nexus_llm import storage
from nexus_llm.configbase import ConfigError
from nexus_llm.data.clean import clean_text
from nexus_llm.data.config import CleanConfig, DecontaminateConfig
from nexus_llm.data.document import DocView
from nexus_llm.data.ngrams import NgramBatch

DATA_SUFFIXES = (".jsonl", ".json", ".ndjson", ".jsonl.gz", ".json.gz", ".parquet", ".csv", ".txt", ".md")
TASK_SUFFIXES = (".yaml", ".yml")
SPLIT_SOURCE = "heldout_split"
REASON_SOURCES = "decontaminate.sources"
REASON_SPLIT = "decontaminate.heldout_split"


# --- reading evaluation texts


class _TaskLoader(yaml.SafeLoader):
    """lm-eval task YAMLs use ``!function`` tags; they do not matter here and load as None."""


_TaskLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def _task_data_files(uri: str) -> list[str]:
    """The local data files an lm-eval task YAML reads (``dataset_kwargs.data_files``, paths relative
    to the YAML), or a ConfigError saying why the task cannot be read offline."""
    try:
        cfg = yaml.load(storage.read_text(uri), Loader=_TaskLoader)
    except yaml.YAMLError as err:
        raise ConfigError(f"data.decontaminate.sources: {uri} is not valid YAML: {err}") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"data.decontaminate.sources: {uri} is not an lm-eval task YAML (no mapping)")
    files = (cfg.get("dataset_kwargs") or {}).get("data_files")
    base = uri.rsplit("/", 1)[0] if "/" in uri else "."
    found: list[str] = []

    def add(value: Any) -> None:
        if isinstance(value, dict):
            for v in value.values():
                add(v)
        elif isinstance(value, list):
            for v in value:
                add(v)
        elif isinstance(value, str):
            absolute = storage.is_remote(value) or PurePosixPath(value).is_absolute()
            found.append(value if absolute else storage.join(base, value))

    add(files)
    dataset = cfg.get("dataset_path")
    if not found and isinstance(dataset, str) and dataset.startswith((".", "/")):
        found.append(dataset if dataset.startswith("/") else storage.join(base, dataset))
    if not found:
        raise ConfigError(
            f"data.decontaminate.sources: task {cfg.get('task', uri)!r} ({uri}) reads its data from the "
            f"dataset hub ({dataset!r}), which is not reachable offline; list the task's local data files "
            "(jsonl, parquet, csv) in data.decontaminate.sources instead"
        )
    return found


def source_files(sources: Sequence[str]) -> list[tuple[str, str]]:
    """(source as configured, data file) for every file the sources name, in order.

    Raises FileNotFoundError naming a source that does not exist or holds no readable file, and
    ConfigError for a task YAML whose data is not local: before any work starts.
    """
    out: list[tuple[str, str]] = []
    for source in sources:
        try:
            files = storage.expand([source], DATA_SUFFIXES + TASK_SUFFIXES)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"data.decontaminate.sources: {err}") from None
        if len(files) > 1 or files[0] != source:
            # a directory: a curated one contributes its kept documents only
            parts = [f for f in files if PurePosixPath(f).name.startswith("part-")]
            if storage.exists(storage.join(source, storage.MANIFEST)) and parts:
                files = parts
        for f in files:
            if f.lower().endswith(TASK_SUFFIXES):
                for data in _task_data_files(f):
                    try:
                        expanded = storage.expand([data], DATA_SUFFIXES)
                    except FileNotFoundError as err:
                        raise FileNotFoundError(
                            f"data.decontaminate.sources: {f} names a data file that {err}"
                        ) from None
                    out.extend((source, d) for d in expanded)
            else:
                out.append((source, f))
    return out


def source_identities(sources: Sequence[str]) -> list[dict[str, str]]:
    """What the sources are, by content: changes when a task file or its data changes."""
    return [{"source": s, "uri": f, "fingerprint": storage.fingerprint(f)} for s, f in source_files(sources)]


def _records(uri: str) -> Iterable[Any]:
    lower = uri.lower()
    if lower.endswith(".parquet"):
        import pyarrow.parquet as pq

        with storage.open_file(uri, "rb") as fh:
            yield from pq.read_table(fh).to_pylist()
        return
    raw = storage.read_bytes(uri)
    if lower.endswith(".gz"):
        raw = gzip.decompress(raw)
    text = raw.decode("utf-8", errors="replace")
    if lower.endswith((".txt", ".md")):
        yield {"text": text}
    elif lower.endswith(".csv"):
        yield from csv.DictReader(io.StringIO(text))
    else:
        stripped = text.lstrip()
        if stripped.startswith("["):  # a JSON array
            yield from json.loads(stripped)
            return
        for line in text.splitlines():
            if line.strip():
                yield json.loads(line)


def _strings(record: Any, fields: Sequence[str] | None) -> list[str]:
    if isinstance(record, str):
        return [record]
    if not isinstance(record, dict):
        return []
    if fields is not None:
        return [record[f] for f in fields if isinstance(record.get(f), str)]
    out: list[str] = []
    for value in record.values():
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, list):
            out.extend(v for v in value if isinstance(v, str))  # multiple-choice options
    return out


def read_texts(cfg: DecontaminateConfig) -> tuple[list[str], list[str], list[int]]:
    """(sources, texts, source index of each text) for ``cfg.sources``."""
    sources = list(dict.fromkeys(cfg.sources))
    texts: list[str] = []
    owner: list[int] = []
    for source, uri in source_files(sources):
        try:
            for record in _records(uri):
                for text in _strings(record, cfg.text_fields):
                    texts.append(text)
                    owner.append(sources.index(source))
        except (ValueError, UnicodeDecodeError) as err:
            raise ConfigError(f"data.decontaminate.sources: cannot read {uri}: {err}") from None
    return sources, texts, owner


# --- n-grams of evaluation texts


def text_ngrams(view: DocView, ngram: int, min_words: int) -> tuple[int, np.ndarray]:
    """(n, hashes) an evaluation text is matched by: its ngram-grams, or the whole text when it has
    fewer than ``ngram`` words but at least ``min_words``; (0, empty) when it is too short."""
    words = len(view.words)
    if words >= ngram:
        return ngram, np.unique(view.ngram_hashes(ngram))
    if words >= min_words:
        return words, view.ngram_hashes(words)[:1]
    return 0, np.empty(0, dtype=np.uint64)


@dataclass
class Index:
    """Evaluation n-grams: per n-gram length, sorted unique hashes; each key's evaluation texts."""

    ngram_sizes: np.ndarray  # n of each key (keys sorted by n, then hash)
    hashes: np.ndarray  # uint64, per key
    key_ptr: np.ndarray  # CSR: texts of key k are text_ids[key_ptr[k]:key_ptr[k+1]]
    text_ids: np.ndarray
    text_source: np.ndarray  # source index of each evaluation text
    sources: list[str]
    texts: int = 0
    per_source: list[dict[str, int]] = field(default_factory=list)

    @classmethod
    def from_triples(
        cls,
        sizes: np.ndarray,
        hashes: np.ndarray,
        owners: np.ndarray,
        text_source: np.ndarray,
        sources: list[str],
        per_source: list[dict[str, int]] | None = None,
    ) -> Index:
        """From (n, hash, evaluation text) triples, in any order, with repeats."""
        sizes = np.asarray(sizes, dtype=np.int64)
        hashes = np.asarray(hashes, dtype=np.uint64)
        owners = np.asarray(owners, dtype=np.int64)
        order = np.lexsort((owners, hashes, sizes))
        sizes, hashes, owners = sizes[order], hashes[order], owners[order]
        if len(sizes):
            pair_new = np.concatenate(
                (
                    [True],
                    (sizes[1:] != sizes[:-1]) | (hashes[1:] != hashes[:-1]) | (owners[1:] != owners[:-1]),
                )
            )
            sizes, hashes, owners = sizes[pair_new], hashes[pair_new], owners[pair_new]
            key_new = np.concatenate(([True], (sizes[1:] != sizes[:-1]) | (hashes[1:] != hashes[:-1])))
        else:
            key_new = np.zeros(0, dtype=bool)
        starts = np.flatnonzero(key_new)
        return cls(
            ngram_sizes=sizes[starts],
            hashes=hashes[starts],
            key_ptr=np.append(starts, len(owners)).astype(np.int64),
            text_ids=owners,
            text_source=np.asarray(text_source, dtype=np.int64),
            sources=sources,
            texts=len(text_source),
            per_source=per_source or [],
        )

    @classmethod
    def from_texts(
        cls,
        sources: list[str],
        texts: list[str],
        owner: list[int],
        cfg: DecontaminateConfig,
        clean: CleanConfig,
    ) -> Index:
        sizes, hashes, owners = [], [], []
        per_source = [{"texts": 0, "checked": 0, "too_short": 0} for _ in sources]
        for i, (text, src) in enumerate(zip(texts, owner, strict=True)):
            n, h = text_ngrams(DocView(clean_text(text, clean)), cfg.ngram, cfg.min_words)
            per_source[src]["texts"] += 1
            if n == 0:
                per_source[src]["too_short"] += 1
                continue
            per_source[src]["checked"] += 1
            sizes.append(np.full(len(h), n, dtype=np.int64))
            hashes.append(h)
            owners.append(np.full(len(h), i, dtype=np.int64))
        cat = lambda parts, dt: np.concatenate(parts) if parts else np.empty(0, dt)  # noqa: E731
        return cls.from_triples(
            cat(sizes, np.int64), cat(hashes, np.uint64), cat(owners, np.int64),
            np.asarray(owner, dtype=np.int64), sources, per_source,
        )  # fmt: skip

    @property
    def keys(self) -> int:
        return len(self.hashes)

    def sizes(self) -> list[int]:
        return sorted(set(self.ngram_sizes.tolist()))

    def match(self, batch: NgramBatch, docs: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(document position in the batch, key) for every key found in a document, each pair once.

        ``docs`` restricts the result to those batch positions.
        """
        found_docs, found_keys = [], []
        for n in self.sizes():
            lo, hi = np.searchsorted(self.ngram_sizes, [n, n + 1])
            keys = self.hashes[lo:hi]
            hashes, pos = batch.ngrams(n)
            if len(hashes) == 0:
                continue
            at = np.searchsorted(keys, hashes)
            at = np.minimum(at, len(keys) - 1)
            hit = keys[at] == hashes
            if not hit.any():
                continue
            found_docs.append(batch.doc_of_word[pos[hit]])
            found_keys.append(at[hit] + lo)
        if not found_docs:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        d, k = np.concatenate(found_docs), np.concatenate(found_keys)
        if docs is not None:
            wanted = np.zeros(batch.docs, dtype=bool)
            wanted[np.asarray(docs, dtype=np.int64)] = True
            d, k = d[wanted[d]], k[wanted[d]]
        pairs = np.unique(np.stack([d, k], axis=1), axis=0) if len(d) else np.empty((0, 2), np.int64)
        return pairs[:, 0], pairs[:, 1]

    def save(self, uri: str) -> None:
        buf = io.BytesIO()
        np.savez(
            buf, ngram_sizes=self.ngram_sizes, hashes=self.hashes, key_ptr=self.key_ptr,
            text_ids=self.text_ids, text_source=self.text_source,
            meta=np.frombuffer(
                json.dumps({"sources": self.sources, "texts": self.texts, "per_source": self.per_source}).encode(),
                dtype=np.uint8,
            ),
        )  # fmt: skip
        storage.write_bytes_atomic(uri, buf.getvalue())

    @classmethod
    def load(cls, uri: str) -> Index:
        with np.load(io.BytesIO(storage.read_bytes(uri))) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            return cls(
                data["ngram_sizes"], data["hashes"], data["key_ptr"], data["text_ids"], data["text_source"],
                meta["sources"], meta["texts"], meta["per_source"],
            )  # fmt: skip


_INDEX_CACHE: dict[tuple[str, str], Index] = {}


def load_index(uri: str, run: str) -> Index:
    """An index from the work directory, loaded once per process and run (``run``: the plan digest,
    so a later run writing to the same directory never sees an earlier run's index)."""
    key = (uri, run)
    if key not in _INDEX_CACHE:
        _INDEX_CACHE.clear()
        _INDEX_CACHE[key] = Index.load(uri)
    return _INDEX_CACHE[key]


# --- decisions


def decide(
    index: Index, ordinals: np.ndarray, keys: np.ndarray, kind: str, max_train_docs: int
) -> tuple[dict[int, str], dict[str, Any]]:
    """Contaminated documents among (document ordinal, key) hits, after dropping common n-grams."""
    reason = REASON_SPLIT if kind == SPLIT_SOURCE else REASON_SOURCES
    empty = {"common_ngrams_ignored": 0, "per_source": _per_source(index, np.empty(0, np.int64), {})}
    if len(ordinals) == 0:
        return {}, empty
    pairs = np.unique(np.stack([keys, ordinals], axis=1), axis=0)
    key_ids, docs_per_key = np.unique(pairs[:, 0], return_counts=True)
    common = key_ids[docs_per_key > max_train_docs]
    kept = pairs[~np.isin(pairs[:, 0], common)]
    contaminated = {int(o): reason for o in np.unique(kept[:, 1]).tolist()}
    docs_by_source: dict[int, set[int]] = {}
    for k, o in kept.tolist():
        for t in index.text_ids[index.key_ptr[k] : index.key_ptr[k + 1]].tolist():
            docs_by_source.setdefault(int(index.text_source[t]), set()).add(o)
    return contaminated, {
        "common_ngrams_ignored": len(common),
        "per_source": _per_source(index, np.unique(kept[:, 0]), docs_by_source),
    }


def _per_source(index: Index, keys: np.ndarray, docs_by_source: dict[int, set[int]]) -> list[dict]:
    found_texts: set[int] = set()
    for k in keys.tolist():
        found_texts.update(index.text_ids[index.key_ptr[k] : index.key_ptr[k + 1]].tolist())
    found_by_source = np.bincount(
        index.text_source[sorted(found_texts)] if found_texts else np.empty(0, np.int64),
        minlength=len(index.sources),
    )
    out = []
    for s, name in enumerate(index.sources):
        stats = index.per_source[s] if s < len(index.per_source) else {}
        out.append(
            {
                "source": name,
                **stats,
                "texts_found": int(found_by_source[s]),
                "documents": len(docs_by_source.get(s, ())),
            }
        )
    return out


def overlap_report(curated_uri: str) -> dict[str, Any] | None:
    """The decontamination section of a curated directory's manifest (None when it has none).

    For ``nexus eval``: per evaluation source, how many of its texts were found in the training data
    (``texts_found`` of ``checked``) and how many training documents held them (``documents``,
    removed or flagged per ``action``).
    """
    manifest = storage.read_manifest(curated_uri)
    if not manifest:
        return None
    return manifest.get("decontamination")
