"""`nexus eval MODEL -o EVALDIR` end to end: the results contract, against independent computations."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from support.eval_kit import HELDOUT_TEXTS, nexus


def plain_transformers_nll(model_dir, texts: list[str]) -> tuple[float, int]:
    """Summed NLL over the same tokens, one document per forward pass, nothing of ours involved.

    Each document is its tokens plus EOS, scored after one EOS (the tiny tokenizer adds no BOS, so
    `first_token: auto` is EOS, the separator before a document in packed training data).
    """
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    total, count = 0.0, 0
    for text in texts:
        ids = torch.tensor([[tok.eos_token_id, *tok(text).input_ids, tok.eos_token_id]])
        with torch.no_grad():
            total += model(input_ids=ids, labels=ids).loss.item() * (ids.shape[1] - 1)
        count += ids.shape[1] - 1
    return total, count


def test_perplexity_equals_plain_transformers_summed_token_nll(eval_run, tiny_model_dir):
    out, _ = eval_run
    results = json.loads((out / "results.json").read_text())
    nll, count = plain_transformers_nll(tiny_model_dir, HELDOUT_TEXTS)
    assert results["heldout"]["tokens_predicted"] == count
    assert results["perplexity"] == pytest.approx(math.exp(nll / count), rel=1e-4)


def test_bits_per_byte_is_total_nll_over_ln2_times_utf8_bytes(eval_run, tiny_model_dir):
    out, _ = eval_run
    results = json.loads((out / "results.json").read_text())
    n_bytes = sum(len(t.encode("utf-8")) for t in HELDOUT_TEXTS)
    nll, _ = plain_transformers_nll(tiny_model_dir, HELDOUT_TEXTS)
    assert results["heldout"]["bytes"] == n_bytes
    assert results["bits_per_byte"] == pytest.approx(nll / (math.log(2) * n_bytes), rel=1e-4)
    assert results["heldout"]["first_token"] == "eos"


def test_local_file_task_runs_offline_and_lands_in_results(eval_run):
    out, _ = eval_run
    task = json.loads((out / "results.json").read_text())["tasks"]["paraphrase_local"]
    assert task["samples"] == 40
    assert 0.0 <= task["metrics"]["acc"] <= 1.0 and "f1" in task["metrics"]
    assert task["higher_is_better"]["acc"] is True


def test_outputs_samples_training_summary_and_manifest_last(eval_run, tiny_model_dir, runs_dir):
    out, proc = eval_run
    results = json.loads((out / "results.json").read_text())
    assert [s["prompt"] for s in results["samples"]] == ["Once upon a time", "The quick brown fox"]
    assert all(0 < s["new_tokens"] <= 8 for s in results["samples"])
    assert results["training"]["last_step"] == 40 and results["training"]["points"] == 40
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["outputs"] == ["results.json", "report.html"]
    assert manifest["model_digest"] == results["model_digest"] and manifest["data_digest"]
    assert (out / "manifest.json").stat().st_mtime_ns >= (out / "report.html").stat().st_mtime_ns
    assert "perplexity" in proc.stderr and "Traceback" not in proc.stderr


def test_quick_run_with_limit_and_max_tokens(tmp_path, tiny_model_dir, token_dir):
    """The laptop check: a couple of documents, no tasks, one short sample, found beside the model."""
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "model").symlink_to(tiny_model_dir)
    (workspace / "tokens").symlink_to(token_dir)
    proc = nexus(
        "eval", str(workspace / "model"), "-o", str(tmp_path / "quick"),
        "--limit", "3", "--max-tokens", "40", "--max-new-tokens", "2", "--prompt", "Hi",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    results = json.loads((tmp_path / "quick" / "results.json").read_text())
    assert results["heldout"]["source"] == str(workspace / "tokens")
    assert results["heldout"]["tokens_predicted"] == 40 and not results["heldout"]["complete"]
    assert results["tasks"] == {} and results["training"] is None


def test_missing_dataset_gives_a_clear_error_without_traceback(tmp_path, tiny_model_dir):
    env = {
        "HF_DATASETS_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_DATASETS_CACHE": str(tmp_path / "ds"),
    }
    proc = nexus(
        "eval", str(tiny_model_dir), "-o", str(tmp_path / "out"), "--no-perplexity", "--task", "mrpc", env=env
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "task 'mrpc' needs the Hugging Face dataset 'nyu-mll/glue' (config 'mrpc')" in proc.stderr
    assert "--task-data mrpc=" in proc.stderr
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_missing_held_out_data_and_bad_values_are_clear_errors(tmp_path, tiny_model_dir):
    proc = nexus("eval", str(tiny_model_dir), "-o", str(tmp_path / "out"))
    assert proc.returncode == 2 and "no held-out data" in proc.stderr and "Traceback" not in proc.stderr
    proc = nexus("eval", str(tmp_path / "nope"), "-o", str(tmp_path / "out"))
    assert proc.returncode == 2 and "not found" in proc.stderr and "Traceback" not in proc.stderr
    proc = nexus(
        "eval", str(tiny_model_dir), "-o", str(tmp_path / "out"), "--context-length", "16", "--stride", "16"
    )  # fmt: skip
    assert proc.returncode == 2 and "stride" in proc.stderr and "Traceback" not in proc.stderr


def test_a_rerun_that_dies_while_writing_does_not_look_complete(tmp_path, tiny_model_dir, monkeypatch):
    """The earlier run's manifest is removed before the new outputs are written, so a crash in between
    leaves a directory without manifest (incomplete), never new files under the old manifest."""
    from nexus_llm.eval.config import EvalConfig
    from nexus_llm.eval.run import run_eval

    out = tmp_path / "eval"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"stage": "eval", "model_digest": "an earlier model"}))

    def crash(*_args, **_kwargs):
        raise RuntimeError("killed while rendering the report")

    monkeypatch.setattr("nexus_llm.eval.report.render_report", crash)
    with pytest.raises(RuntimeError, match="killed while rendering"):
        run_eval(EvalConfig(perplexity=False, prompts=[]), str(tiny_model_dir), str(out))
    assert (out / "results.json").exists() and not (out / "manifest.json").exists()


def test_the_report_shows_evaluation_texts_found_in_the_training_data(tmp_path, tiny_model_dir):
    """The curated data's decontamination section reaches results.json and the report (via the tokens)."""
    import json as _json

    from nexus_llm import storage
    from nexus_llm.eval.config import EvalConfig
    from nexus_llm.eval.run import run_eval
    from support.stories import story_texts, write_curated

    curated = write_curated(tmp_path / "curated", story_texts(20, seed=5))
    manifest = (
        _json.loads((curated / "manifest.json").read_text()) if (curated / "manifest.json").exists() else {}
    )
    section = {"ngram": 13, "action": "remove",
               "sources": [{"source": "tasks/qa.yaml", "checked": 40, "texts_found": 3, "documents": 2}]}  # fmt: skip
    storage.write_manifest(str(curated), {**manifest, "stage": "data", "decontamination": section})
    cfg = EvalConfig(data=str(curated), prompts=[], max_tokens=200)
    run_eval(cfg, str(tiny_model_dir), str(tmp_path / "eval"))
    results = _json.loads((tmp_path / "eval" / "results.json").read_text())
    assert results["training_overlap"]["sources"][0]["texts_found"] == 3
    report = (tmp_path / "eval" / "report.html").read_text()
    assert "Evaluation texts found in the training data" in report and "tasks/qa.yaml" in report
