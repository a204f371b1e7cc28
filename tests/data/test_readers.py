"""Readers: every format, files/directories/globs, line-aligned splits, quarantine reasons."""

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nexus_llm import storage
from nexus_llm.data.readers import SUFFIXES, Bad, Record, default_id, plan_splits, read_split


def records(files, split_bytes=1 << 30):
    out = []
    for split in plan_splits(files, split_bytes):
        out.extend(read_split(split))
    return out


def write_jsonl(path, rows):
    path.write_bytes(b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows))
    return str(path)


def test_jsonl_records_keep_ids_metadata_and_line_numbers(tmp_path):
    f = write_jsonl(
        tmp_path / "a.jsonl", [{"id": "x1", "text": "hello", "lang": "en"}, b"", {"text": "no id"}]
    )
    got = records([f])
    assert [(r.id, r.text, r.line) for r in got] == [("x1", "hello", 1), (default_id(f, 3), "no id", 3)]
    assert json.loads(got[0].meta) == {"lang": "en"} and got[1].meta is None


def test_malformed_lines_are_quarantined_with_reason_and_raw_bytes(tmp_path):
    rows = [
        b'{"id": 1, "text": "cut',
        b'{"text": "caf\xe9"}',
        b'{"id": 3}',
        b'{"text": 4}',
        b"[1, 2]",
        b'{"text": null}',
    ]
    got = records([write_jsonl(tmp_path / "bad.jsonl", rows)])
    assert all(isinstance(b, Bad) for b in got)
    assert [b.error.split(":")[0] for b in got] == [
        "invalid_json", "invalid_utf8", "missing_text", "text_not_string", "not_an_object", "missing_text",
    ]  # fmt: skip
    assert [b.line for b in got] == [1, 2, 3, 4, 5, 6]
    assert got[1].raw == rows[1]


def test_gzip_parquet_text_and_markdown(tmp_path):
    (tmp_path / "g.jsonl.gz").write_bytes(gzip.compress(b'{"id": "g", "text": "zipped"}\n'))
    pq.write_table(
        pa.table({"id": ["p1", "p2"], "text": ["from parquet", None], "n": [1, 2]}), tmp_path / "p.parquet"
    )
    (tmp_path / "t.txt").write_text("a whole text file\n\nis one document")
    (tmp_path / "r.md").write_bytes(b"# notes \xff")
    got = records(storage.expand([str(tmp_path)], SUFFIXES))
    by_kind = {((getattr(r, "source", None) or r.file).rsplit(".", 1)[-1], type(r).__name__) for r in got}
    assert by_kind == {
        ("gz", "Record"),
        ("parquet", "Record"),
        ("parquet", "Bad"),
        ("txt", "Record"),
        ("md", "Bad"),
    }
    parquet_good = next(r for r in got if isinstance(r, Record) and r.source.endswith(".parquet"))
    assert (parquet_good.id, json.loads(parquet_good.meta)) == ("p1", {"n": 1})
    parquet_bad = next(r for r in got if isinstance(r, Bad) and r.file.endswith(".parquet"))
    assert parquet_bad.line == 2 and parquet_bad.error.startswith("missing_text")


def test_directories_globs_and_missing_inputs(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "_work").mkdir()
    for name in ("a.jsonl", "sub/b.jsonl", "_work/c.jsonl", ".hidden.jsonl", "notes.csv"):
        (tmp_path / name).write_text('{"text": "x"}\n')
    found = storage.expand([str(tmp_path)], SUFFIXES)
    assert [p.rsplit("/", 2)[-2:] for p in found] == [[tmp_path.name, "a.jsonl"], ["sub", "b.jsonl"]]
    assert storage.expand([str(tmp_path / "*.jsonl")], SUFFIXES) == [str(tmp_path / "a.jsonl")]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        storage.expand([str(tmp_path / "nope.jsonl")], SUFFIXES)
    with pytest.raises(FileNotFoundError, match="matched no files"):
        storage.expand([str(tmp_path / "*.parquet")], SUFFIXES)


def test_large_jsonl_is_cut_at_line_boundaries_without_losing_or_repeating_lines(tmp_path):
    rows = [{"id": str(i), "text": "x" * (i % 37)} for i in range(2000)]
    rows[500] = b"not json"
    rows[1200] = b""
    f = write_jsonl(tmp_path / "big.jsonl", rows)
    splits = plan_splits([f], split_bytes=3000)
    assert len(splits) > 5
    assert sum(s.size for s in splits) == storage.size(f)
    whole = [(type(r).__name__, getattr(r, "id", None), r.line) for r in records([f])]
    cut = [(type(r).__name__, getattr(r, "id", None), r.line) for s in splits for r in read_split(s)]
    assert cut == whole
    assert len(whole) == 1999 and ("Bad", None, 501) in whole
