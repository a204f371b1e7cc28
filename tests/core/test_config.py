"""nexus.yaml: every shipped example validates; mistakes get messages that name the key and the fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nexus_llm.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", sorted(ROOT.glob("examples/**/nexus*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_validates(path):
    cfg = load_config(path)
    assert cfg.name


def test_unknown_key_suggests_the_nearest_valid_one():
    with pytest.raises(ConfigError) as err:
        parse_config({"data": {"filters": {"lenght": {"min_chars": 10}}}})
    msg = str(err.value)
    assert "data.filters.lenght: unknown key. Did you mean 'length'?" in msg
    assert "Valid keys here:" in msg


def test_wrong_type_names_the_key_and_shows_the_value():
    with pytest.raises(ConfigError) as err:
        parse_config({"data": {"dedup": {"near": {"num_perm": "many"}}}})
    assert "data.dedup.near.num_perm" in str(err.value) and "'many'" in str(err.value)


def test_cross_field_rule_explains_the_fix():
    with pytest.raises(ConfigError, match="raise num_perm or lower bands/rows"):
        parse_config({"data": {"dedup": {"near": {"num_perm": 32, "bands": 10, "rows": 5}}}})


def test_cli_reports_a_bad_config_without_a_traceback(tmp_path):
    bad = tmp_path / "nexus.yaml"
    bad.write_text("data:\n  engine: hadoop\n")
    (tmp_path / "in.jsonl").write_text('{"text": "x"}\n')
    proc = subprocess.run(
        [sys.executable, "-m", "nexus_llm.cli", "data", "prepare", str(tmp_path / "in.jsonl"), "-o",
         str(tmp_path / "out"), "-c", str(bad)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "data.engine" in proc.stderr and "Traceback" not in proc.stderr


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
