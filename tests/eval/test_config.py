"""The eval: section of nexus.yaml: defaults that work and errors that say how to fix a value."""

from __future__ import annotations

import pytest
import yaml

from nexus_llm.config import ConfigError, parse_config

EXAMPLE_EVAL_SECTION = """
eval:
  split: val
  batch_size: 8
  limit: null
  max_tokens: null
  tasks: [examples/tasks/paraphrase_local.yaml]
  bootstrap_iters: 0
  prompts: ["The meaning of life is", "Once upon a time,"]
  max_new_tokens: 48
"""


def test_the_documented_eval_section_is_valid():
    cfg = parse_config(yaml.safe_load(EXAMPLE_EVAL_SECTION)).eval
    assert cfg.tasks == ["examples/tasks/paraphrase_local.yaml"] and cfg.bootstrap_iters == 0
    assert cfg.data is None and cfg.first_token == "auto"


def test_stride_not_below_context_is_explained():
    with pytest.raises(ConfigError, match=r"stride \(64\) must be smaller than context_length \(64\)"):
        parse_config({"eval": {"context_length": 64, "stride": 64}})


def test_a_typo_gets_a_suggestion():
    with pytest.raises(ConfigError, match="Did you mean 'max_tokens'"):
        parse_config({"eval": {"max_token": 100}})
