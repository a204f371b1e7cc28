"""Chat data for SFT: validation and quarantine, assistant-only loss masks, chat shards beside the text."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nexus_llm.configbase import ConfigError
from nexus_llm.tokenizer.chat import BadRecord, encode_conversation, parse_record, read_chat_split
from nexus_llm.tokenizer.config import TokenizeConfig
from nexus_llm.tokenizer.encode import run_tokenize
from support.stories import story_texts, write_curated

GOOD = [
    {"id": f"c{i}", "messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                                 {"role": "assistant", "content": f"It is {2 * i}."}]}
    for i in range(40)
]  # fmt: skip
BAD_LINES = [
    b"{not json",
    b'{"messages": "hello"}',
    b'{"messages": [{"role": "user", "content": "only a question"}]}',
    b'{"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}]}',
    b'{"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "y"}]}',
    b"[1, 2]",
]


def _tokenizer(model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


@pytest.mark.parametrize(
    ("line", "reason"),
    list(zip(BAD_LINES, ["not valid JSON", "no 'messages' list", "no assistant turn", "role is 'robot'",
                         "content must be a string", "must be a JSON object"], strict=True)),
)  # fmt: skip
def test_bad_records_say_why(line, reason):
    with pytest.raises(BadRecord, match=reason):
        parse_record(line)


def test_the_mask_covers_assistant_turns_only(tiny_model_dir):
    tok = _tokenizer(tiny_model_dir)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello there"},
        {"role": "assistant", "content": "Hi!"},
        {"role": "user", "content": "And now?"},
        {"role": "assistant", "content": "Bye."},
    ]
    ids, mask = encode_conversation(tok, messages)
    assert len(ids) == len(mask) and set(mask) == {0, 1}
    learned = tok.decode([t for t, m in zip(ids, mask, strict=True) if m])
    prompt = tok.decode([t for t, m in zip(ids, mask, strict=True) if not m])
    assert "Hi!" in learned and "Bye." in learned and tok.eos_token in learned  # the turn's end is learned
    for text in ("Be brief.", "Hello there", "And now?", "<|user|>", "<|assistant|>"):
        assert text in prompt and text not in learned


def test_a_template_that_cannot_render_is_reported_per_record(tiny_model_dir):
    tok = _tokenizer(tiny_model_dir)
    tok.chat_template = (
        "{% if messages[0]['role'] != 'user' %}{{ raise_exception('user first') }}{% endif %}x"
    )
    with pytest.raises(BadRecord, match="cannot render"):
        encode_conversation(tok, [{"role": "assistant", "content": "hi"}])


@pytest.fixture(scope="module")
def chat_tokens(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("chat")
    data = write_curated(root / "curated", story_texts(60, seed=2))
    chat = root / "chat.jsonl"
    chat.write_bytes(b"\n".join([json.dumps(r).encode() for r in GOOD] + BAD_LINES) + b"\n")
    cfg = TokenizeConfig(val_fraction=0.1, chat_inputs=[str(chat)], chat_val_fraction=0.2)
    meta = run_tokenize(cfg, str(data), str(tiny_model_dir), str(root / "tokens"))
    return root / "tokens", meta


def test_chat_records_are_encoded_beside_the_text_and_bad_ones_quarantined(chat_tokens):
    tokens, meta = chat_tokens
    chat = meta["chat"]
    assert chat["records_in"] == len(GOOD) + len(BAD_LINES) and chat["quarantined"] == len(BAD_LINES)
    examples = chat["splits"]["train"]["examples"] + chat["splits"]["val"]["examples"]
    assert examples == len(GOOD) and chat["splits"]["val"]["examples"] > 0
    quarantine = [json.loads(x) for x in (tokens / chat["quarantine"]).read_text().splitlines()]
    assert [q["line"] for q in quarantine] == list(range(len(GOOD) + 1, len(GOOD) + len(BAD_LINES) + 1))
    assert all(q["error"] and q["raw"] for q in quarantine)
    ids, mask, starts = read_chat_split(str(tokens), "train", meta)
    assert len(ids) == len(mask) == starts[-1] and mask.sum() == chat["splits"]["train"]["target_tokens"]
    assert meta["splits"]["train"]["documents"] > 0  # the text is tokenized as before


def test_chat_data_changes_the_tokens_identity(chat_tokens, tmp_path, tiny_model_dir):
    from nexus_llm.tokenizer import shards

    tokens, meta = chat_tokens
    plain = run_tokenize(TokenizeConfig(val_fraction=0.1), str(tokens.parent / "curated"), str(tiny_model_dir),
                         str(tmp_path / "plain"))  # fmt: skip
    assert plain["chat"] is None and shards.content_digest(plain) != shards.content_digest(meta)


def test_missing_chat_files_and_a_model_without_template_fail_before_any_work(tmp_path, tiny_model_dir):
    import shutil

    data = write_curated(tmp_path / "curated", story_texts(5, seed=3))
    with pytest.raises(ConfigError, match=r"chat_inputs: input .* does not exist"):
        run_tokenize(TokenizeConfig(chat_inputs=[str(tmp_path / "none.jsonl")]), str(data), str(tiny_model_dir),
                     str(tmp_path / "t1"))  # fmt: skip
    assert not (tmp_path / "t1" / "manifest.json").exists()
    no_template = tmp_path / "no-template"
    shutil.copytree(tiny_model_dir, no_template)
    cfg_file = no_template / "tokenizer_config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg.pop("chat_template", None)
    cfg_file.write_text(json.dumps(cfg))
    (no_template / "chat_template.jinja").unlink(missing_ok=True)
    chat = tmp_path / "chat.jsonl"
    chat.write_text(json.dumps(GOOD[0]) + "\n")
    with pytest.raises(ConfigError, match=r"needs a chat template"):
        run_tokenize(
            TokenizeConfig(chat_inputs=[str(chat)]), str(data), str(no_template), str(tmp_path / "t2")
        )


def test_only_bad_chat_records_is_an_error(tmp_path, tiny_model_dir):
    data = write_curated(tmp_path / "curated", story_texts(5, seed=3))
    chat = tmp_path / "bad.jsonl"
    chat.write_bytes(b"\n".join(BAD_LINES))
    with pytest.raises(ConfigError, match="none of the 6 chat records"):
        run_tokenize(
            TokenizeConfig(chat_inputs=[str(chat)]), str(data), str(tiny_model_dir), str(tmp_path / "t")
        )


def test_a_narrow_token_type_for_a_large_vocabulary_is_refused():
    from nexus_llm.tokenizer.shards import dtype_for_vocab

    assert dtype_for_vocab(49_152) == np.uint16 and dtype_for_vocab(128_256) == np.uint32
    with pytest.raises(ConfigError, match="uint16 holds ids below 65,536"):
        dtype_for_vocab(128_256, "uint16")
    with pytest.raises(ConfigError, match="does not fit"):
        dtype_for_vocab(5_000_000_000)
