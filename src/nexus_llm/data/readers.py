"""Input planning and readers: JSON lines (plain or gzip), Parquet, and text/markdown files.

The planner cuts the inputs into splits of bounded size (byte ranges of a JSON-lines file, row-group
ranges of a Parquet file, batches of small text files). Splits are the unit of work of both engines:
a worker reads one split at a time, so memory does not grow with the corpus.

Readers yield a :class:`Record` for each readable document and a :class:`Bad` for each unreadable one
(invalid UTF-8, bad JSON, missing or non-string text), with its file, line and raw bytes. Blank lines
in JSON-lines files are not records.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Literal

import pyarrow.parquet as pq
import xxhash

from nexus_llm import storage

JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
GZ_SUFFIXES = tuple(s + ".gz" for s in JSONL_SUFFIXES)
PARQUET_SUFFIXES = (".parquet",)
TEXT_SUFFIXES = (".txt", ".md")
SUFFIXES = JSONL_SUFFIXES + GZ_SUFFIXES + PARQUET_SUFFIXES + TEXT_SUFFIXES
_SCAN_BLOCK = 8 << 20
MAX_TEXT_FILES_PER_SPLIT = 1000


@dataclass(frozen=True)
class Split:
    """One unit of work: a byte range of a JSON-lines file, row groups of a Parquet file, or text files."""

    index: int
    kind: Literal["jsonl", "parquet", "text"]
    files: tuple[str, ...]
    start: int = 0  # jsonl: first byte; parquet: first row group
    end: int = -1  # jsonl: end byte (exclusive, -1 = end of file); parquet: end row group
    first_line: int = 1  # jsonl: line number of the first line; parquet: row number of the first row
    size: int = 0  # input bytes (for progress and throughput)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Split:
        return cls(**{**d, "files": tuple(d["files"])})


@dataclass
class Record:
    id: str
    text: str
    source: str
    meta: str | None
    line: int


@dataclass
class Bad:
    file: str
    line: int
    error: str
    raw: bytes = field(repr=False)


def default_id(source: str, line: int) -> str:
    """A deterministic id for a record without one: hash of its file's URI, and its line."""
    return f"{xxhash.xxh3_64_hexdigest(source.encode())[:12]}-{line}"


def kind_of(uri: str) -> str:
    low = uri.lower()
    if low.endswith(GZ_SUFFIXES) or low.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if low.endswith(PARQUET_SUFFIXES):
        return "parquet"
    return "text"


def plan_splits(files: list[str], split_bytes: int) -> list[Split]:
    """Cut files (in the given order) into splits of about ``split_bytes`` input bytes."""
    splits: list[Split] = []
    texts: list[str] = []
    text_bytes = 0

    def flush_texts() -> None:
        nonlocal texts, text_bytes
        if texts:
            splits.append(Split(len(splits), "text", tuple(texts), size=text_bytes))
            texts, text_bytes = [], 0

    for uri in files:
        kind = kind_of(uri)
        size = storage.size(uri)
        if kind == "text":
            if texts and (text_bytes + size > split_bytes or len(texts) >= MAX_TEXT_FILES_PER_SPLIT):
                flush_texts()
            texts.append(uri)
            text_bytes += size
            continue
        flush_texts()
        if kind == "parquet":
            ranges = _parquet_ranges(uri, split_bytes)
        elif uri.lower().endswith(".gz") or size <= split_bytes * 1.5:
            ranges = [(0, -1, 1, size)]
        else:
            ranges = _jsonl_ranges(uri, size, split_bytes)
        for start, end, first, nbytes in ranges:
            splits.append(Split(len(splits), kind, (uri,), start, end, first, nbytes))
    flush_texts()
    return splits


def _jsonl_ranges(uri: str, size: int, split_bytes: int) -> list[tuple[int, int, int, int]]:
    """Line-aligned byte ranges, with the line number each starts at (one sequential scan)."""
    cuts = [(0, 1)]  # (byte offset, line number)
    next_cut = split_bytes
    pos = 0
    lines = 0
    with storage.open_file(uri, "rb") as fh:
        while block := fh.read(_SCAN_BLOCK):
            offset = 0
            while pos + len(block) > next_cut:
                nl = block.find(b"\n", max(next_cut - pos, offset))
                if nl < 0:
                    break
                lines += block.count(b"\n", offset, nl + 1)
                offset = nl + 1
                if pos + offset < size:
                    cuts.append((pos + offset, lines + 1))
                next_cut = pos + offset + split_bytes
            lines += block.count(b"\n", offset)
            pos += len(block)
    bounds = [c[0] for c in cuts[1:]] + [size]
    return [(start, end, line, end - start) for (start, line), end in zip(cuts, bounds, strict=True)]


def _parquet_ranges(uri: str, split_bytes: int) -> list[tuple[int, int, int, int]]:
    with storage.open_file(uri, "rb") as fh:
        meta = pq.ParquetFile(fh).metadata
    ranges: list[tuple[int, int, int, int]] = []
    start, first_row, row, nbytes = 0, 1, 1, 0
    for g in range(meta.num_row_groups):
        rg = meta.row_group(g)
        if nbytes and nbytes + rg.total_byte_size > split_bytes:
            ranges.append((start, g, first_row, nbytes))
            start, first_row, nbytes = g, row, 0
        nbytes += rg.total_byte_size
        row += rg.num_rows
    ranges.append((start, meta.num_row_groups, first_row, nbytes))
    return ranges


def read_split(split: Split, text_field: str = "text", id_field: str = "id") -> Iterator[Record | Bad]:
    if split.kind == "jsonl":
        yield from _read_jsonl(split, text_field, id_field)
    elif split.kind == "parquet":
        yield from _read_parquet(split, text_field, id_field)
    else:
        for uri in split.files:
            yield _read_text_file(uri)


def _read_jsonl(split: Split, text_field: str, id_field: str) -> Iterator[Record | Bad]:
    uri = split.files[0]
    compression = "gzip" if uri.lower().endswith(".gz") else None
    with storage.open_file(uri, "rb", compression=compression) as fh:
        if split.start:
            fh.seek(split.start)
        remaining = split.end - split.start if split.end >= 0 else -1
        line_no = split.first_line - 1
        for raw in fh:
            line_no += 1
            if remaining >= 0:
                if remaining <= 0:
                    break
                remaining -= len(raw)
            raw = raw.rstrip(b"\r\n")
            if not raw.strip():
                continue
            yield parse_json_record(raw, uri, line_no, text_field, id_field)


def parse_json_record(raw: bytes, uri: str, line: int, text_field: str, id_field: str) -> Record | Bad:
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return Bad(uri, line, f"invalid_utf8: {err}", raw)
    try:
        obj = json.loads(decoded)
    except json.JSONDecodeError as err:
        return Bad(uri, line, f"invalid_json: {err}", raw)
    return record_from_object(obj, raw, uri, line, text_field, id_field)


def record_from_object(
    obj: object, raw: bytes, uri: str, line: int, text_field: str, id_field: str
) -> Record | Bad:
    if not isinstance(obj, dict):
        return Bad(uri, line, f"not_an_object: a JSON {type(obj).__name__}, expected an object", raw)
    if text_field not in obj or obj[text_field] is None:
        return Bad(uri, line, f"missing_text: no '{text_field}' field", raw)
    text = obj[text_field]
    if not isinstance(text, str):
        return Bad(uri, line, f"text_not_string: '{text_field}' is a {type(text).__name__}", raw)
    raw_id = obj.get(id_field)
    doc_id = str(raw_id) if isinstance(raw_id, str | int) and not isinstance(raw_id, bool) else None
    meta = {k: v for k, v in obj.items() if k not in (text_field, id_field)}
    return Record(
        id=doc_id if doc_id else default_id(uri, line),
        text=text,
        source=uri,
        meta=json.dumps(meta, ensure_ascii=False, sort_keys=True, default=str) if meta else None,
        line=line,
    )


def _read_parquet(split: Split, text_field: str, id_field: str) -> Iterator[Record | Bad]:
    uri = split.files[0]
    with storage.open_file(uri, "rb") as fh:
        pf = pq.ParquetFile(fh)
        row = split.first_line
        for batch in pf.iter_batches(row_groups=list(range(split.start, split.end)), batch_size=4096):
            for obj in batch.to_pylist():
                raw = json.dumps(obj, ensure_ascii=False, default=str).encode("utf-8")
                yield record_from_object(obj, raw, uri, row, text_field, id_field)
                row += 1


def _read_text_file(uri: str) -> Record | Bad:
    raw = storage.read_bytes(uri)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return Bad(uri, 1, f"invalid_utf8: {err}", raw)
    return Record(id=default_id(uri, 1), text=text, source=uri, meta=None, line=1)
