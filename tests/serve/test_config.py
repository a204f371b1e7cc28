"""The `serve:` config section: defaults that work, and bad values refused with the key named."""

from __future__ import annotations

import pytest

from nexus_llm.config import ConfigError, parse_config
from nexus_llm.serve.http.auth import APIKeys, keys_from


def test_defaults_match_the_documented_cli():
    s = parse_config({}).serve
    assert (s.host, s.port, s.max_concurrent) == ("127.0.0.1", 8080, 100)


@pytest.mark.parametrize(
    "bad",
    [{"max_concurrent": 0}, {"port": 70000}, {"dtype": "int4"}, {"max_batchsize": 8}, {"engine": "tgi"}],
)
def test_bad_serve_values_name_the_key(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        parse_config({"serve": bad})


def test_keys_come_from_flags_and_environment_and_are_compared_whole():
    keys = APIKeys(keys_from(["flag-key"], env=" env-a , ,env-b"))
    assert keys.accepts("Bearer flag-key") and keys.accepts("bearer env-b")
    for header in (None, "", "Bearer", "Bearer env", "Bearer env-a-and-more", "Basic env-a", "env-a"):
        assert not keys.accepts(header)
    assert "env-a" not in repr(keys) and not APIKeys([])
