"""``nexus data tokenize``: packed shards that decode back to the documents, split by id."""

from __future__ import annotations

import hashlib

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
    root, _, texts = corpus
    other = write_curated(tmp_path / "one-part", texts, parts=1)
    a = run_tokenize(
        TokenizeConfig(val_fraction=0.3, batch_rows=7), str(other), str(root / "tok"), str(tmp_path / "a")
    )
    b = run_tokenize(
        TokenizeConfig(val_fraction=0.3, batch_rows=64, threads=1),
        str(other),
        str(root / "tok"),
        str(tmp_path / "b"),
    )
    for split in shards.SPLITS:
        assert a["splits"][split]["tokens"] == b["splits"][split]["tokens"]
        for fa, fb in zip(a["splits"][split]["files"], b["splits"][split]["files"], strict=True):
            assert (tmp_path / "a" / fa).read_bytes() == (tmp_path / "b" / fb).read_bytes()


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
