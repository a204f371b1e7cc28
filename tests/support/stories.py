"""Curated-data fixtures for the tokenizer and training tests: ``nexus data prepare``-format Parquet."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from support.tiny import TINY_TEXTS

STORY_TEXT = (
    "the cat sat on the mat and looked at the dog . the dog ran to the park with a red ball . "
    "a bird sang in the tall tree while the sun was warm . the children played near the river . "
    "she said hello to her friend and they walked home together . it was a quiet day in the town ."
)
STORY_WORDS = STORY_TEXT.split(" ")


def story_texts(n: int, seed: int = 0, words: int = 60) -> list[str]:
    """``n`` deterministic pseudo-English documents of about ``words`` words (learnable, not random)."""
    import random

    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        start = rng.randrange(len(STORY_WORDS))
        length = rng.randrange(words // 2, words * 3 // 2)
        texts.append(" ".join(STORY_WORDS[(start + k) % len(STORY_WORDS)] for k in range(length)))
    return texts


def write_curated(
    out: Path, texts: Sequence[str] = TINY_TEXTS, ids: Sequence[str] | None = None, parts: int = 1
):
    """A curated directory: ``part-NNNNN.parquet`` files and a ``manifest.json`` written last."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ids = list(ids) if ids is not None else [f"doc-{i:06d}" for i in range(len(texts))]
    per = -(-len(texts) // parts)
    for p in range(parts):
        rows = slice(p * per, (p + 1) * per)
        table = pa.table(
            {
                "id": ids[rows],
                "text": list(texts[rows]),
                "source": ["fixture"] * len(ids[rows]),
                "meta": [json.dumps({"n": i}) for i in range(len(ids[rows]))],
            }
        )
        pq.write_table(table, out / f"part-{p:05d}.parquet")
    (out / "manifest.json").write_text(json.dumps({"records_in": len(texts), "records_out": len(texts)}))
    return out
