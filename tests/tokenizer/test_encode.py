"""``nexus data tokenize``: packed shards that decode back to the documents, split by id."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
from typer.testing import CliRunner

from nexus_llm.cli import app
from nexus_llm.tokenizer import shards
from nexus_llm.tokenizer.bpe import run_tokenizer_train
from nexus_llm.tokenizer.config import TokenizeConfig, TokenizerConfig
from nexus_llm.tokenizer.encode import run_tokenize
from support.stories import story_texts, write_curated

TRICKY = ["a document that says <|eos|> in its text", "Ünïcödé ✓ 🙂 and\nnewlines", ""]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("encode")
    texts = story_texts(200, seed=1) + TRICKY
    data = write_curated(root / "curated", texts, parts=3)
    run_tokenizer_train(TokenizerConfig(vocab_size=350), str(data), str(root / "tok"))
    return root, data, texts


def _decode_split(tokens_dir, meta, split):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokens_dir / "tokenizer" / "tokenizer.json"))
    flat = np.concatenate(
        [np.asarray(a) for a in shards.iter_split(str(tokens_dir), split, meta)] or [np.array([])]
    )
    return [
        tok.decode(d.tolist(), skip_special_tokens=False)
        for d in shards.split_documents(flat, meta["eos_token_id"])
    ]


def test_shards_decode_back_to_the_documents_in_their_split(corpus):
    root, data, texts = corpus
    cfg = TokenizeConfig(val_fraction=0.2, shard_tokens=1024, batch_rows=16)
    meta = run_tokenize(cfg, str(data), str(root / "tok"), str(root / "tokens"))
    assert meta == shards.read_meta(str(root / "tokens"))
    ids = [f"doc-{i:06d}" for i in range(len(texts))]
    for split in shards.SPLITS:
        want = [t for i, t in zip(ids, texts, strict=True) if t and shards.split_of(i, 0.2) == split]
        assert _decode_split(root / "tokens", meta, split) == want
        assert meta["splits"][split]["documents"] == len(want)
        assert meta["splits"][split]["bytes"] == sum(len(t.encode()) for t in want)
    assert meta["skipped_empty_documents"] == 1
    assert meta["dtype"] == "uint16" and meta["vocab_size"] == 350
    train = meta["splits"]["train"]
    assert len(train["files"]) == -(-train["tokens"] // 1024) > 1
    assert all((root / "tokens" / f).stat().st_size == 2 * 1024 for f in train["files"][:-1])


def test_literal_eos_in_text_does_not_split_a_document(corpus):
    root, data, _ = corpus
    meta = run_tokenize(TokenizeConfig(val_fraction=0.0), str(data), str(root / "tok"), str(root / "t2"))
    flat = np.concatenate(list(shards.iter_split(str(root / "t2"), "train", meta)))
    assert int((flat == meta["eos_token_id"]).sum()) == meta["splits"]["train"]["documents"] == 202
    assert meta["splits"]["val"] == {"files": [], "tokens": 0, "documents": 0, "bytes": 0}


def test_split_is_independent_of_batching_and_part_layout(corpus, tmp_path):
    root, data, texts = corpus
    assert len(list(data.glob("part-*.parquet"))) == 3
    one_part = write_curated(tmp_path / "one-part", texts, parts=1)
    a = run_tokenize(TokenizeConfig(val_fraction=0.3, batch_rows=7, shard_tokens=1024),
                     str(data), str(root / "tok"), str(tmp_path / "a"))  # fmt: skip
    b = run_tokenize(TokenizeConfig(val_fraction=0.3, batch_rows=64, threads=1, shard_tokens=1024),
                     str(one_part), str(root / "tok"), str(tmp_path / "b"))  # fmt: skip
    for split in shards.SPLITS:
        assert a["splits"][split] == b["splits"][split]
        assert a["splits"][split]["files"]
        for rel in a["splits"][split]["files"]:
            assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    # the same tokens, made from another input layout with other threads and timings: one identity
    assert a["input"]["uri"] != b["input"]["uri"] and a["settings"] != b["settings"]
    assert shards.content_digest(a) == shards.content_digest(b)


def test_content_digest_ignores_timings_and_locations_but_not_content(corpus, tmp_path):
    root, data, _ = corpus
    cfg = TokenizeConfig(val_fraction=0.2)
    a = run_tokenize(cfg, str(data), str(root / "tok"), str(tmp_path / "a"))
    b = run_tokenize(cfg, str(data), str(root / "tok"), str(tmp_path / "b"))
    timing = ("seconds", "tokens_per_second", "bytes_per_second")
    b.update({k: b[k] * 3 + 1 for k in timing}, tokenizer={**b["tokenizer"], "uri": "s3://elsewhere/tok"})
    assert [a[k] for k in timing] != [b[k] for k in timing]
    assert shards.content_digest(a) == shards.content_digest(b)
    other = run_tokenize(TokenizeConfig(val_fraction=0.3), str(data), str(root / "tok"), str(tmp_path / "c"))
    assert shards.content_digest(other) != shards.content_digest(a)
    changed = {**a, "splits": {**a["splits"], "val": {**a["splits"]["val"], "tokens": 1}}}
    assert shards.content_digest(changed) != shards.content_digest(a)


def test_a_rerun_leaves_no_stale_shards_and_can_reuse_its_tokenizer_copy(corpus, tmp_path, monkeypatch):
    root, data, _ = corpus
    out = tmp_path / "tokens"
    run_tokenize(TokenizeConfig(val_fraction=0.2, shard_tokens=1024), str(data), str(root / "tok"), str(out))
    (out / "train" / "shard-00042.bin").write_bytes(b"old")
    (out / "train" / "shard-00099.bin.partial").write_bytes(b"interrupted")
    monkeypatch.delenv("RAYON_NUM_THREADS", raising=False)
    copy = out / "tokenizer"
    meta = run_tokenize(TokenizeConfig(val_fraction=0.2, threads=2), str(data), str(copy), str(out))
    for split in shards.SPLITS:
        on_disk = sorted(f"{split}/{p.name}" for p in (out / split).iterdir())
        assert on_disk == meta["splits"][split]["files"] == [f"{split}/shard-00000.bin"]
    assert (copy / "tokenizer.json").read_bytes() == (root / "tok" / "tokenizer.json").read_bytes()
    assert "RAYON_NUM_THREADS" not in os.environ  # the thread setting did not leak into the process


def test_a_directory_without_its_manifest_is_incomplete(corpus, tmp_path):
    root, data, _ = corpus
    run_tokenize(TokenizeConfig(), str(data), str(root / "tok"), str(tmp_path / "t"))
    (tmp_path / "t" / "manifest.json").unlink()  # as if killed after meta.json
    assert (tmp_path / "t" / "meta.json").exists()
    with pytest.raises(FileNotFoundError, match="not a complete token directory"):
        shards.read_meta(str(tmp_path / "t"))


def test_output_of_another_stage_is_never_cleared(corpus, tmp_path):
    root, _, texts = corpus
    data = write_curated(tmp_path / "curated", texts[:20], parts=2)
    (data / "manifest.json").write_text('{"stage": "data"}')
    with pytest.raises(ValueError, match=r"holds the output of `data`, not tokens"):
        run_tokenize(TokenizeConfig(), str(data), str(root / "tok"), str(data))
    assert len(list(data.glob("part-*.parquet"))) == 2 and (data / "manifest.json").exists()


def test_meta_records_tokenizer_identity_and_input_digest(corpus, tmp_path):
    root, data, _ = corpus
    meta = run_tokenize(TokenizeConfig(), str(data), str(root / "tok"), str(tmp_path / "t"))
    tok_hash = hashlib.sha256((root / "tok" / "tokenizer.json").read_bytes()).hexdigest()
    assert meta["tokenizer"]["sha256"] == tok_hash
    assert (tmp_path / "t" / "tokenizer" / "tokenizer.json").read_bytes() == (
        root / "tok" / "tokenizer.json"
    ).read_bytes()
    assert (
        meta["input"]["manifest_sha256"] == hashlib.sha256((data / "manifest.json").read_bytes()).hexdigest()
    )
    assert (tmp_path / "t" / "manifest.json").exists()


def test_cli_tokenizer_train_and_tokenize(tmp_path):
    data = write_curated(tmp_path / "curated", story_texts(40))
    runner = CliRunner()
    res = runner.invoke(
        app, ["tokenizer", "train", str(data), "-o", str(tmp_path / "tok"), "--vocab-size", "320"]
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app,
        ["data", "tokenize", str(data), "--tokenizer", str(tmp_path / "tok"), "-o", str(tmp_path / "tokens")],
    )
    assert res.exit_code == 0, res.output
    assert shards.read_meta(str(tmp_path / "tokens"))["splits"]["train"]["documents"] > 30


def test_cli_reports_a_missing_tokenizer_without_traceback(tmp_path):
    import subprocess
    import sys

    data = write_curated(tmp_path / "curated", story_texts(5))
    cmd = [
        sys.executable,
        "-m",
        "nexus_llm.cli",
        "data",
        "tokenize",
        str(data),
        "--tokenizer",
        str(tmp_path / "none"),
        "-o",
        str(tmp_path / "t"),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "nexus tokenizer train" in res.stderr and "Traceback" not in res.stderr


def test_a_model_directory_as_tokenizer_copies_only_the_tokenizer_files(corpus, tmp_path):
    root, data, _ = corpus
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    for name in os.listdir(root / "tok"):
        (model_dir / name).write_bytes((root / "tok" / name).read_bytes())
    (model_dir / "model.safetensors").write_bytes(b"\0" * 4096)  # stands in for the weights
    run_tokenize(TokenizeConfig(), str(data), str(model_dir), str(tmp_path / "tokens"))
    copied = set(os.listdir(tmp_path / "tokens" / "tokenizer"))
    assert "tokenizer.json" in copied and "model.safetensors" not in copied
