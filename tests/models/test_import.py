"""``nexus model import``/``info``: Hugging Face directories, model.tar.gz, s3:// and GGUF; bad sources."""

from __future__ import annotations

import json
import tarfile

import pytest
from typer.testing import CliRunner

from nexus_llm.cli import app
from nexus_llm.models.errors import ModelError
from nexus_llm.models.importer import import_model
from nexus_llm.models.info import model_info


def _assert_normalized(out, source_kind):
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "model.import" and manifest["source"]["kind"] == source_kind
    assert manifest["source"]["digest"].startswith("sha256:")
    assert (out / "model.safetensors").exists() and (out / "generation_config.json").exists()
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    return manifest


def test_a_hugging_face_directory_is_normalized_and_loads_with_plain_transformers(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "imported"
    manifest = import_model(str(tiny_model_dir), str(out), dtype="float32")
    _assert_normalized(out, "hf")
    info = manifest["info"]
    assert info["architecture"] == "LlamaForCausalLM" and info["layers"] == 2 and info["chat_template"]
    assert info["dtype"] == "float32" and info["context_length"] == 256
    original = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert info["parameters"] == sum(p.numel() for p in original.parameters())
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.chat_template and tok.model_max_length == 256
    for a, b in zip(original.parameters(), model.parameters(), strict=True):
        assert (a == b).all()


def test_dtype_conversion_and_the_info_command(tiny_model_dir, tmp_path):
    out = tmp_path / "bf16"
    result = CliRunner().invoke(
        app, ["model", "import", str(tiny_model_dir), "-o", str(out), "--dtype", "bfloat16"]
    )
    assert result.exit_code == 0, result.output
    assert model_info(str(out))["dtype"] == "bfloat16"
    shown = CliRunner().invoke(app, ["model", "info", str(out), "--json"])
    assert (
        shown.exit_code == 0 and json.loads(shown.stdout)["vocab_size"] == model_info(str(out))["vocab_size"]
    )


def test_a_sagemaker_model_tarball_is_unpacked(tiny_model_dir, tmp_path):
    tarball = tmp_path / "model.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        for f in tiny_model_dir.iterdir():
            tar.add(f, arcname=f.name)
    out = tmp_path / "from-tar"
    manifest = import_model(str(tarball), str(out))
    assert _assert_normalized(out, "hf")["source"]["uri"] == str(tarball)
    assert manifest["info"]["layers"] == 2


@pytest.mark.s3
def test_an_s3_prefix_is_downloaded_and_the_output_can_be_s3(tiny_model_dir, s3_env, tmp_path):
    from nexus_llm import storage

    src = "s3://models-in/tiny"
    s3_env.create_bucket("models-in")
    storage.upload_dir(str(tiny_model_dir), src)
    out = tmp_path / "from-s3"
    assert import_model(src, str(out))["source"]["kind"] == "hf"
    s3_env.create_bucket("models-out")
    import_model(str(out), "s3://models-out/tiny")
    assert storage.read_json("s3://models-out/tiny/manifest.json")["stage"] == "model.import"


def test_bad_sources_say_what_is_wrong(tiny_model_dir, tmp_path):
    corrupt = tmp_path / "broken.gguf"
    corrupt.write_bytes(b"NOTAGGUF" + b"\0" * 100)
    with pytest.raises(ModelError, match="not a GGUF file"):
        import_model(str(corrupt), str(tmp_path / "o1"))
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(b"GGUF" + b"\3\0\0\0" + b"\0" * 20)
    with pytest.raises(ModelError, match="cannot read the GGUF file"):
        import_model(str(truncated), str(tmp_path / "o2"))
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    with pytest.raises(ModelError, match="no weights"):
        import_model(str(no_weights), str(tmp_path / "o3"))
    with pytest.raises(ModelError, match="does not exist"):
        import_model(str(tmp_path / "missing"), str(tmp_path / "o4"))
    with pytest.raises(ModelError, match="--dtype"):
        import_model(str(tiny_model_dir), str(tmp_path / "o5"), dtype="int3")
    result = CliRunner().invoke(app, ["model", "import", str(no_weights), "-o", str(tmp_path / "o6")])
    assert result.exit_code != 0 and not (tmp_path / "o6" / "manifest.json").exists()


def test_another_stages_output_is_refused(tiny_model_dir, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"stage": "train"}))
    with pytest.raises(ModelError, match="holds the output of `train`"):
        import_model(str(tiny_model_dir), str(out))


@pytest.mark.slow
def test_the_smollm2_gguf_imports_and_answers_the_france_question(smollm2_dir):
    """The real model: plain transformers loads the imported directory and, greedy, answers with Paris."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    manifest = json.loads((smollm2_dir / "manifest.json").read_text())
    assert manifest["source"]["kind"] == "gguf" and manifest["info"]["parameters"] == 134_515_008
    assert manifest["info"]["chat_template"] and manifest["info"]["context_length"] == 8192
    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(ids["input_ids"], max_new_tokens=20, do_sample=False)
    answer = tok.decode(out[0][ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer, answer
