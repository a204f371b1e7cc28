"""Language ID: py3langid's exact probabilities for a batch, config checks, and rejection with a reason."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nexus_llm.data import language
from nexus_llm.data.config import DataConfig
from nexus_llm.data.prepare import run_prepare
from support.corpora import example_texts, runbooks, stdlib_docstrings
from support.curated import read

GERMAN = (
    "Die Bundesregierung hat am Mittwoch einen Gesetzentwurf beschlossen, der die Genehmigungsverfahren "
    "für neue Windkraftanlagen deutlich beschleunigen soll. Die Länder müssen nun zustimmen."
)
FRENCH = (
    "Le conseil municipal a voté hier soir la rénovation complète de la bibliothèque, qui fermera ses "
    "portes pendant dix-huit mois à partir du printemps prochain."
)


def test_labels_are_the_models():
    assert set(language.model().labels) == set(language.LANGUAGES)


def test_batch_probabilities_equal_py3langid_one_text_at_a_time():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    reference = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    texts = [t[:500] for t in example_texts(40)] + [
        GERMAN,
        FRENCH,
        "ABC DEF",
        "",
        "12345 !!!",
        "日本語のテキストです",
    ]
    probs = language.probabilities(texts)
    labels = language.model().labels
    for text, row in zip(texts, probs, strict=True):
        lang, conf = reference.classify(text)
        assert labels[int(row.argmax())] == lang
        assert abs(float(row.max()) - conf) < 1e-5


def test_identify_scores_prose_and_leaves_code_undetermined():
    found = language.identify([GERMAN, FRENCH, example_texts(1)[0], "$ ls -la /etc\n$ df -h\n0x1f 0x2a\n"])
    assert [r.language for r in found] == ["de", "fr", "en", "und"]
    assert found[0].score > 0.9 and found[3].score is None


def test_english_technical_text_is_english():
    texts = stdlib_docstrings()[:300] + runbooks(100, seed=2)
    found = language.identify(texts)
    wrong = [r for r in found if r.language not in ("en", "und")]
    assert len(wrong) / len(texts) < 0.01


def test_unknown_language_code_is_a_config_error():
    from nexus_llm.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match="unknown language code"):
        parse_config({"data": {"language": ["en", "english"]}})
    assert parse_config({"data": {"language": ["en", "de"]}}).data.language.languages == ["en", "de"]
    assert not DataConfig().language.enabled


def test_prepare_keeps_wanted_languages_with_scores_and_names_the_others(tmp_path):
    english = [t for t in example_texts(30) if len(t.split()) > 60][:10]
    rows = [{"id": f"en{i}", "text": t} for i, t in enumerate(english)]
    rows += [
        {"id": "de", "text": (GERMAN + " ") * 3, "topic": "politik"},
        {"id": "fr", "text": (FRENCH + " ") * 3},
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    cfg = DataConfig.model_validate(
        {"language": ["en"], "filters": {"gopher_repetition": {"enabled": False}}}
    )
    m = run_prepare([str(src)], str(tmp_path / "out"), cfg, workers=1)
    assert m["removed"] == {"language.de": 1, "language.fr": 1}
    kept = read(tmp_path / "out")
    assert {r["id"] for r in kept} == {f"en{i}" for i in range(len(english))}
    metas = [json.loads(r["meta"]) for r in kept]
    assert all(meta["language"] == "en" and meta["language_score"] >= 0.5 for meta in metas)
    assert m["language"]["identified"] == {"en": len(english), "de": 1, "fr": 1}
    both = DataConfig.model_validate(
        {"language": ["en", "de"], "filters": {"gopher_repetition": {"enabled": False}}}
    )
    m2 = run_prepare([str(src)], str(tmp_path / "out2"), both, workers=1)
    assert m2["removed"] == {"language.fr": 1}
    german = next(r for r in read(tmp_path / "out2") if r["id"] == "de")
    assert json.loads(german["meta"]) == {
        "language": "de",
        "language_score": pytest.approx(1.0, abs=0.01),
        "topic": "politik",
    }


def test_min_score_rejects_uncertain_documents():
    from nexus_llm.data.config import LanguageConfig
    from nexus_llm.data.filters import language_reason

    cfg = LanguageConfig(languages=["en"], min_score=0.9)
    assert language_reason(language.Result("en", 0.95), cfg) is None
    assert language_reason(language.Result("en", 0.6), cfg) == "language.min_score"
    assert language_reason(language.Result("nl", 0.99), cfg) == "language.nl"
    assert language_reason(language.Result("und", None), cfg) is None
    assert np.isclose(language.model().uniform.sum(), 1.0)
