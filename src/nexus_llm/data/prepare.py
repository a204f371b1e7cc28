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
from nexus_llm.data import dedup
from nexus_llm.data.config import DataConfig
from nexus_llm.data.plan import Plan, build_plan
from nexus_llm.data.tasks import link_column, load_array, map_split, write_split

OUTPUT_PATTERNS = ("part-*.parquet", "rejected", "quarantine")


class Executor(Protocol):
    name: str

    def run(self, fn: Any, items: list, desc: str) -> list[dict]: ...
    def link_keys(
        self, plan: Plan, splits: list[int], columns: list[int], memory_bytes: int
    ) -> list[np.ndarray]: ...
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
    """Curate ``inputs`` into ``output``; returns the manifest (``up_to_date`` when nothing was redone)."""
    started = time.perf_counter()
    plan = build_plan(inputs, output, cfg)
    existing = storage.read_manifest(output)
    if existing and existing.get("digest") == plan.digest:
        storage.remove(plan.work)
        return {**existing, "up_to_date": True}
    resumed = _start_or_resume(plan)
    own_executor = executor is None
    executor = executor or make_executor(engine or cfg.engine, workers, cfg, spark_master)
    timings = {"plan": time.perf_counter() - started}
    try:
        tick = time.perf_counter()
        map_stats = executor.run(partial(map_split, plan), plan.splits, "read, clean, filter")
        timings["map"], tick = time.perf_counter() - tick, time.perf_counter()
        resolution, survivors = _deduplicate(plan, executor, map_stats, memory_mb << 20)
        timings["dedup"], tick = time.perf_counter() - tick, time.perf_counter()
        by_split: dict[int, dict[int, tuple[str, str]]] = defaultdict(dict)
        for o, (reason, surv) in resolution.removed.items():
            by_split[o >> 32][o] = (reason, survivors[surv])
        items = [(s.index, by_split.get(s.index, {})) for s in plan.splits]
        write_stats = executor.run(partial(_write_item, plan), items, "write")
        timings["write"] = time.perf_counter() - tick
    finally:
        if own_executor:
            executor.close()
    tick = time.perf_counter()
    files = _finalize(plan, write_stats)
    timings["finalize"] = time.perf_counter() - tick
    manifest = _manifest(plan, executor.name, map_stats, write_stats, resolution, files, started, resumed)
    manifest["phase_seconds"] = {k: round(v, 3) for k, v in timings.items()}
    storage.write_manifest(output, manifest)
    storage.remove(plan.work)
    return manifest


def _write_item(plan: Plan, item: tuple[int, dict]) -> dict:
    return write_split(plan, item[0], item[1])


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


def _manifest(plan, engine, map_stats, write_stats, resolution, files, started, resumed) -> dict:
    removed: Counter[str] = Counter()
    for s in map_stats:
        removed.update(s["removed"])
    if resolution.exact:
        removed[dedup.EXACT] = resolution.exact
    if resolution.near:
        removed[dedup.NEAR] = resolution.near
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
        "stage": "data.prepare",
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
        "bytes_in": sum(s["bytes"] for s in map_stats),
        "inputs": plan.inputs,
        "settings": plan.settings,
        "splits": len(plan.splits),
        "splits_resumed": resumed,
        "files": files,
        "seconds": round(seconds, 3),
        "docs_per_second": round(records_in / seconds, 1) if seconds > 0 else None,
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
    console.print(
        f"engine {manifest['engine']}: {manifest['seconds']:.1f} s, {manifest['docs_per_second'] or 0:,.0f} documents/s"
        + (
            f" ({manifest['splits_resumed']} of {manifest['splits']} splits resumed)"
            if manifest.get("splits_resumed")
            else ""
        )
    )
