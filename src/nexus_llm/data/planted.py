"""A corpus with planted problems and known answers, for tests, benchmarks and ``nexus data check``.

Documents are built from real paragraphs (e.g. the example corpus), then copies and junk are planted
at known places: exact duplicates (same text, whitespace and case changed), near-duplicates (a few
words changed plus a footer), short junk, repeated-line spam, non-text blobs, mojibake that should be
repaired and kept, and malformed lines (truncated JSON, invalid UTF-8, missing or non-string text).
Every record carries ``meta.planted`` (its category) and ``meta.ref`` (the id of the original a copy
was made from), and :func:`score` measures how well an output resolved them.
"""

from __future__ import annotations

import base64
import gzip
import json
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

FOOTERS = (
    "Posted by admin. All rights reserved.",
    "Share this article with your friends.",
    "Read more stories like this on our website.",
    "Copyright 2024. Subscribe to our newsletter for updates.",
)
SHORT_JUNK = ("Click here!", "Buy now", "404 Not Found", "Loading...", "Home | About | Contact", "ok", "N/A")
SPAM_LINES = (
    "BUY CHEAP WATCHES ONLINE NOW best prices guaranteed",
    "Click the link below to win a free phone today",
    "Hot singles in your area are waiting for you",
)
JUNK_KINDS = ("short", "spam", "blob")
MALFORMED_KINDS = ("truncated_json", "invalid_utf8", "missing_text", "text_not_string")


@dataclass
class PlantedCorpus:
    """JSON lines (as bytes, some deliberately broken) and the answer key."""

    lines: list[bytes]
    category: dict[str, str] = field(
        default_factory=dict
    )  # id -> original|exact|near|short|spam|blob|mojibake
    ref: dict[str, str] = field(default_factory=dict)  # copy id -> original id
    malformed: int = 0

    def write(self, path: str, compress: bool = False) -> None:
        data = b"".join(line + b"\n" for line in self.lines)
        with open(path, "wb") as fh:
            fh.write(gzip.compress(data, mtime=0) if compress else data)

    def counts(self) -> Counter[str]:
        c = Counter(self.category.values())
        c["malformed"] = self.malformed
        return c


def paragraphs_of(texts: Iterable[str], min_words: int = 20) -> list[str]:
    """Paragraphs long enough to carry a document (split on blank lines)."""
    out = []
    for text in texts:
        for para in text.split("\n\n"):
            para = " ".join(para.split())
            if len(para.split()) >= min_words:
                out.append(para)
    return out


def _record(doc_id: str, text: str, category: str, ref: str | None = None) -> bytes:
    # meta.doc repeats the id so that outputs which drop ids (the guide's job keeps only text and
    # meta) can still be scored.
    meta = {"planted": category, "doc": doc_id, **({"ref": ref} if ref else {})}
    return json.dumps({"id": doc_id, "text": text, "meta": meta}, ensure_ascii=False).encode("utf-8")


def _near_copy(rng: random.Random, text: str, vocab: Sequence[str]) -> str:
    words = text.split(" ")
    for i in rng.sample(range(len(words)), k=min(len(words), rng.randint(2, 4))):
        words[i] = rng.choice(vocab)
    return " ".join(words) + "\n\n" + rng.choice(FOOTERS)


def _exact_copy(rng: random.Random, text: str) -> str:
    """The same text up to case and whitespace, which exact dedup normalizes away."""
    variant = rng.randint(0, 2)
    if variant == 0:
        return text
    if variant == 1:
        return "  " + text.replace(" ", "  ", 3) + "\n"
    return text.upper() if len(text) < 200 else text[:1].lower() + text[1:]


def _junk(rng: random.Random, kind: str) -> str:
    if kind == "short":
        return rng.choice(SHORT_JUNK)
    if kind == "spam":
        line = rng.choice(SPAM_LINES)
        return "\n".join([line] * rng.randint(8, 30))
    blob = bytes(rng.getrandbits(8) for _ in range(rng.randint(600, 3000)))
    encoded = base64.b64encode(blob).decode()
    if rng.random() < 0.5:
        return "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
    return "".join(f"{b:02x}" for b in blob)


def _mojibake(text: str) -> str:
    """Text whose non-ASCII characters were decoded with the wrong codec (what ftfy repairs)."""
    return text.encode("utf-8").decode("latin-1", errors="replace")


def _malformed(rng: random.Random, kind: str, n: int) -> bytes:
    if kind == "truncated_json":
        return f'{{"id": "bad-{n}", "text": "this line was cut'.encode()
    if kind == "invalid_utf8":
        return f'{{"id": "bad-{n}", "text": "caf'.encode() + b"\xe9\xff\xfe" + b' au lait"}'
    if kind == "missing_text":
        return json.dumps({"id": f"bad-{n}", "body": "no text field here"}).encode()
    return json.dumps({"id": f"bad-{n}", "text": rng.choice([42, None, ["a"], {"t": 1}])}).encode()


def build(
    paragraphs: Sequence[str],
    originals: int,
    *,
    exact_rate: float = 0.08,
    near_rate: float = 0.08,
    junk_rate: float = 0.06,
    malformed_rate: float = 0.01,
    mojibake_rate: float = 0.01,
    seed: int = 0,
) -> PlantedCorpus:
    """``originals`` documents of 2–5 random paragraphs each, with copies and junk planted among them."""
    if len(paragraphs) < 10:
        raise ValueError("need at least 10 paragraphs to build a planted corpus")
    rng = random.Random(seed)
    vocab = sorted({w for p in paragraphs[:2000] for w in p.split(" ") if w.isalpha()}) or ["word"]
    corpus = PlantedCorpus(lines=[])
    made: list[tuple[str, str]] = []
    for i in range(originals):
        doc_id = f"orig-{i}"
        text = "\n\n".join(rng.sample(paragraphs, k=rng.randint(2, 5)))
        if rng.random() < mojibake_rate and not text.isascii():
            corpus.lines.append(_record(doc_id, _mojibake(text), "mojibake"))
            corpus.category[doc_id] = "mojibake"
        else:
            corpus.lines.append(_record(doc_id, text, "original"))
            corpus.category[doc_id] = "original"
            made.append((doc_id, text))
        # Copies come after their original in input order, so the original is the one to keep.
        if made and rng.random() < exact_rate:
            ref, src = rng.choice(made)
            cid = f"exact-{len(corpus.ref)}"
            corpus.lines.append(_record(cid, _exact_copy(rng, src), "exact", ref))
            corpus.category[cid], corpus.ref[cid] = "exact", ref
        if made and rng.random() < near_rate:
            ref, src = rng.choice(made)
            if len(src.split()) >= 150:
                cid = f"near-{len(corpus.ref)}"
                corpus.lines.append(_record(cid, _near_copy(rng, src, vocab), "near", ref))
                corpus.category[cid], corpus.ref[cid] = "near", ref
        if rng.random() < junk_rate:
            kind = rng.choice(JUNK_KINDS)
            jid = f"junk-{kind}-{i}"
            corpus.lines.append(_record(jid, _junk(rng, kind), kind))
            corpus.category[jid] = kind
        if rng.random() < malformed_rate:
            corpus.lines.append(_malformed(rng, rng.choice(MALFORMED_KINDS), i))
            corpus.malformed += 1
    return corpus


def score(corpus: PlantedCorpus, kept_ids: Iterable[str]) -> dict[str, float]:
    """Fractions: duplicate pairs resolved to one survivor, junk removed, originals kept.

    A duplicate pair is judged where at least one of its two documents survived: when a quality
    filter removed the original and its copy alike, deduplication had nothing left to decide (those
    pairs are counted under ``*_filtered``).
    """
    kept = set(kept_ids)
    result: dict[str, float] = {}
    for kind in ("exact", "near"):
        pairs = [(c, r) for c, r in corpus.ref.items() if corpus.category[c] == kind]
        survivors = [(c in kept) + (r in kept) for c, r in pairs]
        judged = [s for s in survivors if s > 0]
        result[f"{kind}_pairs"] = len(pairs)
        result[f"{kind}_filtered"] = len(pairs) - len(judged)
        result[f"{kind}_resolved"] = sum(1 for s in judged if s == 1) / len(judged) if judged else 1.0
    junk = [i for i, c in corpus.category.items() if c in JUNK_KINDS]
    result["junk"] = len(junk)
    result["junk_removed"] = sum(1 for i in junk if i not in kept) / len(junk) if junk else 1.0
    originals = [i for i, c in corpus.category.items() if c == "original"]
    result["originals"] = len(originals)
    result["originals_kept"] = sum(1 for i in originals if i in kept) / len(originals) if originals else 1.0
    return result
