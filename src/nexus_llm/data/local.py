"""The local engine: worker processes over splits (one split in memory per worker)."""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

import numpy as np

from nexus_llm import storage
from nexus_llm.console import progress
from nexus_llm.data import dedup
from nexus_llm.data.plan import Plan


class LocalExecutor:
    name = "local"

    def __init__(self, workers: int | None = None):
        self.workers = workers or os.cpu_count() or 1

    def run(self, fn: Callable[[Any], dict], items: Sequence[Any], desc: str) -> list[dict]:
        """Run ``fn`` over items in worker processes; results in item order."""
        results: list[dict | None] = [None] * len(items)
        with progress() as bar:
            task = bar.add_task(desc, total=len(items))
            if self.workers == 1 or len(items) <= 1:
                for i, item in enumerate(items):
                    results[i] = fn(item)
                    bar.advance(task)
            else:
                ctx = mp.get_context("fork")
                with ProcessPoolExecutor(max_workers=min(self.workers, len(items)), mp_context=ctx) as pool:
                    futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
                    for fut in as_completed(futures):
                        results[futures[fut]] = fut.result()
                        bar.advance(task)
        return results  # type: ignore[return-value]

    def link_keys(
        self, plan: Plan, splits: Sequence[int], columns: Sequence[int], memory_bytes: int
    ) -> list[np.ndarray]:
        """For each key column, pairs linking documents with equal keys.

        Keys are grouped one hash range at a time, so the arrays held at once stay within
        ``memory_bytes`` (16 bytes per document in the range) however large the corpus.
        """
        with tempfile.TemporaryDirectory(prefix="nexus-keys-") as cache:
            arrays = [
                (_local(plan, i, "keys.npy", cache), _local(plan, i, "ordinals.npy", cache)) for i in splits
            ]
            total = sum(len(np.load(o, mmap_mode="r")) for _, o in arrays)
            parts = dedup.key_ranges(total, memory_bytes)
            out = []
            for col in columns:
                links = []
                for part in range(parts):
                    keys, ordinals = [], []
                    for k_path, o_path in arrays:
                        k = np.load(k_path, mmap_mode="r")[:, col]
                        mask = dedup.range_of(k, parts) == np.uint64(part)
                        keys.append(k[mask])
                        ordinals.append(np.load(o_path, mmap_mode="r")[mask])
                    if keys:
                        links.append(dedup.link_equal_keys(np.concatenate(keys), np.concatenate(ordinals)))
                out.append(dedup.unique_pairs(links))
        return out

    def close(self) -> None:
        pass


def _local(plan: Plan, split: int, name: str, cache: str) -> str:
    """A local path for a work file (downloaded once when the work directory is remote)."""
    uri = storage.join(plan.split_dir(split), name)
    if not storage.is_remote(uri):
        return uri
    local = os.path.join(cache, f"{split:05d}-{name}")
    with storage.open_file(uri, "rb") as src, open(local, "wb") as dst:
        shutil.copyfileobj(src, dst, 8 << 20)
    return local
