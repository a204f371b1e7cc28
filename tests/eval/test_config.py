"""The eval: section of nexus.yaml: defaults that work and errors that say how to fix a value."""

from __future__ import annotations

import pytest
import yaml

from nexus_llm.config import ConfigError, parse_config

EXAMPLE_EVAL_SECTION = """
eval:                             # nexus run passes the workspace's tokens/ and runs/ as data and runs
  split: val
  batch_size: 8
  limit: null                     # e.g. 50 for a quick check: documents, and examples per task
  max_tokens: null                # e.g. 20000 held-out tokens
  tasks: [examples/tasks/paraphrase_local.yaml]
  bootstrap_iters: 0              # lm-eval's stderr bootstrap; 100000 is its own default
  prompts:
    - "It is a truth universally acknowledged"
    - "In the beginning"
    - "DICTIONARY, n."
  max_new_tokens: 48
"""


def test_the_documented_eval_section_is_valid():
    cfg = parse_config(yaml.safe_load(EXAMPLE_EVAL_SECTION)).eval
    assert cfg.tasks == ["examples/tasks/paraphrase_local.yaml"] and cfg.bootstrap_iters == 0
    assert cfg.prompts[0] == "It is a truth universally acknowledged"
    assert cfg.data is None and cfg.first_token == "auto"


def test_stride_not_below_context_is_explained():
    with pytest.raises(ConfigError, match=r"stride \(64\) must be smaller than context_length \(64\)"):
        parse_config({"eval": {"context_length": 64, "stride": 64}})


def test_a_typo_gets_a_suggestion():
    with pytest.raises(ConfigError, match="Did you mean 'max_tokens'"):
        parse_config({"eval": {"max_token": 100}})
