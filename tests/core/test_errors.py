"""User errors: one exception type, mapped to a message and an exit status in one place."""

from __future__ import annotations

import errno
import re
from pathlib import Path

from typer.testing import CliRunner

from nexus_llm.cli import app
from nexus_llm.configbase import ConfigError
from nexus_llm.errors import STORAGE_UNREACHABLE_EXIT_CODE, USER_ERROR_EXIT_CODE, UserError, exit_for
from nexus_llm.eval.errors import EvalError
from nexus_llm.models.errors import ModelError

SRC = Path(__file__).resolve().parents[2] / "src" / "nexus_llm"


def test_stage_errors_are_user_errors_with_their_label():
    assert exit_for(ConfigError("bad key")) == ("config error", "bad key", USER_ERROR_EXIT_CODE)
    assert exit_for(ModelError("no weights")) == ("config error", "no weights", USER_ERROR_EXIT_CODE)
    assert exit_for(EvalError("no data")) == ("error", "no data", USER_ERROR_EXIT_CODE)
    assert exit_for(UserError("x"))[2] == USER_ERROR_EXIT_CODE


def test_missing_files_full_disks_and_missing_extras_are_messages_not_tracebacks():
    assert exit_for(FileNotFoundError(2, "No such file", "a.yaml"))[:1] == ("not found",)
    assert exit_for(OSError(errno.ENOSPC, "No space left on device"))[0] == "disk full"
    missing = ModuleNotFoundError("No module named 'pyspark'", name="pyspark")
    label, message, code = exit_for(missing)
    assert (label, code) == ("missing dependency", USER_ERROR_EXIT_CODE) and "nexus-llm[spark]" in message


def test_bugs_keep_their_traceback():
    assert exit_for(KeyError("oops")) is None
    assert exit_for(ModuleNotFoundError("No module named 'nope'", name="nope")) is None
    assert exit_for(OSError(errno.EIO, "I/O error")) is None
    assert STORAGE_UNREACHABLE_EXIT_CODE != USER_ERROR_EXIT_CODE


def test_a_user_error_from_any_command_exits_2_with_the_message(tmp_path):
    bad = tmp_path / "nexus.yaml"
    bad.write_text("train:\n  learnig_rate: 1\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["run", "-c", str(bad)])
    assert result.exit_code == 2 and "config error" in result.output and "learning_rate" in result.output
    result = CliRunner().invoke(app, ["serve", str(tmp_path), "--lora", "broken"])
    assert result.exit_code == 2 and "--lora 'broken': use NAME=DIR" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(app, ["bench", "serve", "http://127.0.0.1:9", "--api", "grpc"])
    assert result.exit_code == 2 and "--api must be completions, chat or generate" in result.output


def test_no_command_maps_errors_to_exit_codes_itself():
    """Commands raise UserError; only errors.exit_for chooses the status (container entry points, which
    run without the CLI, are the exception)."""
    offenders = []
    for path in SRC.rglob("*.py"):
        if "entrypoints" in path.parts:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"(typer\.Exit|sys\.exit)\(\s*2\s*\)", line):
                offenders.append(f"{path.relative_to(SRC)}:{n}: {line.strip()}")
    assert not offenders, offenders
