"""Held-out documents from token shards and from curated Parquet, with their byte counts."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from transformers import AutoTokenizer

from nexus_llm.eval.data import load_heldout
from nexus_llm.eval.errors import EvalError
from support.eval_kit import HELDOUT_TEXTS


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _expected(tok, texts):
    return [[*tok(t).input_ids, tok.eos_token_id] for t in texts]


def test_token_split_gives_every_document_with_its_eos_across_shards(token_dir, tok):
    held = load_heldout(str(token_dir), tok)
    assert len(json.loads((token_dir / "meta.json").read_text())["splits"]["val"]["files"]) > 3
    assert [d.tolist() for d in held.documents] == _expected(tok, HELDOUT_TEXTS)
    assert held.complete and held.bytes_source == "meta"
    assert held.bytes == sum(len(t.encode()) for t in HELDOUT_TEXTS)
    assert held.bytes > sum(len(t) for t in HELDOUT_TEXTS)  # non-ASCII text: bytes, not characters


def test_limit_and_max_tokens_keep_whole_documents_in_order_and_count_their_bytes(token_dir, tok):
    held = load_heldout(str(token_dir), tok, limit=2)
    assert [d.tolist() for d in held.documents] == _expected(tok, HELDOUT_TEXTS[:2])
    assert not held.complete and held.bytes_source == "decoded"
    assert held.bytes == sum(len(t.encode()) for t in HELDOUT_TEXTS[:2])
    first = len(_expected(tok, HELDOUT_TEXTS[:1])[0])
    cut = load_heldout(str(token_dir), tok, max_tokens=first + 3)
    assert [len(d) for d in cut.documents] == [first, 3]
    assert cut.tokens == first + 3 and not cut.complete


def test_curated_parquet_is_tokenized_with_the_model_tokenizer(tmp_path, tok):
    (tmp_path / "rejected").mkdir()
    pq.write_table(
        pa.table({"id": ["x"], "text": ["rejected text is never scored"]}),
        tmp_path / "rejected" / "r.parquet",
    )
    pq.write_table(pa.table({"id": ["a", "b"], "text": HELDOUT_TEXTS[:2]}), tmp_path / "part-00000.parquet")
    pq.write_table(pa.table({"id": ["c"], "text": HELDOUT_TEXTS[2:3]}), tmp_path / "part-00001.parquet")
    held = load_heldout(str(tmp_path), tok)
    assert held.kind == "curated" and held.complete and held.bytes_source == "text"
    assert [d.tolist() for d in held.documents] == _expected(tok, HELDOUT_TEXTS[:3])
    assert held.bytes == sum(len(t.encode()) for t in HELDOUT_TEXTS[:3])
    assert load_heldout(str(tmp_path), tok, limit=3).complete
    assert not load_heldout(str(tmp_path), tok, limit=2).complete


def test_tokens_from_another_tokenizer_are_refused(token_dir, tmp_path, tok):
    meta = json.loads((token_dir / "meta.json").read_text())
    meta["eos_token_id"] = 0
    other = tmp_path / "other"
    other.mkdir()
    (other / "meta.json").write_text(json.dumps(meta))
    (other / "manifest.json").write_text((token_dir / "manifest.json").read_text())
    with pytest.raises(EvalError, match="different tokenizer"):
        load_heldout(str(other), tok)


def test_a_folder_that_is_neither_format_is_refused(tmp_path, tok):
    with pytest.raises(EvalError, match="neither a token directory"):
        load_heldout(str(tmp_path), tok)


def test_a_document_split_over_shards_is_joined(tmp_path, tok):
    from support.token_shards import write_token_dir

    write_token_dir(
        tmp_path, tok, {"val": ["one document that is long enough to cross shards"]}, shard_tokens=3
    )
    held = load_heldout(str(tmp_path), tok)
    assert [d.tolist() for d in held.documents] == _expected(
        tok, ["one document that is long enough to cross shards"]
    )
    assert np.all(held.documents[0][:-1] != tok.eos_token_id)


def test_parquet_without_text_is_a_clear_error(tmp_path, tok):
    pq.write_table(pa.table({"id": ["a"], "body": ["no text column"]}), tmp_path / "part-00000.parquet")
    with pytest.raises(EvalError, match="text"):
        load_heldout(str(tmp_path), tok)


def test_reads_what_nexus_data_tokenize_writes(tmp_path, tiny_model_dir, tok):
    """The real tokenize stage's shards: the val split's documents and byte count, as from the texts."""
    from nexus_llm.tokenizer.config import TokenizeConfig
    from nexus_llm.tokenizer.encode import run_tokenize
    from nexus_llm.tokenizer.shards import split_of

    texts = HELDOUT_TEXTS * 4
    ids = [f"doc-{i}" for i in range(len(texts))]
    (tmp_path / "curated").mkdir()
    pq.write_table(pa.table({"id": ids, "text": texts}), tmp_path / "curated" / "part-00000.parquet")
    (tmp_path / "curated" / "manifest.json").write_text("{}")
    cfg = TokenizeConfig(val_fraction=0.4)
    run_tokenize(cfg, str(tmp_path / "curated"), str(tiny_model_dir), str(tmp_path / "tokens"))
    val = [t for i, t in zip(ids, texts, strict=True) if split_of(i, 0.4, cfg.split_seed) == "val"]
    held = load_heldout(str(tmp_path / "tokens"), tok)
    assert 0 < len(val) < len(texts)
    assert [d.tolist() for d in held.documents] == _expected(tok, val)
    assert held.bytes == sum(len(t.encode()) for t in val) and held.bytes_source == "meta"


def test_the_digest_of_tokens_ignores_when_they_were_made(token_dir, tmp_path, tok):
    """The same tokens written again (other timings in meta.json) are the same held-out data to compare."""
    import shutil

    again = tmp_path / "again"
    shutil.copytree(token_dir, again)
    meta = json.loads((again / "meta.json").read_text())
    (again / "meta.json").write_text(json.dumps({**meta, "seconds": 12.5, "tokens_per_second": 99.0}))
    assert load_heldout(str(again), tok).digest == load_heldout(str(token_dir), tok).digest
    meta["splits"]["val"]["bytes"] += 1  # other content: another digest
    (again / "meta.json").write_text(json.dumps(meta))
    assert load_heldout(str(again), tok).digest != load_heldout(str(token_dir), tok).digest
