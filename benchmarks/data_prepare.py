"""Benchmark: the guide's Glue job and datatrove against ``nexus data prepare`` (local and Spark engines).

Builds a corpus of at least 100,000 documents deterministically from the bundled example corpus, with
planted exact duplicates, near-duplicates, junk and malformed lines (``tests/support/planted.py``), then
runs on the same file, one after the other on the same machine:

  1. the guide's Glue job (``../shared/baselines/seed_glue_job.py``) on Spark ``local[2]``;
  2. ``nexus data prepare --engine local --workers 2`` (default settings: PII redaction, the
     ``technical`` preset, dedup, decontamination against the held-out split);
  3. the same with language ID too (``data.language: [en]``): the full curation;
  4. ``nexus data prepare --engine spark --spark-master local[2]`` (default settings);
  5. datatrove's equivalent pipeline (``benchmarks/data_datatrove.py``: language, Gopher, C4, PII,
     MinHash; 2 workers) on the same records, as 16 shards without the malformed lines (datatrove stops
     reading a file at its first invalid UTF-8 line and passes non-string text on), when datatrove is
     installed (``pip install datatrove orjson spacy``: a benchmark-only peer, not a dependency).

Each is timed as a user runs it (a fresh process, JVM start-up included) and scored against the
planted answers. Results are printed as a table and written to ``.bench/data_prepare.json``.

    python benchmarks/data_prepare.py            # 100,000 originals (~115,000 records)
    python benchmarks/data_prepare.py --small    # 5,000 originals, for a quick check
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))  # support/planted.py: the planted corpus

from support import planted  # noqa: E402

BASELINE = ROOT.parent / "shared" / "baselines" / "seed_glue_job.py"


def example_paragraphs() -> list[str]:
    texts = []
    for f in sorted((ROOT / "examples" / "corpus").glob("*.jsonl.gz")):
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            texts.extend(json.loads(line)["text"] for line in fh)
    return planted.paragraphs_of(texts)


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of a command and every process it starts.

    Spark's JVM is a grandchild that is not always reaped by its parent, so resource usage of
    children misses it; the process tree is sampled with psutil instead.
    """
    import psutil

    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    root = psutil.Process(proc.pid)
    seen: dict[int, float] = {}
    while proc.poll() is None:
        try:
            for p in [root, *root.children(recursive=True)]:
                try:
                    t = p.cpu_times()
                    seen[p.pid] = t.user + t.system
                except psutil.NoSuchProcess:
                    pass
        except psutil.NoSuchProcess:
            pass
        time.sleep(0.2)
    _, stderr = proc.communicate()
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{stderr[-3000:]}")
    return seconds, sum(seen.values())


def baseline_kept(out: Path) -> list[str]:
    table = pq.read_table(out)
    return [m["doc"] for m in table.column("meta").to_pylist() if m]


def nexus_kept(out: Path) -> tuple[list[str], int]:
    manifest = json.loads((out / "manifest.json").read_text())
    ids = [i for f in manifest["files"]["part"] for i in pq.read_table(out / f).column("id").to_pylist()]
    return ids, manifest["quarantined"]


def datatrove_kept(out: Path) -> list[str]:
    ids = []
    for f in sorted(out.glob("*.jsonl.gz")):
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            ids.extend(json.loads(line)["id"] for line in fh)
    return ids


def _write_shards(corpus: planted.PlantedCorpus, directory: Path, count: int) -> None:
    """The well-formed records, in ``count`` JSON-lines files (datatrove runs one task per file)."""
    good = []
    for line in corpus.lines:
        try:
            obj = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(obj, dict) and isinstance(obj.get("text"), str):
            good.append(line)
    per = -(-len(good) // count)
    for i in range(count):
        (directory / f"part-{i:02d}.jsonl").write_bytes(
            b"".join(x + b"\n" for x in good[i * per : (i + 1) * per])
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--originals", type=int, default=100_000)
    ap.add_argument("--small", action="store_true", help="5,000 originals")
    ap.add_argument("--workdir", default=str(ROOT / ".bench" / "data_prepare"))
    ap.add_argument(
        "--skip", nargs="*", default=[], choices=["baseline", "local", "full", "spark", "datatrove"]
    )
    args = ap.parse_args()
    n = 5_000 if args.small else args.originals
    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    corpus = planted.build(example_paragraphs(), originals=n, seed=42)
    data = work / "corpus.jsonl"
    corpus.write(str(data))
    counts = corpus.counts()
    print(
        f"corpus: {len(corpus.lines):,} records, {data.stat().st_size / 1e6:.0f} MB; planted {dict(counts)}"
    )

    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    nexus = [sys.executable, "-m", "nexus_llm.cli", "data", "prepare", str(data)]
    full_yaml = work / "full.yaml"
    full_yaml.write_text("data:\n  language: [en]\n")
    shards = work / "datatrove-in"
    shards.mkdir()
    _write_shards(corpus, shards, 16)
    datatrove = [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import data_datatrove; "
                 "data_datatrove.main(sys.argv[2], sys.argv[3], 2)", str(ROOT / "benchmarks"), str(shards),
                 str(work / "datatrove")]  # fmt: skip
    runs = {
        "guide Glue job (Spark local[2])": ("baseline", [sys.executable, str(BASELINE), str(data), str(work / "baseline"), "--master", "local[2]"]),
        "nexus local (2 workers)": ("local", [*nexus, "-o", str(work / "local"), "--workers", "2"]),
        "nexus local, full curation (+ language ID)": ("full", [*nexus, "-o", str(work / "full"), "--workers", "2", "-c", str(full_yaml)]),
        "nexus spark (local[2])": ("spark", [*nexus, "-o", str(work / "spark"), "--engine", "spark", "--spark-master", "local[2]"]),
        "datatrove (language, Gopher, C4, PII, MinHash; 2 workers)": ("datatrove", datatrove),
    }  # fmt: skip
    if importlib.util.find_spec("datatrove") is None and "datatrove" not in args.skip:
        print("datatrove is not installed (pip install datatrove orjson spacy): its run is skipped")
        args.skip.append("datatrove")
    results = []
    for label, (key, cmd) in runs.items():
        if key in args.skip:
            continue
        seconds, cpu = timed(cmd, env)
        if key == "baseline":
            kept, quarantined = baseline_kept(work / "baseline"), 0
        elif key == "datatrove":
            kept, quarantined = datatrove_kept(work / "datatrove" / "final"), 0
        else:
            kept, quarantined = nexus_kept(work / key)
        score = planted.score(corpus, kept)
        results.append(
            {"run": label, "key": key, "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 1),
             "docs_per_second": round(len(corpus.lines) / seconds, 1),
             "cpu_seconds_per_1000_docs": round(1000 * cpu / len(corpus.lines), 2),
             "kept": len(kept), "quarantined": quarantined, **score}
        )  # fmt: skip
        print(f"{label}: {seconds:.1f} s wall, {cpu:.1f} s CPU")

    base = next((r for r in results if r["key"] == "baseline"), None)
    print()
    peer = next((r for r in results if r["key"] == "datatrove"), None)
    print(
        f"| run | seconds | CPU seconds | docs/s | CPU s per 1,000 docs | vs guide (wall) | vs guide (CPU) | vs datatrove (wall) | vs datatrove (CPU) | exact pairs resolved | near pairs resolved | junk removed | originals kept | malformed quarantined (of {corpus.malformed}) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        ratio = f"{base['seconds'] / r['seconds']:.2f}x" if base else "-"
        cpu_ratio = f"{base['cpu_seconds'] / r['cpu_seconds']:.2f}x" if base else "-"
        peer_ratio = f"{peer['seconds'] / r['seconds']:.2f}x" if peer else "-"
        peer_cpu = f"{peer['cpu_seconds'] / r['cpu_seconds']:.2f}x" if peer else "-"
        print(f"| {r['run']} | {r['seconds']:.1f} | {r['cpu_seconds']:.0f} | {r['docs_per_second']:,.0f} | {r['cpu_seconds_per_1000_docs']:.2f} | {ratio} | {cpu_ratio} | {peer_ratio} | {peer_cpu} | {r['exact_resolved']:.1%} | "
              f"{r['near_resolved']:.1%} | {r['junk_removed']:.1%} | {r['originals_kept']:.1%} | {r['quarantined']} |")  # fmt: skip
    meta = {"records": len(corpus.lines), "planted": dict(counts), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "python": platform.python_version(), "results": results}  # fmt: skip
    (work.parent / "data_prepare.json").write_text(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
