"""Both command forms (`nexus eval MODEL -o DIR`, `nexus eval compare A B`) and user errors without tracebacks."""

from __future__ import annotations

import os

from typer.testing import CliRunner

from nexus_llm.cli import app
from support.eval_kit import nexus


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


def test_an_output_path_under_a_file_fails_before_the_model_is_loaded(tmp_path, tiny_model_dir, token_dir):
    (tmp_path / "taken").write_text("a file, not a directory")
    out = tmp_path / "taken" / "eval"
    proc = nexus("eval", str(tiny_model_dir), "-o", str(out), "--data", str(token_dir))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "cannot create the output directory" in proc.stderr and "Not a directory" in proc.stderr
    assert "loading" not in proc.stderr  # told at once, not after the whole evaluation


def test_s3_without_credentials_is_a_clear_error(tmp_path):
    """botocore's NoCredentialsError (not an OSError) ends in a message that says what to set."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("AWS_")}
    env.update(
        HOME=str(tmp_path),
        AWS_CONFIG_FILE=str(tmp_path / "no-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_ENDPOINT_URL_S3="http://127.0.0.1:9",  # never reached: signing fails first
    )
    proc = nexus("eval", "s3://no-bucket/ws/model", "-o", str(tmp_path / "out"), env=env, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "no S3 credentials found" in proc.stderr and "AWS_ACCESS_KEY_ID" in proc.stderr


def test_an_output_that_cannot_be_written_is_a_clear_error(tmp_path, tiny_model_dir):
    """An OSError at write time (here results.json is a directory) is reported, not a traceback."""
    out = tmp_path / "eval"
    (out / "results.json").mkdir(parents=True)
    args = [
        "eval",
        str(tiny_model_dir),
        "-o",
        str(out),
        "--no-perplexity",
        "-p",
        "Hi",
        "--max-new-tokens",
        "1",
    ]
    res = CliRunner().invoke(app, args, terminal_width=200)
    assert res.exit_code == 2, res.output
    assert "cannot read or write a path" in res.output and "results.json" in res.output
    assert not (out / "manifest.json").exists()
