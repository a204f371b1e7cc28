"""The nexus command: help everywhere, clear errors for user mistakes."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from nexus_llm.cli import app

runner = CliRunner()


def _commands(group) -> list[list[str]]:
    import typer.main

    click_group = typer.main.get_command(group)
    out = []

    def walk(cmd, path):
        out.append(path)
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, [*path, name])

    walk(click_group, [])
    return out


@pytest.mark.parametrize("path", _commands(app), ids=lambda p: " ".join(p) or "nexus")
def test_every_command_has_help(path):
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_data_prepare_summary_and_missing_input(tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_text(
        '{"id": "a", "text": "'
        + "A sentence with the words of a real document and more. " * 8
        + '"}\n{"bad json\n'
    )
    proc = subprocess.run(
        [sys.executable, "-m", "nexus_llm.cli", "data", "prepare", str(inp), "-o", str(tmp_path / "out")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "documents in" in proc.stderr and "quarantined" in proc.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "nexus_llm.cli", "data", "prepare", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "o2")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr and "Traceback" not in missing.stderr
