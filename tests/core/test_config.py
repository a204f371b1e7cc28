"""nexus.yaml: every shipped example validates; mistakes get messages that name the key and the fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nexus_llm.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]


SHIPPED = sorted(ROOT.glob("examples/*.yaml"))  # examples/tasks/ holds lm-eval task files, not configs


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_config_validates(path):
    cfg = load_config(path)
    assert cfg.name


def test_the_shipped_configs_are_the_demo_and_the_fine_tuning_example():
    assert {p.name for p in SHIPPED} >= {"nexus.yaml", "finetune.yaml"}


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


def test_set_overrides_are_typed_by_the_schema(tmp_path):
    cfg_file = tmp_path / "nexus.yaml"
    cfg_file.write_text("train:\n  max_steps: 400\n  lora: {r: 8}\n  init_from: m\n")
    cfg = load_config(cfg_file, ["train.max_steps=7", "data.inputs=[docs/, more.jsonl]", "train.lora.r=4",
                                 "eval.limit=null", "name=other"])  # fmt: skip
    assert cfg.train.max_steps == 7 and isinstance(cfg.train.max_steps, int)
    assert cfg.data.inputs == ["docs/", "more.jsonl"] and cfg.train.lora.r == 4
    assert cfg.eval.limit is None and cfg.name == "other"
    assert load_config(None, ["train.seq_len=64"]).train.seq_len == 64  # no file: the defaults, overridden


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trian.max_steps=3", "Did you mean 'train'"),
        ("train.max_stepz=3", "Did you mean 'max_steps'"),
        ("train.max_steps=many", "train.max_steps.*'many'"),
        ("train.max_steps", "write key.path=value"),
        ("name.first=x", "name: Input should be a valid string"),
        ("train.max_steps=[1", "not valid YAML"),
    ],
)
def test_bad_set_overrides_say_what_is_wrong(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_set_through_a_value_of_the_file_is_refused(tmp_path):
    cfg_file = tmp_path / "nexus.yaml"
    cfg_file.write_text("name: demo\n")
    with pytest.raises(ConfigError, match="name is a value"):
        load_config(cfg_file, ["name.first=x"])


def test_run_and_train_accept_set_on_the_command_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "nexus_llm.cli", "train", "--set", "train.max_stepz=3"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2 and "Did you mean 'max_steps'" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "nexus_llm.cli", "run", "-c", "examples/nexus.yaml", "--set", "seed=oops"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2 and "seed" in proc.stderr and "Traceback" not in proc.stderr
