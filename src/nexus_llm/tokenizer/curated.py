"""Reading curated data (``nexus data prepare`` output) in bounded memory, local or ``s3://``.

A curated directory holds ``part-*.parquet`` (columns ``id``, ``text``, ``source``, ``meta``) and a
``manifest.json`` written last. Only complete directories are read, and every consumer records the
manifest's digest so that a later run can tell whether its input changed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from nexus_llm import storage


@dataclass(frozen=True)
class CuratedData:
    """A complete curated directory: its part files (in order) and the digest of its manifest."""

    uri: str
    files: list[str]
    manifest_sha256: str


def open_curated(uri: str) -> CuratedData:
    """Check that ``uri`` is a complete curated directory and list its part files in order."""
    manifest_uri = storage.join(uri, storage.MANIFEST)
    try:
        manifest_bytes = storage.read_bytes(manifest_uri)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{manifest_uri} not found: {uri!r} is not a complete curated dataset. "
            "Run `nexus data prepare INPUT... -o DIR` first and pass DIR."
        ) from None
    try:
        files = storage.expand([storage.join(uri, "part-*.parquet")])
    except FileNotFoundError:
        raise FileNotFoundError(f"{uri!r} has a manifest but no part-*.parquet files") from None
    return CuratedData(uri, files, hashlib.sha256(manifest_bytes).hexdigest())


def iter_batches(data: CuratedData, columns: list[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Row batches of the given columns across all part files, in order (one batch in memory)."""
    for uri in data.files:
        with storage.open_file(uri, "rb") as fh:
            pf = pq.ParquetFile(fh)
            missing = [c for c in columns if c not in pf.schema_arrow.names]
            if missing:
                raise ValueError(f"{uri}: missing column(s) {missing}; is this curated data?")
            yield from pf.iter_batches(batch_size=batch_rows, columns=columns)


def count_rows(data: CuratedData) -> int:
    """Documents in the dataset, from the Parquet footers (no data read)."""
    total = 0
    for uri in data.files:
        with storage.open_file(uri, "rb") as fh:
            total += pq.ParquetFile(fh).metadata.num_rows
    return total


def iter_texts(data: CuratedData, max_bytes: int | None = None, batch_rows: int = 1024) -> Iterator[str]:
    """Document texts in order, stopping once ``max_bytes`` of UTF-8 have been yielded."""
    seen = 0
    for batch in iter_batches(data, ["text"], batch_rows):
        for text in batch.column(0).to_pylist():
            if not text:
                continue
            yield text
            seen += len(text.encode("utf-8"))
            if max_bytes is not None and seen >= max_bytes:
                return
