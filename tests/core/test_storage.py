"""Storage helpers: atomic writes, manifests, fingerprints, moves."""

from __future__ import annotations

import pytest

from nexus_llm import storage


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    target = tmp_path / "d" / "f.json"
    storage.write_json_atomic(str(target), {"a": 1})
    storage.write_json_atomic(str(target), {"a": 2})
    assert storage.read_json(str(target)) == {"a": 2}
    assert [p.name for p in target.parent.iterdir()] == ["f.json"]


def test_manifest_marks_completion(tmp_path):
    assert storage.read_manifest(str(tmp_path)) is None
    storage.write_manifest(str(tmp_path), {"stage": "x"})
    assert storage.read_manifest(str(tmp_path)) == {"stage": "x"}


def test_fingerprint_follows_content_not_time(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"same")
    b.write_bytes(b"same")
    assert storage.fingerprint(str(a)) == storage.fingerprint(str(b))
    b.write_bytes(b"different")
    assert storage.fingerprint(str(a)) != storage.fingerprint(str(b))


def test_join_and_move(tmp_path):
    assert storage.join("s3://bucket/prefix", "a", "b.json") == "s3://bucket/prefix/a/b.json"
    src = tmp_path / "x.txt"
    src.write_text("hi")
    storage.move(str(src), str(tmp_path / "sub" / "y.txt"))
    assert (tmp_path / "sub" / "y.txt").read_text() == "hi" and not src.exists()


def test_claim_output_refuses_another_stage_and_removes_the_manifest_first(tmp_path):
    out = str(tmp_path / "out")
    storage.write_manifest(out, {"stage": "eval"})
    with pytest.raises(ValueError, match=r"holds the output of `eval`, not tokens"):
        storage.claim_output(out, "tokenize", "tokens")
    assert storage.read_manifest(out) == {"stage": "eval"}  # refused: nothing touched
    storage.write_manifest(out, {"stage": "tokenize", "files": ["a.bin"]})
    assert storage.claim_output(out, "tokenize", "tokens")["files"] == ["a.bin"]
    assert storage.read_manifest(out) is None
    assert storage.claim_output(str(tmp_path / "new"), "tokenize", "tokens") == {}
