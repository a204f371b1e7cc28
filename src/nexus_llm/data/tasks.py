"""The two per-split tasks of ``nexus data prepare``, run by any executor (processes or Spark tasks).

``map_split``    read → clean → PII → filter (language ID included) → evaluation-text overlaps, dedup
                 keys and MinHash signatures, into ``_work/splits/N/``.
``scan_split``   (with the held-out split) the kept training documents' overlaps with held-out ones.
``write_split``  drop the split's duplicates and contaminated documents and write its final Parquet
                 into ``_work/final/N/``.

Both are idempotent: a task whose ``done.json`` exists returns its recorded stats without redoing the
work, and every file is written whole before ``done.json``, so a task killed at any moment is simply
run again.
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from nexus_llm import storage
from nexus_llm.data import decontaminate as decon
from nexus_llm.data import dedup, pii
from nexus_llm.data.clean import clean_text
from nexus_llm.data.document import DocView
from nexus_llm.data.filters import filter_batch
from nexus_llm.data.minhash import MinHasher, band_keys, exact_hash
from nexus_llm.data.ngrams import NgramBatch
from nexus_llm.data.plan import Plan
from nexus_llm.data.readers import Bad, Record, Split, read_split
from nexus_llm.tokenizer.shards import split_of

DONE = "done.json"
ROWS_PER_GROUP = 8192
FILTER_BATCH = 64  # documents whose n-gram statistics are computed together (measured sweet spot)

DOC_SCHEMA = pa.schema(
    [
        ("ordinal", pa.int64()),
        ("id", pa.string()),
        ("text", pa.string()),
        ("source", pa.string()),
        ("meta", pa.string()),
    ]
)
REJECTED_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("text", pa.string()),
        ("reason", pa.string()),
        ("duplicate_of", pa.string()),
        ("source", pa.string()),
        ("ordinal", pa.int64()),
    ]
)
QUARANTINE_SCHEMA = pa.schema(
    [("file", pa.string()), ("line", pa.int64()), ("error", pa.string()), ("raw", pa.binary())]
)
OUTPUT_SCHEMA = pa.schema(
    [("id", pa.string()), ("text", pa.string()), ("source", pa.string()), ("meta", pa.string())]
)


class _Buffered:
    """A Parquet file written in row groups as rows arrive (memory bounded by one group)."""

    def __init__(self, path: str, schema: pa.Schema):
        self.path, self.schema, self.rows, self.count = path, schema, [], 0
        self.writer: pq.ParquetWriter | None = None

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.count += 1
        if len(self.rows) >= ROWS_PER_GROUP:
            self._flush()

    def _flush(self) -> None:
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, self.schema, compression="zstd")
        self.writer.write_table(pa.Table.from_pylist(self.rows, self.schema))
        self.rows = []

    def close(self) -> bool:
        """Finish the file; returns False (and writes nothing) when no row was added."""
        if self.rows or self.writer is not None:
            self._flush()
            self.writer.close()
        return self.count > 0


def _batches(items: Iterable[Any], size: int) -> Iterator[list[tuple[int, Any]]]:
    """Enumerated items in lists of ``size``."""
    batch: list[tuple[int, Any]] = []
    for item in enumerate(items):
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def ordinal(split_index: int, position: int) -> int:
    """Global input order: split index in the high bits, position within the split in the low."""
    return (split_index << 32) | position


def is_done(directory: str) -> dict | None:
    try:
        return storage.read_json(storage.join(directory, DONE))
    except FileNotFoundError:
        return None


def _publish(local_dir: str, target_dir: str, stats: dict) -> None:
    """Copy finished files into the work directory, then the done marker last."""
    for name in sorted(os.listdir(local_dir)):
        storage.upload_file_atomic(os.path.join(local_dir, name), storage.join(target_dir, name))
    storage.write_json_atomic(storage.join(target_dir, DONE), stats)


class _Pii:
    """A split's PII step: redact or reject, counts per kind, the first few samples per kind."""

    def __init__(self, plan: Plan):
        cfg = plan.config.pii
        self.cfg = cfg
        self.scanner = (
            pii.Scanner(cfg.kinds, cfg.private_ip_addresses, cfg.phone_region) if cfg.enabled else None
        )
        self.counts: Counter[str] = Counter()
        self.documents = 0
        self.samples: dict[str, list[dict]] = {}

    def apply(self, records: list[Record], texts: list[str]) -> tuple[list[str], list[str | None]]:
        """Texts with the redacted kinds replaced, and a rejection reason (or None) per document."""
        reasons: list[str | None] = [None] * len(texts)
        if self.scanner is None or not texts:
            return texts, reasons
        out = list(texts)
        for i, found in enumerate(self.scanner.find_batch(texts)):
            if not found:
                continue
            self.documents += 1
            kinds = pii.count(found)
            self.counts.update(kinds)
            for m in found:
                kept = self.samples.setdefault(m.kind, [])
                if len(kept) < self.cfg.samples:
                    kept.append(
                        {"id": records[i].id, "kind": m.kind, "context": pii.sample(texts[i], m, found)}
                    )
            rejecting = [k for k in pii.KINDS if k in kinds and k in self.cfg.reject]
            if rejecting:
                reasons[i] = f"pii.{rejecting[0]}"
            else:
                out[i] = self.scanner.redact(texts[i], found)
        return out, reasons

    def stats(self) -> dict:
        return {"documents": self.documents, "found": dict(self.counts), "samples": self.samples}


def _with_language(meta: str | None, result) -> str:
    """The record's metadata with the language found and its score (datatrove's key names)."""
    fields = json.loads(meta) if meta else {}
    fields["language"] = result.language
    fields["language_score"] = result.score
    return json.dumps(fields, ensure_ascii=False, sort_keys=True, default=str)


def map_split(plan: Plan, split: Split) -> dict:
    """Read, clean, redact, filter and fingerprint one split (skipped when already done)."""
    target = plan.split_dir(split.index)
    if (done := is_done(target)) is not None:
        return {**done, "resumed": True}
    cfg = plan.config
    started = time.perf_counter()
    hasher = MinHasher(cfg.dedup.near) if cfg.dedup.near.enabled else None
    scrub = _Pii(plan)
    dcfg = cfg.decontaminate
    index = decon.load_index(plan.sources_index, plan.digest) if plan.has_sources_index else None
    with tempfile.TemporaryDirectory(prefix="nexus-map-") as tmp:
        docs = _Buffered(os.path.join(tmp, "docs.parquet"), DOC_SCHEMA)
        rejected = _Buffered(os.path.join(tmp, "rejected.parquet"), REJECTED_SCHEMA)
        quarantine = _Buffered(os.path.join(tmp, "quarantine.parquet"), QUARANTINE_SCHEMA)
        ordinals: list[int] = []
        exact: list[int] = []
        sigs: list[np.ndarray] = []
        contam: list[np.ndarray] = []  # (ordinal, key) overlaps with the sources' evaluation texts
        heldout: list[np.ndarray] = []  # (n, hash, ordinal) of documents the held-out split will take
        heldout_docs: list[int] = []
        reasons: Counter[str] = Counter()
        languages: Counter[str] = Counter()
        records = chars_in = 0
        for batch in _batches(read_split(split, cfg.text_field, cfg.id_field), FILTER_BATCH):
            good = []
            for pos, rec in batch:
                records += 1
                if isinstance(rec, Bad):
                    quarantine.add({"file": rec.file, "line": rec.line, "error": rec.error, "raw": rec.raw})
                else:
                    chars_in += len(rec.text)
                    good.append((ordinal(split.index, pos), rec))
            texts = [clean_text(rec.text, cfg.clean) for _, rec in good]
            texts, pii_reasons = scrub.apply([rec for _, rec in good], texts)
            views = [DocView(t) for t in texts]
            filtered = filter_batch(views, cfg.filters, cfg.language)
            kept_views, kept_rows = [], []
            position = {i: j for j, i in enumerate(filtered.ngram_rows)}
            for i, ((o, rec), (view, reason)) in enumerate(zip(good, filtered.results, strict=True)):
                reason = pii_reasons[i] or reason
                found = filtered.languages[i]
                if found is not None:
                    languages[found.language] += 1
                if reason is not None:
                    reasons[reason] += 1
                    rejected.add(
                        {"id": rec.id, "text": rec.text, "reason": reason, "source": rec.source, "ordinal": o}
                    )
                    continue
                meta = rec.meta if found is None else _with_language(rec.meta, found)
                docs.add({"ordinal": o, "id": rec.id, "text": view.text, "source": rec.source, "meta": meta})
                ordinals.append(o)
                exact.append(exact_hash(view.text))
                kept_views.append(view)
                kept_rows.append(position[i])
                if dcfg.uses_split and split_of(rec.id, dcfg.val_fraction, dcfg.split_seed) == "val":
                    heldout_docs.append(o)
                    n, h = decon.text_ngrams(view, dcfg.ngram, dcfg.min_words)
                    if n:
                        heldout.append(
                            np.stack([np.full(len(h), n, np.uint64), h, np.full(len(h), o, np.uint64)])
                        )
            if hasher is not None and kept_views:
                sigs.append(hasher.signatures(kept_views, filtered.ngrams, kept_rows))
            if index is not None and kept_views:
                rows, keys = index.match(filtered.ngrams, kept_rows)
                if len(rows):
                    by_row = {
                        r: ordinals[len(ordinals) - len(kept_rows) + j] for j, r in enumerate(kept_rows)
                    }
                    contam.append(np.stack([np.array([by_row[r] for r in rows.tolist()]), keys], axis=1))
        docs.close()
        rejected.close()
        quarantine.close()
        # Key columns: 0 is the exact key, 1..bands the LSH band keys (computed for the whole split at once).
        keys = np.asarray(exact, dtype=np.uint64).reshape(-1, 1)
        if hasher is not None:
            near = cfg.dedup.near
            sig_matrix = np.concatenate(sigs) if sigs else np.empty((0, near.num_perm), np.uint32)
            np.save(os.path.join(tmp, "sigs.npy"), sig_matrix)
            keys = np.concatenate([keys, band_keys(sig_matrix, near.bands, near.rows)], axis=1)
        np.save(os.path.join(tmp, "ordinals.npy"), np.asarray(ordinals, dtype=np.int64))
        # Stored key column by key column, so a grouping task reads just the column it groups.
        np.save(os.path.join(tmp, "keys.npy"), np.ascontiguousarray(keys.T))
        if contam:
            np.save(os.path.join(tmp, "contam.npy"), np.concatenate(contam).astype(np.int64))
        if heldout_docs:
            np.save(os.path.join(tmp, "heldout_docs.npy"), np.asarray(heldout_docs, dtype=np.int64))
        if heldout:
            np.save(os.path.join(tmp, "heldout.npy"), np.concatenate(heldout, axis=1))
        stats = {
            "split": split.index,
            "records": records,
            "candidates": len(ordinals),
            "removed": dict(reasons),
            "quarantined": quarantine.count,
            "bytes": split.size,
            "chars_in": chars_in,
            "pii": scrub.stats(),
            "languages": dict(languages),
            "contam_hits": int(sum(len(c) for c in contam)),
            "heldout_docs": len(heldout_docs),
            "seconds": round(time.perf_counter() - started, 3),
        }
        _publish(tmp, target, stats)
    return stats


def scan_split(plan: Plan, item: tuple[int, list[int]]) -> dict:
    """The split's kept training documents' overlaps with the held-out split's n-grams.

    ``item`` is the split index and the ordinals that are not training documents (duplicates already
    removed, and the held-out documents themselves). Reads the cleaned texts back from the work
    directory: the held-out documents are known only after deduplication.
    """
    split_index, skip = item
    target = plan.split_dir(split_index)
    hits_uri = storage.join(target, "heldout_hits.npy")
    marker = storage.join(target, "scan.json")
    if storage.exists(marker):
        return storage.read_json(marker)
    index = decon.load_index(plan.heldout_index, plan.digest)
    table = _read_table(storage.join(target, "docs.parquet"), DOC_SCHEMA)
    skip_set = set(skip)
    rows = [
        (o, t)
        for o, t in zip(table.column("ordinal").to_pylist(), table.column("text").to_pylist(), strict=True)
        if o not in skip_set
    ]
    found: list[np.ndarray] = []
    for start in range(0, len(rows), FILTER_BATCH):
        chunk = rows[start : start + FILTER_BATCH]
        batch = NgramBatch([DocView(t) for _, t in chunk])
        docs, keys = index.match(batch)
        if len(docs):
            found.append(np.stack([np.array([chunk[d][0] for d in docs.tolist()]), keys], axis=1))
    hits = np.concatenate(found).astype(np.int64) if found else np.empty((0, 2), np.int64)
    with tempfile.TemporaryDirectory(prefix="nexus-scan-") as tmp:
        np.save(os.path.join(tmp, "heldout_hits.npy"), hits)
        storage.upload_file_atomic(os.path.join(tmp, "heldout_hits.npy"), hits_uri)
    stats = {"split": split_index, "hits": len(hits)}
    storage.write_json_atomic(marker, stats)
    return stats


def write_split(
    plan: Plan,
    split_index: int,
    removed: dict[int, tuple[str, str | None]],
    flagged: dict[int, str] | None = None,
) -> dict:
    """Write a split's survivors, and its rejected documents (filters and duplicates) with reasons.

    ``removed`` maps the ordinals of this split's duplicates to ``(reason, id of the survivor)`` and
    of its contaminated documents to ``(reason, None)``; ``flagged`` (decontamination's ``flag``
    action) maps kept documents to the reason recorded as ``contaminated`` in their metadata.
    Works on whole Arrow columns: a split is bounded by ``shard_size_mb``, so it fits in memory.
    """
    target = plan.final_dir(split_index)
    if (done := is_done(target)) is not None:
        return done
    source = plan.split_dir(split_index)
    max_bytes = int(plan.config.shard_size_mb * (1 << 20))
    docs = _read_table(storage.join(source, "docs.parquet"), DOC_SCHEMA)
    dup_ordinals = np.fromiter(sorted(removed), dtype=np.int64, count=len(removed))
    is_dup = pc.is_in(docs.column("ordinal"), pa.array(dup_ordinals))
    kept = docs.filter(pc.invert(is_dup))
    if flagged:
        metas = kept.column("meta").to_pylist()
        for row, o in enumerate(kept.column("ordinal").to_pylist()):
            if o in flagged:
                fields = json.loads(metas[row]) if metas[row] else {}
                fields["contaminated"] = flagged[o]
                metas[row] = json.dumps(fields, ensure_ascii=False, sort_keys=True, default=str)
        kept = kept.set_column(kept.schema.get_field_index("meta"), "meta", pa.array(metas, pa.string()))
    kept = kept.select(OUTPUT_SCHEMA.names)
    dups = docs.filter(is_dup)
    hits = [removed[o] for o in dups.column("ordinal").to_pylist()]
    dups = dups.append_column("reason", pa.array([h[0] for h in hits], pa.string()))
    dups = dups.append_column("duplicate_of", pa.array([h[1] for h in hits], pa.string()))
    rejected = pa.concat_tables(
        [
            dups.select(REJECTED_SCHEMA.names),
            _read_table(storage.join(source, "rejected.parquet"), REJECTED_SCHEMA),
        ]
    )
    with tempfile.TemporaryDirectory(prefix="nexus-write-") as tmp:
        _write_parts(kept, tmp, "part", max_bytes)
        _write_parts(rejected, tmp, "rejected", max_bytes)
        quarantine = storage.join(source, "quarantine.parquet")
        if storage.exists(quarantine):
            _download(quarantine, os.path.join(tmp, "quarantine-000.parquet"))
        stats = {"split": split_index, "kept": kept.num_rows, "files": sorted(os.listdir(tmp))}
        _publish(tmp, target, stats)
    return stats


def _read_table(uri: str, schema: pa.Schema) -> pa.Table:
    if not storage.exists(uri):
        return schema.empty_table()
    with storage.open_file(uri, "rb") as fh:
        return pq.read_table(fh)


def _write_parts(table: pa.Table, directory: str, prefix: str, max_bytes: int) -> None:
    """``<prefix>-000.parquet``, ``-001``, ... each holding at most about ``max_bytes`` of text."""
    if table.num_rows == 0:
        return
    sizes = np.asarray(
        pc.binary_length(pc.cast(table.column("text"), pa.binary())).to_numpy(zero_copy_only=False)
    )
    part = (np.cumsum(sizes) - sizes) // max(max_bytes, 1)  # where each row starts, in units of max_bytes
    bounds = [*np.flatnonzero(np.concatenate(([True], part[1:] != part[:-1]))).tolist(), table.num_rows]
    for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        pq.write_table(
            table.slice(lo, hi - lo), os.path.join(directory, f"{prefix}-{i:03d}.parquet"),
            compression="zstd", row_group_size=ROWS_PER_GROUP,
        )  # fmt: skip


def _download(uri: str, local: str) -> None:
    with storage.open_file(uri, "rb") as src, open(local, "wb") as dst:
        while block := src.read(8 << 20):
            dst.write(block)


def load_array(uri: str) -> np.ndarray:
    """A ``.npy`` from the work directory: memory-mapped when local."""
    if storage.is_remote(uri):
        import io

        return np.load(io.BytesIO(storage.read_bytes(uri)))
    return np.load(uri, mmap_mode="r")


def load_row(uri: str, row: int) -> np.ndarray:
    """One row of a 2-D ``.npy`` (a key column): memory-mapped locally, one ranged read remotely."""
    if not storage.is_remote(uri):
        return np.load(uri, mmap_mode="r")[row]
    with storage.open_file(uri, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        read_header = (
            np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read_header(fh)
        fh.seek(fh.tell() + row * shape[1] * dtype.itemsize)
        return np.frombuffer(fh.read(shape[1] * dtype.itemsize), dtype=dtype)


def link_column(plan: Plan, splits: Sequence[int], parts: int, task: tuple[int, int]) -> np.ndarray:
    """Links ``(first, other)`` between documents with equal keys in one key column and hash range.

    Only the range's keys are held (16 bytes per document), so ``parts`` bounds a task's memory.
    """
    column, part = task
    keys, ordinals = [], []
    for split in splits:
        d = plan.split_dir(split)
        k = load_row(storage.join(d, "keys.npy"), column)
        mask = dedup.range_of(k, parts) == np.uint64(part)
        keys.append(k[mask])
        ordinals.append(np.asarray(load_array(storage.join(d, "ordinals.npy")))[mask])
    if not keys:
        return np.empty((0, 2), dtype=np.int64)
    return dedup.link_equal_keys(np.concatenate(keys), np.concatenate(ordinals))
