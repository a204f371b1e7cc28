"""A planted corpus built from the bundled example corpus, shared by the data-stage tests."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from nexus_llm.config import parse_config
from nexus_llm.data.prepare import run_prepare
from support import planted

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "corpus"
TASK = Path(__file__).resolve().parents[2] / "examples" / "tasks" / "paraphrase_local.yaml"
# The full curation: PII, language ID, presets, dedup, decontamination against a task file and the
# held-out split (tokenize's default 1%), as `nexus data prepare -c` reads it from nexus.yaml.
FULL_YAML = f"data:\n  language: [en]\n  decontaminate:\n    sources: [{TASK}]\n"


def full_config(**data):
    """The ``data:`` section of ``FULL_YAML``, with ``data`` settings added."""
    import yaml

    raw = yaml.safe_load(FULL_YAML)
    raw["data"].update(data)
    return parse_config(raw).data


def example_texts(limit: int | None = None) -> list[str]:
    texts = []
    for f in sorted(EXAMPLES.glob("*.jsonl.gz")):
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            texts.extend(json.loads(line)["text"] for line in fh)
    return texts[:limit] if limit else texts


@pytest.fixture(scope="session")
def planted_corpus(tmp_path_factory) -> tuple[planted.PlantedCorpus, Path]:
    paragraphs = planted.paragraphs_of(example_texts())
    # a tenth of the paragraphs carry personal data or a secret (redacted, so the output differs)
    with_pii = planted.plant_pii(paragraphs[::10], seed=7, per_text=(1, 1))
    paragraphs[::10] = [t.replace("\n\n", " ") for t in with_pii.texts]
    corpus = planted.build(paragraphs, originals=1500, seed=7)
    path = tmp_path_factory.mktemp("planted") / "corpus.jsonl"
    corpus.write(str(path))
    return corpus, path


@pytest.fixture(scope="session")
def prepared(planted_corpus, tmp_path_factory):
    """The planted corpus curated once by the local engine: (corpus, output dir, manifest)."""
    corpus, path = planted_corpus
    out = tmp_path_factory.mktemp("prepared") / "curated"
    manifest = run_prepare([str(path)], str(out), full_config(), workers=2)
    return corpus, out, manifest
