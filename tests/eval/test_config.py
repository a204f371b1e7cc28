"""The eval: section of nexus.yaml: defaults that work and errors that say how to fix a value."""

from __future__ import annotations

import pytest
import yaml

from nexus_llm.config import ConfigError, load_config, parse_config
from support.eval_kit import REPO


def test_the_shipped_example_eval_section_is_valid_and_its_tasks_exist():
    """examples/nexus.yaml as users get it: every key of its eval: section is kept as written."""
    path = REPO / "examples" / "nexus.yaml"
    written = yaml.safe_load(path.read_text())["eval"]
    cfg = load_config(path).eval
    assert written and {k: getattr(cfg, k) for k in written} == written
    assert cfg.tasks and all((REPO / task).is_file() for task in cfg.tasks if task.endswith(".yaml"))
    assert cfg.data is None and cfg.runs is None  # nexus run passes the workspace's tokens/ and runs/


def test_stride_not_below_context_is_explained():
    with pytest.raises(ConfigError, match=r"stride \(64\) must be smaller than context_length \(64\)"):
        parse_config({"eval": {"context_length": 64, "stride": 64}})


def test_a_typo_gets_a_suggestion():
    with pytest.raises(ConfigError, match="Did you mean 'max_tokens'"):
        parse_config({"eval": {"max_token": 100}})
