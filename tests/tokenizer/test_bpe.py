"""``nexus tokenizer train``: a byte-level BPE tokenizer that plain transformers loads."""

from __future__ import annotations

import hashlib
import json

import pytest
from transformers import AutoTokenizer

from nexus_llm.tokenizer.bpe import load_encoder, run_tokenizer_train
from nexus_llm.tokenizer.config import TokenizerConfig
from support.stories import story_texts, write_curated
from support.tiny import TINY_TEXTS


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("bpe")
    data = write_curated(root / "curated", TINY_TEXTS + story_texts(50), parts=2)
    manifest = run_tokenizer_train(TokenizerConfig(vocab_size=400), str(data), str(root / "tok"))
    return data, root / "tok", manifest


def test_loads_with_autotokenizer_and_round_trips_any_text(trained):
    _, tok_dir, manifest = trained
    tok = AutoTokenizer.from_pretrained(tok_dir)
    assert len(tok) == manifest["vocab_size"] == 400
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    for text in ["The quick brown fox.", "  spaces\tand\nnewlines  ", "Ünïcödé ✓ 日本語 🙂", ""]:
        assert tok.decode(tok(text).input_ids) == text


def test_chat_template_is_saved(trained):
    tok = AutoTokenizer.from_pretrained(trained[1])
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt == "<|bos|><|user|>\nhi<|eos|>\n<|assistant|>\n"


def test_manifest_records_tokenizer_hash_and_input_digest(trained):
    data, tok_dir, manifest = trained
    assert (
        manifest["tokenizer_sha256"] == hashlib.sha256((tok_dir / "tokenizer.json").read_bytes()).hexdigest()
    )
    assert (
        manifest["input"]["manifest_sha256"]
        == hashlib.sha256((data / "manifest.json").read_bytes()).hexdigest()
    )
    assert manifest["input"]["documents"] == len(TINY_TEXTS) + 50
    assert manifest["settings"]["vocab_size"] == 400


def test_literal_special_token_text_encodes_as_ordinary_text(trained):
    enc = load_encoder(str(trained[1]))
    ids = enc.encode("end <|eos|> of <|bos|><|pad|>", add_special_tokens=False).ids
    assert not {0, 1, 2} & set(ids)
    assert enc.decode(ids, skip_special_tokens=False) == "end <|eos|> of <|bos|><|pad|>"


def test_special_tokens_must_be_distinct():
    with pytest.raises(ValueError, match="distinct"):
        TokenizerConfig(eos_token="<|pad|>")


def test_missing_curated_manifest_is_a_clear_error(tmp_path):
    (tmp_path / "part-00000.parquet").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="nexus data prepare"):
        run_tokenizer_train(TokenizerConfig(), str(tmp_path), str(tmp_path / "tok"))


def test_an_interrupted_rerun_never_leaves_the_old_manifest(tmp_path, monkeypatch):
    from nexus_llm import storage

    data = write_curated(tmp_path / "curated", story_texts(30))
    out = tmp_path / "tok"
    first = run_tokenizer_train(TokenizerConfig(vocab_size=300), str(data), str(out))
    (out / "stale.json").write_text("{}")  # written by an older version, listed in its manifest
    (out / "manifest.json").write_text(json.dumps({**first, "files": [*first["files"], "stale.json"]}))

    def killed(*_args, **_kwargs):
        raise KeyboardInterrupt("killed while uploading")

    monkeypatch.setattr(storage, "upload_dir", killed)
    with pytest.raises(KeyboardInterrupt):
        run_tokenizer_train(TokenizerConfig(vocab_size=320), str(data), str(out))
    assert not (out / "manifest.json").exists() and not (out / "stale.json").exists()
    monkeypatch.undo()
    second = run_tokenizer_train(TokenizerConfig(vocab_size=320), str(data), str(out))
    assert second["vocab_size"] == 320 and (out / "manifest.json").exists()
    assert sorted(p.name for p in out.iterdir()) == sorted([*second["files"], "manifest.json"])
