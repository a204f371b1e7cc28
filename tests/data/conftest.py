"""A planted corpus built from the bundled example corpus, shared by the data-stage tests."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from nexus_llm.data import planted
from nexus_llm.data.config import DataConfig
from nexus_llm.data.prepare import run_prepare

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "corpus"


def example_texts(limit: int | None = None) -> list[str]:
    texts = []
    for f in sorted(EXAMPLES.glob("*.jsonl.gz")):
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            texts.extend(json.loads(line)["text"] for line in fh)
    return texts[:limit] if limit else texts


@pytest.fixture(scope="session")
def planted_corpus(tmp_path_factory) -> tuple[planted.PlantedCorpus, Path]:
    corpus = planted.build(planted.paragraphs_of(example_texts()), originals=1500, seed=7)
    path = tmp_path_factory.mktemp("planted") / "corpus.jsonl"
    corpus.write(str(path))
    return corpus, path


@pytest.fixture(scope="session")
def prepared(planted_corpus, tmp_path_factory):
    """The planted corpus curated once by the local engine: (corpus, output dir, manifest)."""
    corpus, path = planted_corpus
    out = tmp_path_factory.mktemp("prepared") / "curated"
    manifest = run_prepare([str(path)], str(out), DataConfig(), workers=2)
    return corpus, out, manifest
