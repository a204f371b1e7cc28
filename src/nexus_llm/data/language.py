"""Language identification with py3langid's model, scored for a batch of documents at once.

py3langid (a maintained fork of langid.py, Lui & Baldwin 2012) ships its model inside the package, so
it runs offline (fastText's ``lid.176`` is downloaded at run time and cannot be). Its model is a naive
Bayes classifier over byte n-gram features, found by walking a finite automaton over the text's
UTF-8 bytes. py3langid walks it one byte at a time in a Python loop, about 2.5 µs per byte here; this
module walks the *same* automaton for a whole batch of documents in lockstep with numpy (one array
step per byte position, all documents at once) and scores with a sparse matrix product, which gives
py3langid's exact probabilities (tests/data/test_language.py compares them) at a small fraction of
the cost (``benchmarks/data_prepare.py --language-only`` measures both).

What is scored: the document's first ``sample_chars`` characters of prose. Lines that are mostly not
letters (code, command lines, tables, listings) are left out, because a classifier of natural
languages has nothing to say about ``$ apt-cache policy nginx``; a document with fewer than
``min_letters`` letters of prose is *undetermined* and kept (``language: "und"`` in its metadata).
The model's ``zxx`` class (no linguistic content) counts as undetermined too.
"""

from __future__ import annotations

import io
import lzma
import threading
import unicodedata
from dataclasses import dataclass
from importlib import resources

import numpy as np
from scipy import sparse

UNDETERMINED = "und"
NO_LANGUAGE = "zxx"

# The labels py3langid 0.4's model knows (ISO 639 codes), checked against the model by the tests;
# kept here so that a configuration can be validated without loading the 68 MB model.
LANGUAGES = frozenset(
    [
        "ace",
        "af",
        "am",
        "an",
        "ar",
        "ary",
        "arz",
        "as",
        "az",
        "ba",
        "bcl",
        "be",
        "bg",
        "bn",
        "br",
        "bs",
        "ca",
        "crh",
        "cs",
        "cy",
        "da",
        "de",
        "dz",
        "el",
        "en",
        "eo",
        "es",
        "et",
        "eu",
        "ext",
        "fa",
        "fi",
        "fo",
        "fr",
        "fuv",
        "fy",
        "ga",
        "gcf",
        "gcr",
        "gd",
        "gl",
        "gom",
        "grc",
        "gu",
        "gug",
        "guw",
        "ha",
        "hbo",
        "he",
        "hi",
        "hr",
        "ht",
        "hu",
        "hy",
        "id",
        "ig",
        "is",
        "it",
        "ja",
        "jv",
        "ka",
        "kab",
        "kik",
        "kk",
        "km",
        "kn",
        "ko",
        "ku",
        "ky",
        "la",
        "lb",
        "lg",
        "lij",
        "ln",
        "lo",
        "lt",
        "ltg",
        "lv",
        "mg",
        "mk",
        "ml",
        "mn",
        "mr",
        "ms",
        "mt",
        "my",
        "ne",
        "nl",
        "nn",
        "no",
        "nso",
        "oc",
        "om",
        "or",
        "pa",
        "pcm",
        "pl",
        "ps",
        "pt",
        "qu",
        "ro",
        "ru",
        "rw",
        "sa",
        "sdh",
        "se",
        "si",
        "sk",
        "sl",
        "sn",
        "so",
        "sq",
        "sr",
        "st",
        "sv",
        "sw",
        "ta",
        "te",
        "tg",
        "th",
        "tk",
        "tl",
        "tr",
        "tt",
        "ug",
        "uk",
        "ur",
        "uz",
        "uzs",
        "vec",
        "vi",
        "vo",
        "wa",
        "wuu",
        "xh",
        "yo",
        "yue",
        "zh",
        "zu",
        "zxx",
    ]
)


@dataclass(frozen=True)
class Result:
    language: str  # an ISO 639 code, or "und"
    score: float | None  # the model's probability of that language (None when undetermined)


class _Model:
    """py3langid's model arrays: the automaton (rows of 256 next states), features, class weights."""

    def __init__(self) -> None:
        blob = (resources.files("py3langid") / "data" / "model.npz.xz").read_bytes()
        with np.load(io.BytesIO(lzma.decompress(blob)), allow_pickle=False) as data:
            self.next_rows = data["nextmove"].astype(np.int32)
            self.row_of = data["nextmove_row"].astype(np.int64) << 8
            self.feature_of = data["out_feat"].astype(np.int32)
            self.weights = data["ptc"].astype(np.float32)  # features x classes
            self.prior = data["pc"].astype(np.float32)
            classes = data["classes"].tolist()
        self.features = self.weights.shape[0]
        # Labels that appear twice (script variants, e.g. sr) share one probability, as in py3langid.
        self.labels = list(dict.fromkeys(classes))
        self.label_index = np.array([self.labels.index(c) for c in classes], dtype=np.int64)
        # a text without features: every class equally likely, script variants folded together
        self.uniform = np.bincount(self.label_index, minlength=len(self.labels)).astype(np.float32)
        self.uniform /= len(classes)


_MODEL: _Model | None = None
_LOCK = threading.Lock()


def model() -> _Model:
    """The model, loaded once per process (about 1.5 s; forked workers inherit it)."""
    global _MODEL
    with _LOCK:
        if _MODEL is None:
            _MODEL = _Model()
    return _MODEL


def encode(text: str) -> bytes:
    """The bytes py3langid scores: lower-cased when all upper case, NFC, UTF-8."""
    if text.isupper():
        text = text.lower()
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    return text.encode("utf-8", errors="surrogatepass")


def probabilities(texts: list[bytes | str]) -> np.ndarray:
    """py3langid's normalized probabilities (``norm_probs=True``), shape (documents, labels).

    One automaton step per byte position for every document at once; features are counted per
    document, weighted by ``log1p(count)`` and multiplied with the feature weights in one sparse
    product, then scaled by ``1/sqrt(bytes)`` and normalized, exactly as py3langid does per text.
    Cost grows with the longest text of the batch: callers pass samples of bounded length.
    """
    m = model()
    data = [t if isinstance(t, bytes) else encode(t) for t in texts]
    n = len(data)
    out = np.repeat(m.uniform[None, :], n, axis=0)
    if n == 0:
        return out
    lengths = np.fromiter(map(len, data), dtype=np.int64, count=n)
    width = int(lengths.max())
    if width == 0:
        return out
    padded = np.zeros((n, width), dtype=np.uint8)
    for i, b in enumerate(data):
        padded[i, : len(b)] = np.frombuffer(b, dtype=np.uint8)
    columns = np.ascontiguousarray(padded.T).astype(np.int64)
    state = np.zeros(n, dtype=np.int64)
    hits = np.empty((width, n), dtype=np.int32)
    for i in range(width):
        state = m.next_rows[m.row_of[state] + columns[i]]
        hits[i] = m.feature_of[state]
    # Per document, its features sorted (padding and featureless states sort last as F), then runs
    # of equal features give each feature's count: a CSR matrix built directly, row by row.
    inside = np.arange(width)[:, None] < lengths[None, :]
    sorted_hits = np.sort(np.where(inside & (hits >= 0), hits, np.int32(m.features)).T, axis=1)
    flat = sorted_hits.ravel()
    new = np.empty(len(flat), dtype=bool)
    new[0] = True
    np.not_equal(flat[1:], flat[:-1], out=new[1:])
    new[::width] = True  # every row starts a run
    starts = np.flatnonzero(new)
    run_counts = np.diff(np.append(starts, len(flat)))
    features, rows = flat[starts], starts // width
    real = features < m.features
    rows, features, run_counts = rows[real], features[real], run_counts[real]
    indptr = np.searchsorted(rows, np.arange(n + 1))
    counts = sparse.csr_matrix(
        (np.log1p(run_counts.astype(np.float32)), features, indptr), shape=(n, m.features)
    )
    scores = np.asarray(counts @ m.weights) + m.prior
    has_features = np.diff(counts.indptr) > 0
    scores *= (1.0 / np.sqrt(np.maximum(lengths, 1)))[:, None].astype(np.float32)
    scores = np.exp(scores - scores.max(axis=1, keepdims=True))
    scores /= scores.sum(axis=1, keepdims=True)
    merged = np.zeros((n, len(m.labels)), dtype=np.float32)
    np.add.at(merged.T, m.label_index, scores.T)  # fold script variants into one label
    out[has_features] = merged[has_features]
    return out


# Bytes that are not letters (ASCII punctuation, digits, spaces, controls); bytes of multi-byte
# UTF-8 characters count as letters, which they almost always are in prose.
_NOT_LETTERS = bytes(b for b in range(128) if not chr(b).isalpha())


def letters(line: bytes) -> int:
    """How many bytes of a UTF-8 line are letters (C speed: one bytes.translate)."""
    return len(line.translate(None, _NOT_LETTERS))


def prose_sample(text: str, sample_chars: int) -> bytes:
    """The first ``sample_chars`` bytes of the lines that read as prose, as py3langid scores them.

    A line is prose when letters are at least half of its non-space characters and it has three or
    more words: commands, code, tables and listings are left out.
    """
    parts: list[bytes] = []
    size = 0
    for line in encode(text[: 8 * sample_chars]).split(b"\n"):
        line = line.strip()
        if line.count(b" ") < 2:
            continue
        if 2 * letters(line) < len(line) - line.count(b" "):
            continue
        parts.append(line)
        size += len(line) + 1
        if size >= sample_chars:
            break
    sample = b" ".join(parts)[:sample_chars]
    # do not end inside a multi-byte character
    while sample and 0x80 <= sample[-1] < 0xC0 + 0x40 and not _complete(sample):
        sample = sample[:-1]
    return sample


def _complete(data: bytes) -> bool:
    try:
        data[-4:].decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def identify(texts: list[str], sample_chars: int = 600, min_letters: int = 30) -> list[Result]:
    """The most likely language of each text's prose, with its probability."""
    samples = [prose_sample(t, sample_chars) for t in texts]
    enough = [letters(s) >= min_letters for s in samples]
    results = [Result(UNDETERMINED, None)] * len(texts)
    rows = [i for i, ok in enumerate(enough) if ok]
    if not rows:
        return results
    m = model()
    probs = probabilities([samples[i] for i in rows])
    best = probs.argmax(axis=1)
    for i, b, p in zip(rows, best.tolist(), probs[np.arange(len(rows)), best].tolist(), strict=True):
        label = m.labels[b]
        results[i] = Result(UNDETERMINED, None) if label == NO_LANGUAGE else Result(label, round(p, 4))
    return results


def check_codes(codes: list[str]) -> list[str]:
    """The codes unchanged, or ValueError naming the unknown ones and where to find valid ones."""
    unknown = [c for c in codes if c not in LANGUAGES or c == NO_LANGUAGE]
    if unknown:
        raise ValueError(
            f"unknown language code(s) {unknown}: use ISO 639 codes that py3langid's model knows, e.g. "
            "en, de, fr, es, zh, ja (all of them: nexus_llm.data.language.LANGUAGES)"
        )
    return codes
