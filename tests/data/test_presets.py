"""Quality presets on held-out text: clean documents kept at 97% or more, junk removed at 95% or more."""

from __future__ import annotations

from collections import Counter

import pytest

from nexus_llm.data.clean import clean_text
from nexus_llm.data.config import CleanConfig, FiltersConfig
from nexus_llm.data.document import DocView
from nexus_llm.data.filters import filter_batch
from support.corpora import example_texts, junk, runbooks, stdlib_docstrings, stdlib_source


def kept_share(texts: list[str], cfg: FiltersConfig) -> tuple[float, Counter]:
    reasons: Counter = Counter()
    clean = CleanConfig()
    for i in range(0, len(texts), 64):
        views = [DocView(clean_text(t, clean)) for t in texts[i : i + 64]]
        reasons.update(r for _, r in filter_batch(views, cfg).results)
    return reasons[None] / len(texts), reasons


@pytest.fixture(scope="module")
def held_out():
    prose = example_texts()
    vocab = sorted({w for t in prose[:300] for w in t.split()})
    return {
        "docstrings": stdlib_docstrings(),
        "runbooks": runbooks(400, seed=11),
        "prose": prose,
        "junk": junk(100, seed=11, vocab=vocab),
    }


def test_default_preset_is_technical():
    assert FiltersConfig().preset == "technical"
    assert FiltersConfig().gopher_quality.min_stop_words == 0
    explicit = FiltersConfig.model_validate({"preset": "technical", "gopher_quality": {"min_words": 7}})
    assert explicit.gopher_quality.min_words == 7  # an explicit threshold wins over the preset
    assert FiltersConfig.model_validate({"preset": "web"}).gopher_quality.min_stop_words == 2


def test_technical_preset_keeps_held_out_technical_text_and_prose(held_out):
    cfg = FiltersConfig()
    assert len(held_out["docstrings"]) > 300
    for kind in ("docstrings", "runbooks", "prose"):
        share, reasons = kept_share(held_out[kind], cfg)
        assert share >= 0.97, (kind, share, reasons.most_common(5))


def test_web_preset_is_what_removed_technical_text(held_out):
    share, _ = kept_share(held_out["runbooks"], FiltersConfig.model_validate({"preset": "web"}))
    assert share < 0.9  # the published thresholds, tuned on web prose


@pytest.mark.parametrize("preset", ["web", "technical", "code"])
def test_every_preset_still_removes_junk(held_out, preset):
    cfg = FiltersConfig.model_validate({"preset": preset})
    for kind, texts in held_out["junk"].items():
        share, reasons = kept_share(texts, cfg)
        assert 1 - share >= 0.95, (preset, kind, 1 - share, reasons.most_common(3))


def test_code_preset_keeps_source_code():
    share, reasons = kept_share(stdlib_source(800), FiltersConfig.model_validate({"preset": "code"}))
    assert share >= 0.97, reasons.most_common(5)
