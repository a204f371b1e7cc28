"""Flags that override a config key are declared from the schema: help shows the schema's default."""

from __future__ import annotations

import pytest
import typer.main
from typer.testing import CliRunner

from nexus_llm.cli import app
from nexus_llm.cliopts import schema_help
from nexus_llm.data.config import DataConfig
from nexus_llm.eval.config import EvalConfig
from nexus_llm.serve.config import ServeConfig
from nexus_llm.tokenizer.config import TokenizeConfig, TokenizerConfig
from nexus_llm.train.config import TrainConfig

# command path → (schema, section) its override flags belong to
COMMANDS = {
    ("serve",): (ServeConfig, "serve"),
    ("train",): (TrainConfig, "train"),
    ("eval", "run"): (EvalConfig, "eval"),
    ("data", "prepare"): (DataConfig, "data"),
    ("data", "tokenize"): (TokenizeConfig, "tokenize"),
    ("tokenizer", "train"): (TokenizerConfig, "tokenizer"),
}


def _command(path: tuple[str, ...]):
    cmd = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]
    return cmd


@pytest.mark.parametrize("path", list(COMMANDS), ids=" ".join)
def test_every_flag_named_after_a_config_key_takes_its_help_and_default_from_the_schema(path):
    model, section = COMMANDS[path]
    flags = [
        p
        for p in _command(path).params
        if p.param_type_name == "option" and p.name in model.model_fields and p.default is None
    ]
    assert flags, f"{path} has no flag for a {section} key"
    for param in flags:
        assert param.help == schema_help(model, param.name, section), (path, param.name)


def test_help_shows_the_schema_defaults():
    out = CliRunner().invoke(app, ["serve", "--help"]).output
    out = " ".join(out.replace("│", " ").split())  # the help as one line, without the box
    assert f"(default: {ServeConfig().port})" in out and "serve.port in nexus.yaml" in out
    assert "(default: 64)" in out  # max_batch_size


def test_flags_and_set_are_validated_by_the_schema(tmp_path):
    result = CliRunner().invoke(app, ["serve", str(tmp_path), "--port", "0"])
    assert result.exit_code == 2 and "port" in result.output
    result = CliRunner().invoke(app, ["serve", str(tmp_path), "--set", "serve.max_batch_sise=4"])
    assert result.exit_code == 2 and "max_batch_size" in result.output
