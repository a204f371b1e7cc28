"""`nexus eval compare A B`: side by side, differences, and which is better."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from nexus_llm.cli import app
from nexus_llm.eval.compare import compare, heldout_note


def _results(ppl, bpb, acc, digest="d", n_bytes=100):
    return {
        "perplexity": ppl,
        "bits_per_byte": bpb,
        "heldout": {"digest": digest, "tokens_predicted": 50, "bytes": n_bytes},
        "tasks": {"para": {"metrics": {"acc": acc}, "higher_is_better": {"acc": True}}},
    }


def test_rows_show_differences_and_the_better_side():
    rows = {r["metric"]: r for r in compare(_results(20.0, 1.5, 0.5), _results(10.0, 1.2, 0.75))}
    assert rows["perplexity"]["diff"] == pytest.approx(-10.0) and rows["perplexity"]["better"] == "B"
    assert rows["perplexity"]["rel"] == pytest.approx(-0.5)
    assert rows["bits_per_byte"]["better"] == "B"
    assert rows["para acc"]["diff"] == pytest.approx(0.25) and rows["para acc"]["better"] == "B"


def test_a_task_in_only_one_result_still_shows():
    a, b = _results(20.0, 1.5, 0.5), _results(20.0, 1.5, 0.5)
    b["tasks"]["extra"] = {"metrics": {"acc": 0.9}}
    row = next(r for r in compare(a, b) if r["metric"] == "extra acc")
    assert row["a"] is None and row["b"] == 0.9 and row["diff"] is None


def test_no_note_on_the_same_held_out_tokens():
    assert heldout_note(_results(1, 1, 1), _results(1, 1, 1)) is None


def test_other_text_compares_by_neither_figure():
    note = heldout_note(_results(1, 1, 1), _results(1, 1, 1, digest="other", n_bytes=7))
    assert "neither perplexity nor bits per byte is comparable" in note and "same --data" in note
    assert "compare bits per byte" not in note


def test_same_text_in_other_tokens_compares_by_bits_per_byte():
    note = heldout_note(_results(1, 1, 1), _results(1, 1, 1, digest="other tokenizer"))
    assert "compare bits per byte, not perplexity" in note and "neither" not in note


def test_compare_command_prints_the_table_and_json(tmp_path, eval_run):
    out, _ = eval_run
    other = tmp_path / "other"
    other.mkdir()
    worse = json.loads((out / "results.json").read_text())
    base_ppl = worse["perplexity"]
    worse["perplexity"] = base_ppl * 2
    (other / "results.json").write_text(json.dumps(worse))
    runner = CliRunner()
    res = runner.invoke(app, ["eval", "compare", str(out), str(other)], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert (
        "perplexity" in res.output and f"{base_ppl:.4f}" in res.output and f"{base_ppl * 2:.4f}" in res.output
    )
    assert f"+{base_ppl:.4f}" in res.output and "+100.0%" in res.output
    res = runner.invoke(app, ["eval", "compare", str(out), str(other), "--json"])
    rows = {r["metric"]: r for r in json.loads(res.stdout)["rows"]}
    assert rows["perplexity"]["better"] == "A"
    assert rows["paraphrase_local acc"]["diff"] == 0


def test_compare_of_a_folder_without_results_is_a_clear_error(tmp_path, eval_run):
    res = CliRunner().invoke(app, ["eval", "compare", str(eval_run[0]), str(tmp_path)])
    assert res.exit_code == 2 and "results.json not found" in res.output
