"""`nexus eval` with the model, the held-out tokens and the output on a real S3 endpoint (SeaweedFS)."""

from __future__ import annotations

import json
import uuid

import pytest

from nexus_llm import storage
from nexus_llm.eval.config import EvalConfig
from nexus_llm.eval.run import run_eval

pytestmark = pytest.mark.s3

_BUCKET = f"eval-{uuid.uuid4().hex[:8]}"


def _workspace(s3_env) -> str:
    """A fresh prefix in this module's one bucket (SeaweedFS gives every bucket volumes of its own, and
    the test server has few to give)."""
    fs, _ = storage.get_fs(f"s3://{_BUCKET}")
    if not fs.exists(_BUCKET):
        s3_env.create_bucket(_BUCKET)
    return f"s3://{_BUCKET}/{uuid.uuid4().hex[:8]}"


def _upload(ws: str, model_dir, token_dir) -> None:
    fs, _ = storage.get_fs(ws)
    fs.put(str(model_dir) + "/", f"{ws[5:]}/model/", recursive=True)
    fs.put(str(token_dir) + "/", f"{ws[5:]}/tokens/", recursive=True)


def test_model_data_and_output_on_s3_give_the_local_figures(
    s3_env, tmp_path, monkeypatch, tiny_model_dir, token_dir, eval_run
):
    monkeypatch.setenv("NEXUS_CACHE", str(tmp_path / "cache"))
    ws = _workspace(s3_env)
    _upload(ws, tiny_model_dir, token_dir)
    manifest = run_eval(EvalConfig(prompts=["Hi"], max_new_tokens=2), f"{ws}/model", f"{ws}/eval")
    local = json.loads((eval_run[0] / "results.json").read_text())
    remote = storage.read_json(f"{ws}/eval/results.json")
    assert manifest["data"] == f"{ws}/tokens"  # found beside the model, as in a workspace
    assert remote["perplexity"] == pytest.approx(local["perplexity"], rel=1e-6)
    assert remote["bits_per_byte"] == pytest.approx(local["bits_per_byte"], rel=1e-6)
    assert storage.exists(f"{ws}/eval/report.html") and storage.exists(f"{ws}/eval/manifest.json")
    assert remote["model_digest"] == local["model_digest"]  # the cached download is the same model


def test_a_model_retrained_into_the_same_uri_is_evaluated_anew(
    s3_env, tmp_path, monkeypatch, tiny_model_dir, token_dir
):
    """The cached download is keyed by the remote files, not the URI: new weights, new download, new digest."""
    import shutil

    from safetensors.torch import load_file, save_file

    from nexus_llm.eval.model import local_model_dir, model_digest

    monkeypatch.setenv("NEXUS_CACHE", str(tmp_path / "cache"))
    ws = _workspace(s3_env)
    _upload(ws, tiny_model_dir, token_dir)
    model_uri, cfg = f"{ws}/model", EvalConfig(prompts=[])
    first = run_eval(cfg, model_uri, f"{ws}/eval")

    retrained = tmp_path / "retrained"  # the same files, other weights: what a retrain writes
    shutil.copytree(tiny_model_dir, retrained)
    weights = load_file(retrained / "model.safetensors")
    save_file({k: v * 1.5 for k, v in weights.items()}, retrained / "model.safetensors", {"format": "pt"})
    fs, _ = storage.get_fs(ws)
    fs.put_file(str(retrained / "model.safetensors"), f"{ws[5:]}/model/model.safetensors")
    second = run_eval(cfg, model_uri, f"{ws}/eval")

    assert second["model_digest"] == model_digest(retrained) != first["model_digest"]
    assert abs(second["perplexity"] - first["perplexity"]) > 1e-3 * first["perplexity"]
    assert storage.read_json(f"{ws}/eval/results.json")["model_digest"] == second["model_digest"]
    assert local_model_dir(model_uri) == local_model_dir(model_uri)  # unchanged: no new download
    assert len(list((tmp_path / "cache" / "models").iterdir())) == 2


def test_an_s3_prefix_without_config_json_is_a_clear_error(s3_env, tmp_path, monkeypatch):
    from nexus_llm.eval.errors import EvalError

    monkeypatch.setenv("NEXUS_CACHE", str(tmp_path / "cache"))
    ws = _workspace(s3_env)
    storage.write_text_atomic(f"{ws}/model/README.md", "not a model")
    with pytest.raises(EvalError, match=r"has no config\.json"):
        run_eval(EvalConfig(), f"{ws}/model", f"{ws}/eval")
    assert not (tmp_path / "cache").exists()
