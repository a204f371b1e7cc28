"""Held-out corpora for the quality-preset tests: text the presets were not calibrated on.

The presets were calibrated (benchmarks/data_calibrate.py) on Debian's /usr/share/doc, runbooks and
junk from seed 0, and installed third-party Python code. These tests use instead:

* ``stdlib_docstrings``: the docstrings of Python's standard library (modules, classes, functions;
  30 words or more), written by CPython's developers: API reference prose with doctest sessions,
  signatures, option lists and code; present wherever Python 3.11 is;
* runbooks and junk from other seeds of the same generators (``planted.runbook``, ``junk_document``):
  held out by seed only, so their test is weaker than the docstrings' and says so;
* the standard library's own Python source, cut like the calibration code, for the ``code`` preset.
"""

from __future__ import annotations

import gzip
import importlib
import inspect
import json
import random
import sys
import sysconfig
import warnings
from pathlib import Path

from support import planted

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "corpus"


def example_texts(limit: int | None = None) -> list[str]:
    """The bundled example corpus (Austen, the King James Bible, The Devil's Dictionary)."""
    texts = []
    for f in sorted(EXAMPLES.glob("*.jsonl.gz")):
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            texts.extend(json.loads(line)["text"] for line in fh)
    return texts[:limit] if limit else texts


SKIP = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "lib2to3", "pydoc_data"}


def stdlib_docstrings(min_words: int = 30) -> list[str]:
    docs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in sorted(sys.stdlib_module_names):
            if name.startswith("_") or name in SKIP:
                continue
            try:
                module = importlib.import_module(name)
            except Exception:  # platform-specific modules (winreg, msvcrt, ...)
                continue
            objects = [module] + [
                obj
                for _, obj in sorted(vars(module).items())
                if (inspect.isclass(obj) or inspect.isfunction(obj))
                and getattr(obj, "__module__", None) == name
            ]
            for obj in objects:
                doc = inspect.getdoc(obj)
                if doc and len(doc.split()) >= min_words:
                    docs.append(doc)
    return docs


def code_sections(text: str, max_chars: int = 4000, min_words: int = 10) -> list[str]:
    out, current, size = [], [], 0
    for para in text.split("\n\n"):
        if current and size + len(para) > max_chars:
            out.append("\n\n".join(current))
            current, size = [], 0
        current.append(para)
        size += len(para)
    if current:
        out.append("\n\n".join(current))
    return [s for s in out if len(s.split()) >= min_words]


def stdlib_source(limit: int = 1500) -> list[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    docs: list[str] = []
    for f in sorted(root.glob("*.py")):
        try:
            docs += code_sections(f.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            continue
        if len(docs) >= limit:
            break
    return docs[:limit]


def runbooks(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [planted.runbook(rng) for _ in range(n)]


def junk(per_kind: int, seed: int, vocab: list[str]) -> dict[str, list[str]]:
    rng = random.Random(seed)
    return {
        k: [planted.junk_document(rng, k, vocab) for _ in range(per_kind)] for k in planted.JUNK_KINDS_ALL
    }
