"""Both command forms: `nexus eval MODEL -o DIR` and `nexus eval compare A B`, shown in --help."""

from __future__ import annotations

from typer.testing import CliRunner

from nexus_llm.cli import app


def test_help_shows_both_forms():
    res = CliRunner().invoke(app, ["eval", "--help"], terminal_width=120)
    assert res.exit_code == 0
    assert "nexus eval MODEL -o EVALDIR" in res.output and "nexus eval compare A B" in res.output
    assert "run" in res.output and "compare" in res.output


def test_a_model_path_goes_to_the_run_command(tmp_path):
    res = CliRunner().invoke(app, ["eval", str(tmp_path / "no-model"), "-o", str(tmp_path / "out")])
    assert res.exit_code == 2 and "no-model" in res.output and "config.json" in res.output


def test_options_before_the_model_and_bad_task_data_are_handled(tmp_path):
    res = CliRunner().invoke(app, ["eval", "-o", str(tmp_path / "o"), str(tmp_path), "--task-data", "mrpc"])
    assert res.exit_code == 2 and "TASK=FOLDER" in res.output
