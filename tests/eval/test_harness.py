"""lm-evaluation-harness through its Python API on the loaded model: local tasks, glue/mrpc from a local copy."""

from __future__ import annotations

import json
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from nexus_llm.eval.config import EvalConfig
from nexus_llm.eval.errors import EvalError
from nexus_llm.eval.harness import load_task_yaml, normalize, prepare, run_tasks
from support.eval_kit import EXAMPLE_TASK


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval(), tok


def _write_mrpc_copy(folder) -> None:
    """A local copy of glue/mrpc's split files, laid out as in the dataset repository's mrpc/ folder."""
    folder.mkdir()
    rows = {
        "sentence1": ["The cat sat on the mat.", "Stocks fell sharply on Monday."] * 3,
        "sentence2": ["A cat was sitting on the mat.", "It rained all day in Paris."] * 3,
        "label": [1, 0] * 3,
        "idx": list(range(6)),
    }
    for split in ("train", "validation", "test"):
        pq.write_table(pa.table(rows), folder / f"{split}-00000-of-00001.parquet")


def test_glue_mrpc_runs_from_a_local_copy_of_its_data(tmp_path, loaded):
    _write_mrpc_copy(tmp_path / "mrpc")
    cfg = EvalConfig(tasks=["mrpc"], task_data={"mrpc": str(tmp_path / "mrpc")}, batch_size=4)
    tasks = run_tasks(*loaded, cfg, limit=4)
    assert tasks["mrpc"]["samples"] == 4
    assert set(tasks["mrpc"]["metrics"]) == {"acc", "f1"}


def test_task_yaml_data_files_resolve_against_the_yaml_folder():
    cfg = load_task_yaml(EXAMPLE_TASK)
    assert cfg["dataset_kwargs"]["data_files"]["validation"] == str(
        EXAMPLE_TASK.parent / "paraphrase_local.jsonl"
    )
    assert cfg["doc_to_choice"] == ["no", "yes"] and cfg["output_type"] == "multiple_choice"


def test_tasks_are_found_by_name_in_task_dirs_and_builtins_index_only_what_is_asked():
    manager, specs = prepare(["paraphrase_local", "mrpc"], [str(EXAMPLE_TASK.parent)], {})
    assert [s.name for s in specs] == ["paraphrase_local", "mrpc"]
    assert specs[0].config is not None and specs[1].config is None
    assert "mrpc" in manager.all_tasks and len(manager.all_tasks) < 100  # not the ~14,000 of a full index


def test_unknown_task_names_are_clear_errors(loaded):
    with pytest.raises(EvalError, match=r"unknown lm-eval task 'mrcp'.*Did you mean.*mrpc"):
        run_tasks(*loaded, EvalConfig(tasks=["mrcp"]))


def test_normalize_keeps_metrics_and_drops_missing_stderrs():
    raw = {
        "results": {"t": {"alias": "t", "acc,none": 0.5, "acc_stderr,none": "N/A", "f1,none": float("nan")}},
        "n-samples": {"t": {"original": 10, "effective": 5}},
        "n-shot": {"t": 0},
        "higher_is_better": {"t": {"acc": True, "f1": True}},
        "versions": {"t": 1.0},
    }
    out = normalize(raw)["t"]
    assert out["metrics"] == {"acc": 0.5, "f1": None}
    assert out["stderr"] == {} and out["samples"] == 5 and out["num_fewshot"] == 0


def _write_task(folder, doc_to_text: str) -> None:
    """A tiny local task whose prompt comes from ``doc_to_text`` (a template or a ``!function``)."""
    rows = [{"q": f"question {i}", "label": i % 2} for i in range(4)]
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "flaky_fns.py").write_text(
        "def doc_to_text(doc):\n"
        "    if doc['q'].endswith('2'):\n"
        "        raise KeyError('answer')  # a task bug that only the third document shows\n"
        "    return doc['q']\n"
    )
    (folder / "task.yaml").write_text(
        f"task: flaky_local\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    validation: data.jsonl\n"
        f"output_type: multiple_choice\nvalidation_split: validation\ndoc_to_text: {doc_to_text}\n"
        'doc_to_target: label\ndoc_to_choice: ["no", "yes"]\nmetric_list:\n  - metric: acc\n'
    )


def test_a_template_naming_a_missing_column_is_a_clear_error(tmp_path, loaded):
    _write_task(tmp_path, '"{{question}}"')
    with pytest.raises(
        EvalError, match=r"task 'flaky_local': UndefinedError: 'question' is undefined.*templates"
    ):
        run_tasks(*loaded, EvalConfig(tasks=[str(tmp_path / "task.yaml")]), limit=4)


def test_a_task_failing_inside_the_harness_run_is_named(tmp_path, loaded):
    _write_task(tmp_path, "!function flaky_fns.doc_to_text")
    with pytest.raises(EvalError, match=r"lm-eval failed on task 'flaky_local': KeyError: 'answer'"):
        run_tasks(*loaded, EvalConfig(tasks=[str(tmp_path / "task.yaml")]), limit=4)


def test_an_lm_eval_without_the_private_yaml_loader_says_which_version_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "lm_eval.tasks._yaml_loader", None)  # as if a release removed it
    with pytest.raises(EvalError, match=r"lacks lm_eval\.tasks\._yaml_loader.*lm-eval>=0\.4\.13,<0\.5"):
        load_task_yaml(EXAMPLE_TASK)
