"""PII detection: nexus's validated patterns against scrubadub and presidio's pattern recognizers.

Why nexus writes its own patterns (``nexus_llm/data/pii.py``): both libraries' full pipelines need a
spaCy language model downloaded at run time; what runs offline is their pattern detectors, and this
benchmark runs those on the same planted corpus as tests/data/test_pii.py (real prose, standard-library
docstrings and runbooks with e-mails, phone numbers, public IP addresses, card numbers and AWS/GitHub/
Slack keys planted, plus decoys: cards with a wrong checksum, private IPs, versions, order ids):

* recall per kind: planted items no longer in the output;
* decoys touched, and ordinary tokens changed (every token that is not part of a planted item);
* microseconds per document (one process, one thread).

scrubadub: ``Scrubber`` with its default detectors (email, phone via libphonenumber, credit card,
url, twitter...), ``clean()``. presidio: ``EmailRecognizer``, ``PhoneRecognizer``, ``IpRecognizer``,
``CreditCardRecognizer`` and ``UrlRecognizer`` run directly (no NLP engine), matches replaced.
Neither has AWS/GitHub/Slack key detectors, so ``secret`` recall is reported for nexus only.

    pip install scrubadub presidio-analyzer   # benchmark-only peers
    python benchmarks/data_pii.py [--texts N]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from nexus_llm.data import pii  # noqa: E402
from support import planted  # noqa: E402
from support.corpora import example_texts, runbooks, stdlib_docstrings  # noqa: E402


def nexus_redactor():
    scanner = pii.Scanner()

    def run(texts: list[str]) -> list[str]:
        out = []
        for i in range(0, len(texts), 64):
            batch = texts[i : i + 64]
            out += [scanner.redact(t, m) for t, m in zip(batch, scanner.find_batch(batch), strict=True)]
        return out

    return run


def scrubadub_redactor():
    import scrubadub

    scrubber = scrubadub.Scrubber()
    return lambda texts: [scrubber.clean(t) for t in texts]


def presidio_redactor():
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IpRecognizer,
        PhoneRecognizer,
        UrlRecognizer,
    )

    recognizers = [
        EmailRecognizer(),
        PhoneRecognizer(),
        IpRecognizer(),
        CreditCardRecognizer(),
        UrlRecognizer(),
    ]

    def one(text: str) -> str:
        spans = []
        for r in recognizers:
            spans += [(x.start, x.end) for x in r.analyze(text, r.supported_entities, None) if x.score >= 0.4]
        out, last = [], 0
        for start, end in sorted(spans):
            if start < last:
                continue
            out += [text[last:start], "<PII>"]
            last = end
        return "".join([*out, text[last:]])

    return lambda texts: [one(t) for t in texts]


def score(corpus: planted.PlantedPii, outputs: list[str]) -> dict:
    found, total = Counter(), Counter()
    decoys = touched_decoys = ordinary = touched = 0
    for text, out, items, decoy in zip(corpus.texts, outputs, corpus.items, corpus.decoys, strict=True):
        for kind, value in items:
            total[kind] += 1
            found[kind] += value not in out
        decoys += len(decoy)
        touched_decoys += sum(v not in out for v in decoy)
        expected = Counter(text.split())
        for _, value in items:
            expected -= Counter(value.split())
        ordinary += sum(expected.values())
        touched += sum((expected - Counter(out.split())).values())
    return {
        "recall": {k: round(found[k] / total[k], 3) for k in sorted(total)},
        "decoys_touched": round(touched_decoys / decoys, 3),
        "ordinary_touched": round(touched / ordinary, 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--texts", type=int, default=600)
    args = ap.parse_args()
    n = args.texts
    hosts = example_texts(n)[: n // 2] + stdlib_docstrings()[: n // 4] + runbooks(n // 4, seed=5)
    corpus = planted.plant_pii(hosts, seed=3)
    print(
        f"{len(corpus.texts)} texts, {sum(map(len, corpus.items))} planted items, {sum(map(len, corpus.decoys))} decoys"
    )
    runs = {"nexus": nexus_redactor}
    if importlib.util.find_spec("scrubadub"):
        runs["scrubadub"] = scrubadub_redactor
    if importlib.util.find_spec("presidio_analyzer"):
        runs["presidio (pattern recognizers)"] = presidio_redactor
    print(
        "| detector | µs per document | "
        + " | ".join(f"recall: {k}" for k in pii.KINDS)
        + " | decoys touched | ordinary tokens touched |"
    )
    print("|---|---:|" + "---:|" * (len(pii.KINDS) + 2))
    for name, make in runs.items():
        redact = make()
        redact(corpus.texts[:20])  # warm up (lazy imports, compiled patterns)
        started = time.process_time()
        outputs = redact(corpus.texts)
        micros = 1e6 * (time.process_time() - started) / len(corpus.texts)
        s = score(corpus, outputs)
        recalls = " | ".join(f"{s['recall'].get(k, 0):.1%}" for k in pii.KINDS)
        print(
            f"| {name} | {micros:,.0f} | {recalls} | {s['decoys_touched']:.1%} | {s['ordinary_touched']:.2%} |"
        )


if __name__ == "__main__":
    main()
