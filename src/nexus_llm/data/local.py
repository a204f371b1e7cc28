"""The local engine: worker processes over splits (one split in memory per worker)."""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from nexus_llm.console import progress


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

    def close(self) -> None:
        pass
