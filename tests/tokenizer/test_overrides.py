"""Command-line overrides of a config section (``configbase.with_overrides``, shared by every CLI)."""

from __future__ import annotations

import pytest

from nexus_llm.configbase import ConfigError, with_overrides
from nexus_llm.tokenizer.config import TokenizeConfig, TokenizerConfig


def test_given_values_replace_the_file_values_and_none_means_not_given():
    section = TokenizerConfig(vocab_size=500, min_frequency=3)
    assert with_overrides(section, "tokenizer", vocab_size=None) is section
    changed = with_overrides(section, "tokenizer", vocab_size=640, min_frequency=None)
    assert (changed.vocab_size, changed.min_frequency) == (640, 3)
    assert section.vocab_size == 500  # the loaded section is not modified


def test_a_bad_value_is_a_config_error_naming_the_options():
    with pytest.raises(ConfigError, match=r"(?s)command-line options \(tokenize\).*val_fraction"):
        with_overrides(TokenizeConfig(), "tokenize", val_fraction=1.5)
