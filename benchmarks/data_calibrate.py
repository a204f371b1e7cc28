"""Calibration of the quality presets: documents each rule removes, per kind of corpus and preset.

The thresholds of the ``technical`` and ``code`` presets (``nexus_llm/data/config.py``) were chosen on
these corpora, so that clean text keeps at least 97% of its documents and junk loses at least 95%:

  prose        the bundled example corpus (Austen, the King James Bible, The Devil's Dictionary)
  technical    the documentation Debian installs under /usr/share/doc (README, NEWS, *.md, *.txt,
               *.rst; changelogs and copyright files left out), cut into sections at headings and
               about every 4,000 characters
  runbooks     operations runbooks made by ``planted.runbook`` (seed 0): commands and their output,
               config snippets, package listings, around short prose
  code         Python source files of the installed third-party packages, cut into ~4,000-character
               pieces at blank lines
  junk kinds   ``planted.junk_document`` (seed 0): short fragments, repeated-line spam, base-64/hex
               blobs, site boilerplate, lorem ipsum, word salad, keyword stuffing, hex dumps

The held-out check (tests/data/test_presets.py) uses other text: Python's standard-library docstrings,
runbooks and junk from other seeds. Prints one Markdown table per preset (paste into docs/data.md).

    python benchmarks/data_calibrate.py [--limit N]
"""

from __future__ import annotations

import argparse
import glob
import gzip
import json
import os
import random
import re
import sys
import sysconfig
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))  # support/planted.py: the planted corpus

from nexus_llm.data.clean import clean_text  # noqa: E402
from nexus_llm.data.config import CleanConfig, FiltersConfig  # noqa: E402
from nexus_llm.data.document import DocView  # noqa: E402
from nexus_llm.data.filters import filter_batch  # noqa: E402
from support import planted  # noqa: E402

CLEAN_KINDS = ("prose", "technical", "runbooks", "code")


def sections(text: str, max_chars: int = 4000, min_words: int = 20) -> list[str]:
    """A text cut at Markdown/reST headings and about every ``max_chars``, at blank lines."""
    out, current, size = [], [], 0
    for para in re.split(r"\n\s*\n", text):
        heading = re.match(r"#{1,3} |\S.*\n[=-]{3,}\s*$", para)
        if current and (size + len(para) > max_chars or heading):
            out.append("\n\n".join(current))
            current, size = [], 0
        current.append(para)
        size += len(para)
    if current:
        out.append("\n\n".join(current))
    return [s for s in out if len(s.split()) >= min_words]


def system_docs(limit: int | None = None) -> list[str]:
    docs = []
    for f in sorted(glob.glob("/usr/share/doc/**/*", recursive=True)):
        name = os.path.basename(f)
        if not os.path.isfile(f) or "changelog" in name.lower() or name == "copyright":
            continue
        base = name.removesuffix(".gz")
        if not (
            base.endswith((".md", ".txt", ".rst", ".markdown")) or base.startswith(("README", "NEWS", "FAQ"))
        ):
            continue
        try:
            raw = gzip.decompress(Path(f).read_bytes()) if name.endswith(".gz") else Path(f).read_bytes()
            docs += sections(raw.decode("utf-8"))
        except (OSError, UnicodeDecodeError, EOFError):
            continue
    return docs[:limit] if limit else docs


def package_code(limit: int | None = None) -> list[str]:
    site = sysconfig.get_paths()["purelib"]
    docs = []
    for f in sorted(glob.glob(f"{site}/*/**/*.py", recursive=True)):
        try:
            docs += sections(Path(f).read_text(encoding="utf-8"), min_words=10)
        except (OSError, UnicodeDecodeError):
            continue
        if limit and len(docs) >= limit:
            break
    return docs[:limit] if limit else docs


def example_prose() -> list[str]:
    texts = []
    for f in sorted((ROOT / "examples" / "corpus").glob("*.jsonl.gz")):
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            texts.extend(json.loads(line)["text"] for line in fh)
    return texts


def corpora(limit: int | None, seed: int = 0) -> dict[str, list[str]]:
    rng = random.Random(seed)
    prose = example_prose()
    vocab = sorted({w for t in prose[:300] for w in t.split()})
    out = {
        "prose": prose[:limit] if limit else prose,
        "technical": system_docs(limit),
        "runbooks": [planted.runbook(rng) for _ in range(limit or 1000)],
        "code": package_code(limit or 3000),
    }
    for kind in planted.JUNK_KINDS_ALL:
        out[f"junk: {kind}"] = [planted.junk_document(rng, kind, vocab) for _ in range(200)]
    return out


def reasons(texts: list[str], cfg: FiltersConfig) -> list[str | None]:
    clean = CleanConfig()
    out: list[str | None] = []
    for i in range(0, len(texts), 64):
        views = [DocView(clean_text(t, clean)) for t in texts[i : i + 64]]
        out += [r for _, r in filter_batch(views, cfg).results]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=None, help="documents per clean corpus")
    ap.add_argument("--presets", nargs="*", default=["web", "technical", "code"])
    args = ap.parse_args()
    data = corpora(args.limit)
    print("corpora: " + ", ".join(f"{k} {len(v):,}" for k, v in data.items()))
    summary = {}
    for preset in args.presets:
        cfg = FiltersConfig.model_validate({"preset": preset})
        counts = {kind: Counter(reasons(texts, cfg)) for kind, texts in data.items()}
        rules = sorted({r for c in counts.values() for r in c if r is not None})
        kinds = list(data)
        print(f"\n### preset `{preset}`\n")
        print("| rule (first to fail) | " + " | ".join(kinds) + " |")
        print("|---|" + "---:|" * len(kinds))
        for rule in rules:
            print(f"| `{rule}` | " + " | ".join(str(counts[k][rule] or "") for k in kinds) + " |")
        print("| **documents** | " + " | ".join(f"{len(data[k]):,}" for k in kinds) + " |")
        row = []
        for k in kinds:
            kept = counts[k][None] / len(data[k])
            row.append(f"**{kept:.1%} kept**" if k in CLEAN_KINDS else f"**{1 - kept:.1%} removed**")
        print("| **result** | " + " | ".join(row) + " |")
        summary[preset] = {k: round(counts[k][None] / len(data[k]), 4) for k in kinds}
    print("\nkept share per preset and corpus:", json.dumps(summary))


if __name__ == "__main__":
    main()
