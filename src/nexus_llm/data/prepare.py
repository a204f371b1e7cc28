"""``nexus data prepare``: plan → map splits → deduplicate → write → finalize → manifest.

The phases are the same for every engine; an engine only decides where per-split tasks run and how
equal keys are grouped (a sort in this process, or a Spark shuffle). Everything an interrupted run has
finished is kept under ``OUT/_work`` and reused by a rerun with the same inputs and settings; the final
files are moved into place and ``manifest.json`` is written last, then ``_work`` is removed.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from functools import partial
from typing import Any, Protocol

import numpy as np
import pyarrow.parquet as pq

from nexus_llm import storage
from nexus_llm.console import console, table
from nexus_llm.data import decontaminate as decon
from nexus_llm.data import dedup
from nexus_llm.data.config import DataConfig
from nexus_llm.data.plan import Plan, build_plan
from nexus_llm.data.tasks import link_column, load_array, map_split, scan_split, write_split

OUTPUT_PATTERNS = ("part-*.parquet", "rejected", "quarantine")


class Executor(Protocol):
    name: str

    def run(self, fn: Any, items: list, desc: str) -> list[dict]: ...
    def close(self) -> None: ...


def make_executor(
    engine: str, workers: int | None, cfg: DataConfig, spark_master: str | None = None
) -> Executor:
    if engine == "local":
        from nexus_llm.data.local import LocalExecutor

        return LocalExecutor(workers or cfg.workers)
    if engine == "spark":
        from nexus_llm.data.spark import SparkExecutor

        return SparkExecutor(spark_master or cfg.spark.master, cfg.spark.conf)
    raise ValueError(f"unknown engine {engine!r}: use 'local' or 'spark'")


def run_prepare(
    inputs: list[str],
    output: str,
    cfg: DataConfig,
    *,
    engine: str | None = None,
    workers: int | None = None,
    spark_master: str | None = None,
    executor: Executor | None = None,
    memory_mb: int = 1024,
) -> dict:
    """Curate ``inputs`` into ``output``; returns the manifest (``up_to_date`` when nothing was redone).

    Every input and decontamination source is checked (and the sources read) before anything is
    written, so a missing file fails the run before any work starts.
    """
    started = time.perf_counter()
    plan = build_plan(inputs, output, cfg)
    existing = storage.read_manifest(output)
    if existing and existing.get("digest") == plan.digest:
        storage.remove(plan.work)
        return {**existing, "up_to_date": True}
    sources_index = None
    if plan.has_sources_index:
        names, texts, owner = decon.read_texts(cfg.decontaminate)
        sources_index = decon.Index.from_texts(names, texts, owner, cfg.decontaminate, cfg.clean)
    if cfg.language.enabled:
        from nexus_llm.data.language import model

        model()  # load once here: forked workers share it
    resumed = _start_or_resume(plan)
    if sources_index is not None:
        sources_index.save(plan.sources_index)
    own_executor = executor is None
    executor = executor or make_executor(engine or cfg.engine, workers, cfg, spark_master)
    timings = {"plan": time.perf_counter() - started}
    try:
        tick = time.perf_counter()
        map_stats = executor.run(partial(map_split, plan), plan.splits, "read, clean, filter")
        timings["map"], tick = time.perf_counter() - tick, time.perf_counter()
        resolution, survivors = _deduplicate(plan, executor, map_stats, memory_mb << 20)
        timings["dedup"], tick = time.perf_counter() - tick, time.perf_counter()
        contaminated, decontamination = _decontaminate(plan, executor, map_stats, resolution, sources_index)
        if decontamination is not None:
            timings["decontaminate"], tick = time.perf_counter() - tick, time.perf_counter()
        by_split: dict[int, dict[int, tuple[str, str | None]]] = defaultdict(dict)
        flagged: dict[int, dict[int, str]] = defaultdict(dict)
        for o, (reason, surv) in resolution.removed.items():
            by_split[o >> 32][o] = (reason, survivors[surv])
        for o, reason in contaminated.items():
            if cfg.decontaminate.action == "remove":
                by_split[o >> 32][o] = (reason, None)
            else:
                flagged[o >> 32][o] = reason
        items = [(s.index, by_split.get(s.index, {}), flagged.get(s.index, {})) for s in plan.splits]
        write_stats = executor.run(partial(_write_item, plan), items, "write")
        timings["write"] = time.perf_counter() - tick
    finally:
        if own_executor:
            executor.close()
    tick = time.perf_counter()
    files = _finalize(plan, write_stats)
    timings["finalize"] = time.perf_counter() - tick
    manifest = _manifest(
        plan, executor.name, map_stats, write_stats, resolution, files, started, resumed,
        contaminated if cfg.decontaminate.action == "remove" else {}, decontamination,
    )  # fmt: skip
    manifest["phase_seconds"] = {k: round(v, 3) for k, v in timings.items()}
    storage.write_manifest(output, manifest)
    storage.remove(plan.work)
    return manifest


def _write_item(plan: Plan, item: tuple[int, dict, dict]) -> dict:
    return write_split(plan, item[0], item[1], item[2])


def _decontaminate(
    plan: Plan, executor: Executor, map_stats: list[dict], resolution, sources_index: decon.Index | None
) -> tuple[dict[int, str], dict | None]:
    """Training documents that overlap evaluation texts (ordinal → reason), and the report.

    Documents deduplication removed are not training documents and are left out; so are the
    held-out documents themselves when checking against the held-out split.
    """
    cfg = plan.config.decontaminate
    if not cfg.active:
        return {}, None
    duplicates = np.fromiter(resolution.removed, dtype=np.int64, count=len(resolution.removed))
    reasons: dict[int, str] = {}
    report: dict[str, Any] = {
        "ngram": cfg.ngram, "min_words": cfg.min_words, "max_train_docs": cfg.max_train_docs,
        "action": cfg.action, "sources": [], "common_ngrams_ignored": 0,
    }  # fmt: skip
    if sources_index is not None:
        parts = [
            load_array(storage.join(plan.split_dir(s["split"]), "contam.npy"))
            for s in map_stats
            if s.get("contam_hits")
        ]
        hits = np.concatenate(parts) if parts else np.empty((0, 2), np.int64)
        hits = hits[~np.isin(hits[:, 0], duplicates)]
        found, rep = decon.decide(sources_index, hits[:, 0], hits[:, 1], "sources", cfg.max_train_docs)
        reasons.update(found)
        report["sources"] += rep["per_source"]
        report["common_ngrams_ignored"] += rep["common_ngrams_ignored"]
    if cfg.uses_split:
        index, heldout_docs = _heldout_index(plan, map_stats, duplicates)
        index.save(plan.heldout_index)
        by_split: dict[int, list[int]] = defaultdict(list)
        for o in np.concatenate([duplicates, heldout_docs]).tolist():
            by_split[o >> 32].append(o)
        splits = [s["split"] for s in map_stats if s["candidates"]]
        items = [(s, sorted(by_split.get(s, []))) for s in splits] if index.keys else []
        executor.run(partial(scan_split, plan), items, "check overlap with held-out split")
        parts = [load_array(storage.join(plan.split_dir(s), "heldout_hits.npy")) for s, _ in items]
        hits = np.concatenate(parts) if parts else np.empty((0, 2), np.int64)
        found, rep = decon.decide(index, hits[:, 0], hits[:, 1], decon.SPLIT_SOURCE, cfg.max_train_docs)
        for o, reason in found.items():
            reasons.setdefault(o, reason)
        report["sources"] += rep["per_source"]
        report["common_ngrams_ignored"] += rep["common_ngrams_ignored"]
        report["heldout_split"] = {"val_fraction": cfg.val_fraction, "split_seed": cfg.split_seed}
    report["documents"] = len(reasons)
    return reasons, report


def _heldout_index(
    plan: Plan, map_stats: list[dict], duplicates: np.ndarray
) -> tuple[decon.Index, np.ndarray]:
    """The n-grams of the documents the held-out split will hold (those deduplication kept)."""
    triples, docs = [], []
    for s in map_stats:
        if not s.get("heldout_docs"):
            continue
        d = plan.split_dir(s["split"])
        docs.append(np.asarray(load_array(storage.join(d, "heldout_docs.npy"))))
        if storage.exists(storage.join(d, "heldout.npy")):
            triples.append(np.asarray(load_array(storage.join(d, "heldout.npy"))))
    heldout_docs = np.concatenate(docs) if docs else np.empty(0, np.int64)
    heldout_docs = heldout_docs[~np.isin(heldout_docs, duplicates)]
    t = np.concatenate(triples, axis=1) if triples else np.empty((3, 0), np.uint64)
    owners = t[2].astype(np.int64)
    t = t[:, np.isin(owners, heldout_docs)]
    text_of = {o: i for i, o in enumerate(heldout_docs.tolist())}
    text_ids = np.array([text_of[o] for o in t[2].astype(np.int64).tolist()], dtype=np.int64)
    checked = len(np.unique(text_ids))
    stats = [{"texts": len(heldout_docs), "checked": checked, "too_short": len(heldout_docs) - checked}]
    index = decon.Index.from_triples(
        t[0].astype(np.int64),
        t[1],
        text_ids,
        np.zeros(len(heldout_docs), np.int64),
        [decon.SPLIT_SOURCE],
        stats,
    )
    return index, heldout_docs


def _start_or_resume(plan: Plan) -> int:
    """Reuse the work of an interrupted run with the same digest, else clear stale outputs."""
    plan_uri = storage.join(plan.work, "plan.json")
    try:
        old = storage.read_json(plan_uri)
    except FileNotFoundError:
        old = None
    if old and old.get("digest") == plan.digest:
        return sum(
            1 for s in plan.splits if storage.exists(storage.join(plan.split_dir(s.index), "done.json"))
        )
    # Manifest first: a crash during cleanup must never leave a manifest beside missing files.
    storage.remove(storage.join(plan.output, storage.MANIFEST))
    storage.remove(plan.work)
    fs, root = storage.get_fs(plan.output)
    for pattern in OUTPUT_PATTERNS:
        for path in fs.glob(f"{root.rstrip('/')}/{pattern}"):
            fs.rm(path, recursive=True)
    storage.makedirs(plan.output)
    storage.write_json_atomic(plan_uri, plan.to_dict())
    return 0


def _deduplicate(plan: Plan, executor: Executor, map_stats: list[dict], memory_bytes: int):
    cfg = plan.config.dedup
    splits = [s["split"] for s in map_stats if s["candidates"]]
    columns = ([0] if cfg.exact else []) + (list(range(1, cfg.near.bands + 1)) if cfg.near.enabled else [])
    if not columns or not splits:
        return dedup.Resolution({}, 0, 0, 0, 0), {}
    parts = dedup.key_ranges(sum(s["candidates"] for s in map_stats), memory_bytes)
    tasks = [(c, p) for c in columns for p in range(parts)]
    found = executor.run(partial(link_column, plan, splits, parts), tasks, "group dedup keys")
    links = [dedup.unique_pairs(found[i * parts : (i + 1) * parts]) for i in range(len(columns))]
    exact_pairs = links[0] if cfg.exact else np.empty((0, 2), np.int64)
    near_pairs = np.empty((0, 2), np.int64)
    band_pairs = dedup.unique_pairs(links[1:] if cfg.exact else links)
    if cfg.near.enabled and len(band_pairs):
        store = _SignatureStore(plan)
        near_pairs = dedup.confirm_pairs(band_pairs, store.lookup, cfg.near.confirm_threshold)
    resolution = dedup.resolve(exact_pairs, near_pairs, len(band_pairs))
    survivors = _ids_of(plan, {s for _, s in resolution.removed.values()})
    return resolution, survivors


class _SignatureStore:
    """MinHash signatures by document ordinal, loaded split by split from the work directory."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _split(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if index not in self.cache:
            d = self.plan.split_dir(index)
            self.cache[index] = (
                load_array(storage.join(d, "ordinals.npy")),
                load_array(storage.join(d, "sigs.npy")),
            )
        return self.cache[index]

    def lookup(self, ordinals: np.ndarray) -> np.ndarray:
        out = np.empty((len(ordinals), self.plan.config.dedup.near.num_perm), dtype=np.uint32)
        splits = ordinals >> 32
        for s in np.unique(splits).tolist():
            mask = splits == s
            ords, sigs = self._split(s)
            out[mask] = sigs[np.searchsorted(ords, ordinals[mask])]
        return out


def _ids_of(plan: Plan, ordinals: set[int]) -> dict[int, str]:
    """Document ids for the given ordinals (the survivors duplicates point at)."""
    wanted: dict[int, set[int]] = defaultdict(set)
    for o in ordinals:
        wanted[o >> 32].add(o)
    out: dict[int, str] = {}
    for split, ords in sorted(wanted.items()):
        with storage.open_file(storage.join(plan.split_dir(split), "docs.parquet"), "rb") as fh:
            t = pq.read_table(fh, columns=["ordinal", "id"])
        for o, i in zip(t.column("ordinal").to_pylist(), t.column("id").to_pylist(), strict=True):
            if o in ords:
                out[o] = i
    return out


def _finalize(plan: Plan, write_stats: list[dict]) -> dict[str, list[str]]:
    """Move every split's files into place with global sequential names (idempotent)."""
    names = {
        "part": "part-{:05d}.parquet",
        "rejected": "rejected/part-{:05d}.parquet",
        "quarantine": "quarantine/part-{:05d}.parquet",
    }
    counters: Counter[str] = Counter()
    files: dict[str, list[str]] = {k: [] for k in names}
    for stats in sorted(write_stats, key=lambda s: s["split"]):
        for name in stats["files"]:
            kind = name.rsplit("-", 1)[0]
            rel = names[kind].format(counters[kind])
            counters[kind] += 1
            src = storage.join(plan.final_dir(stats["split"]), name)
            dst = storage.join(plan.output, rel)
            if storage.exists(src):
                storage.move(src, dst)
            elif not storage.exists(dst):
                raise RuntimeError(f"finalize: neither {src} nor {dst} exists; rerun to rebuild")
            files[kind].append(rel)
    return files


def _manifest(
    plan, engine, map_stats, write_stats, resolution, files, started, resumed, contaminated, decontamination
) -> dict:
    removed: Counter[str] = Counter()
    for s in map_stats:
        removed.update(s["removed"])
    if resolution.exact:
        removed[dedup.EXACT] = resolution.exact
    if resolution.near:
        removed[dedup.NEAR] = resolution.near
    removed.update(contaminated.values())
    records_in = sum(s["records"] for s in map_stats)
    quarantined = sum(s["quarantined"] for s in map_stats)
    records_out = sum(s["kept"] for s in write_stats)
    if records_in != records_out + sum(removed.values()) + quarantined:
        raise RuntimeError(
            f"internal error: counts do not reconcile ({records_in} in, {records_out} out, "
            f"{sum(removed.values())} removed, {quarantined} quarantined)"
        )
    seconds = time.perf_counter() - started
    return {
        "stage": "data",
        "digest": plan.digest,
        "engine": engine,
        "records_in": records_in,
        "records_out": records_out,
        "removed": dict(sorted(removed.items())),
        "quarantined": quarantined,
        "dedup": {
            "exact_duplicates": resolution.exact,
            "near_duplicates": resolution.near,
            "candidate_pairs": resolution.candidates,
            "confirmed_pairs": resolution.confirmed,
        },
        "pii": _pii_summary(plan.config, map_stats),
        "language": _language_summary(plan.config, map_stats),
        "decontamination": decontamination,
        "bytes_in": sum(s["bytes"] for s in map_stats),
        "inputs": plan.inputs,
        "settings": plan.settings,
        "splits": len(plan.splits),
        "splits_resumed": resumed,
        "files": files,
        "seconds": round(seconds, 3),
        "docs_per_second": round(records_in / seconds, 1) if seconds > 0 else None,
    }


def _pii_summary(cfg: DataConfig, map_stats: list[dict]) -> dict | None:
    """Personal data found, per kind; what was done with it; the first samples (masked)."""
    if not cfg.pii.enabled:
        return None
    found: Counter[str] = Counter()
    samples: dict[str, list[dict]] = {}
    documents = 0
    for s in sorted(map_stats, key=lambda s: s["split"]):
        p = s.get("pii") or {}
        documents += p.get("documents", 0)
        found.update(p.get("found", {}))
        for kind, items in p.get("samples", {}).items():
            kept = samples.setdefault(kind, [])
            kept.extend(items[: max(cfg.pii.samples - len(kept), 0)])
    return {
        "redact": cfg.pii.redact,
        "reject": cfg.pii.reject,
        "documents": documents,
        "found": {k: found[k] for k in cfg.pii.kinds if found[k]},
        "redacted": {k: found[k] for k in cfg.pii.redact if found[k]},
        "samples": samples,
    }


def _language_summary(cfg: DataConfig, map_stats: list[dict]) -> dict | None:
    if not cfg.language.enabled:
        return None
    identified: Counter[str] = Counter()
    for s in map_stats:
        identified.update(s.get("languages", {}))
    return {
        "languages": cfg.language.languages,
        "min_score": cfg.language.min_score,
        "identified": dict(identified.most_common()),
    }


def print_summary(manifest: dict) -> None:
    n_in = manifest["records_in"] or 1
    rows = [
        ("documents in", manifest["records_in"], "100.0%"),
        ("kept", manifest["records_out"], f"{100 * manifest['records_out'] / n_in:.1f}%"),
    ]
    rows += [
        (f"removed: {reason}", count, f"{100 * count / n_in:.1f}%")
        for reason, count in manifest["removed"].items()
    ]
    rows.append(("quarantined", manifest["quarantined"], f"{100 * manifest['quarantined'] / n_in:.1f}%"))
    console.print(table("nexus data prepare", ["", "documents", "share"], rows))
    pii = manifest.get("pii")
    if pii and pii.get("found"):
        actions = {k: "redacted" for k in pii["redact"]} | {k: "document rejected" for k in pii["reject"]}
        console.print(
            table(
                f"personal data and secrets (in {pii['documents']:,} documents)",
                ["kind", "found", "action"],
                [(kind, count, actions.get(kind, "")) for kind, count in pii["found"].items()],
            )
        )
    decon = manifest.get("decontamination")
    if decon:
        for src in decon["sources"]:
            console.print(
                f"decontamination: {src['source']}: {src['texts_found']:,} of {src['checked']:,} evaluation "
                f"texts found in {src['documents']:,} training documents ({decon['action']}d)"
            )
    console.print(
        f"engine {manifest['engine']}: {manifest['seconds']:.1f} s, {manifest['docs_per_second'] or 0:,.0f} documents/s"
        + (
            f" ({manifest['splits_resumed']} of {manifest['splits']} splits resumed)"
            if manifest.get("splits_resumed")
            else ""
        )
    )
