"""PII and secrets: planted items in real text are redacted, ordinary numbers and words are not."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from nexus_llm.data import pii
from nexus_llm.data.config import DataConfig
from nexus_llm.data.prepare import run_prepare
from support import planted
from support.corpora import example_texts, runbooks, stdlib_docstrings
from support.curated import read


@pytest.fixture(scope="module")
def host_texts() -> list[str]:
    """Real text to plant into: prose, technical docstrings and runbooks."""
    return example_texts(300)[::3] + stdlib_docstrings()[:150] + runbooks(100, seed=5)


@pytest.fixture(scope="module")
def planted_pii(host_texts) -> planted.PlantedPii:
    return planted.plant_pii(host_texts, seed=3)


def test_luhn_and_card_networks():
    assert pii.luhn_ok("4111111111111111") and not pii.luhn_ok("4111111111111112")
    assert pii.card_brand_ok("378282246310005")  # American Express, 15 digits
    assert not pii.card_brand_ok("9111111111111111")  # no network issues 9...
    scanner = pii.Scanner(["credit_card"])
    assert [m.text for m in scanner.find("paid with 4111-1111-1111-1111 today")] == ["4111-1111-1111-1111"]
    assert scanner.find("paid with 4111-1111-1111-1112 today") == []  # checksum fails
    assert scanner.find("order 1234567890123456 shipped") == []


def test_each_kind_and_its_look_alikes():
    s = pii.Scanner()
    text = (
        "Mail jane.doe@acme-corp.com or call (415) 867-5309. Server 81.2.69.142, LAN 10.0.0.1, "
        "loopback 127.0.0.1, v1.2.3 on 2024-01-15 12:30:45, std::vector, MAC 00:1a:2b:3c:4d:5e, "
        "commit 3f786850e387550fdab836ed7e6dc881de23001b, key AKIAIOSFODNN7EXAMPLE, "
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY, v6 2001:4860:4860::8888."
    )
    found = {(m.kind, m.text) for m in s.find(text)}
    assert found == {
        ("email", "jane.doe@acme-corp.com"),
        ("phone", "(415) 867-5309"),
        ("ip_address", "81.2.69.142"),
        ("secret", "AKIAIOSFODNN7EXAMPLE"),
        ("secret", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        ("ip_address", "2001:4860:4860::8888"),
    }
    redacted = s.redact(text)
    assert "aws_secret_access_key = <SECRET>" in redacted and "LAN 10.0.0.1" in redacted
    private = pii.Scanner(["ip_address"], private_ip_addresses=True)
    assert {m.text for m in private.find(text)} >= {"10.0.0.1", "127.0.0.1", "81.2.69.142"}


def test_pem_private_key_block_is_one_secret():
    body = "\n".join(
        "".join(random.Random(i).choice("ABCDEFabcdef0123456789+/") for _ in range(64)) for i in range(5)
    )
    text = f"Key:\n-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----\nDone."
    assert pii.Scanner().redact(text) == "Key:\n<SECRET>\nDone."


def test_fast_path_finds_what_the_whole_text_scan_finds(planted_pii, host_texts):
    scanner = pii.Scanner(private_ip_addresses=True)
    texts = planted_pii.texts + host_texts
    fast = [m for i in range(0, len(texts), 64) for m in scanner.find_batch(texts[i : i + 64])]
    reference = [scanner.find_reference(t) for t in texts]
    assert fast == reference


def _tokens(text: str) -> Counter:
    return Counter(text.split())


def test_planted_pii_is_redacted_and_ordinary_text_is_not(planted_pii):
    scanner = pii.Scanner()
    items = decoys = missed = 0
    ordinary = touched = 0
    by_kind: Counter = Counter()
    for text, planted_items, planted_decoys in zip(
        planted_pii.texts, planted_pii.items, planted_pii.decoys, strict=True
    ):
        out = scanner.redact(text)
        for kind, value in planted_items:
            items += 1
            by_kind[kind] += 1
            if value in out:
                missed += 1
        for value in planted_decoys:
            decoys += 1
            assert value in out, f"decoy {value!r} was redacted"
        # every token of the text that is not part of a planted item must be in the output unchanged
        expected = _tokens(text)
        for _, value in planted_items:
            expected -= _tokens(value)
        ordinary += sum(expected.values())
        touched += sum((expected - _tokens(out)).values())
    assert set(by_kind) == set(pii.KINDS) and min(by_kind.values()) >= 20
    assert (items - missed) / items >= 0.98, f"{missed} of {items} planted items left"
    assert touched / ordinary < 0.01, f"{touched} of {ordinary} ordinary tokens changed"
    assert decoys > 100


def test_prepare_redacts_counts_and_reconciles(planted_pii, tmp_path):
    rows = [{"id": f"d{i}", "text": t} for i, t in enumerate(planted_pii.texts)]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    m = run_prepare([str(src)], str(tmp_path / "out"), DataConfig(), workers=2)
    assert m["records_in"] == m["records_out"] + sum(m["removed"].values()) + m["quarantined"]
    kept = {r["id"]: r["text"] for r in read(tmp_path / "out")}
    planted_values = [v for items in planted_pii.items for _, v in items]
    assert not any(v in t for t in kept.values() for v in planted_values)
    assert any("<EMAIL>" in t for t in kept.values()) and any("<SECRET>" in t for t in kept.values())
    assert set(m["pii"]["found"]) == set(pii.KINDS)
    assert m["pii"]["redacted"] == m["pii"]["found"]
    samples = m["pii"]["samples"]["email"]
    assert len(samples) == 5 and all("→ <EMAIL>]" in s["context"] for s in samples)
    assert not any("@" in s["context"] for s in samples)  # masked: the address is not repeated
    assert not any(v in json.dumps(m) for v in planted_values), "the manifest repeats personal data"


def test_reject_action_rejects_the_document(tmp_path):
    src = tmp_path / "in.jsonl"
    texts = [
        "The deployment key is AKIAIOSFODNN7EXAMPLE and it must be rotated by the operations team today.",
        "Write to jane.doe@acme-corp.com for access to the staging cluster and the monitoring dashboards; "
        "she approves requests for the whole platform team within a day.",
    ]
    src.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    cfg = DataConfig.model_validate({"pii": {"reject": ["secret"], "redact": ["email"]}})
    m = run_prepare([str(src)], str(tmp_path / "out"), cfg, workers=1)
    assert m["removed"] == {"pii.secret": 1}
    assert next(r["text"] for r in read(tmp_path / "out")).startswith("Write to <EMAIL> for access")


def test_unknown_kind_or_both_actions_is_a_config_error():
    from nexus_llm.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"data\.pii\.redact\.0"):
        parse_config({"data": {"pii": {"redact": ["ssn"]}}})
    with pytest.raises(ConfigError, match="both redact and reject"):
        parse_config({"data": {"pii": {"reject": ["email"]}}})
    with pytest.raises(ConfigError, match="unknown region"):
        parse_config({"data": {"pii": {"phone_region": "XX"}}})


def test_digits_inside_a_hex_digest_are_not_a_card():
    digest = "724e5bcdf5b1b22c71d34bbdd7655db64dd5b87b" + "4111111111111111" + "a0add678f6008ef06ef8ce14"
    assert pii.Scanner().find(f"sha1 {digest} ok") == []
