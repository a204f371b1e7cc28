"""Model resolution: local directories are checked early; s3:// models are cached and re-fetched on change."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from nexus_llm import storage
from nexus_llm.models.loading import resolve_model
from nexus_llm.serve.engine.loading import check_model_dir, load_model


def test_a_directory_without_config_is_refused_with_a_hint(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        check_model_dir(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_model_dir(str(tmp_path / "nope"))


def test_local_model_loads_with_context_and_special_ids(tiny_model_dir):
    lm = load_model(str(tiny_model_dir), threads=1)
    assert lm.context_length == 256 and lm.eos_ids == {lm.tokenizer.eos_token_id}
    assert lm.vocab_size >= len(lm.tokenizer) and lm.pad_id == lm.tokenizer.pad_token_id


@pytest.mark.s3
def test_s3_model_is_downloaded_once_and_again_when_it_changes(s3_env, tiny_model_dir, tmp_path):
    bucket = s3_env.create_bucket(f"serve-{uuid.uuid4().hex[:8]}")
    fs, _ = storage.get_fs(bucket)
    fs.put(str(tiny_model_dir) + "/", f"{bucket[5:]}/model/", recursive=True)
    uri = f"{bucket}/model"
    first = Path(resolve_model(uri, str(tmp_path)))
    check_model_dir(str(first))
    assert (first / "model.safetensors").read_bytes() == (tiny_model_dir / "model.safetensors").read_bytes()
    assert resolve_model(uri, str(tmp_path)) == str(first)  # cached
    fs.pipe_file(f"{bucket[5:]}/model/generation_config.json", b'{"eos_token_id": 2, "changed": true}')
    second = Path(resolve_model(uri, str(tmp_path)))
    assert second != first and b"changed" in (second / "generation_config.json").read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".download-")]
