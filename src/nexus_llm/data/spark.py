"""The Spark engine: the same per-split tasks as Spark tasks, equal keys grouped by a Spark shuffle.

Per-split work (read, clean, filter, fingerprint; write survivors) runs the very functions the local
engine runs, one Spark task per split, so both engines decide identically. Grouping documents by
their dedup keys, the step whose memory grows with the corpus, is a ``groupBy`` over a DataFrame
built with Arrow from the splits' key files; only the resulting links (one per duplicate) come back
to the driver.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any

import numpy as np

from nexus_llm import storage
from nexus_llm.console import console
from nexus_llm.data import dedup
from nexus_llm.data.plan import Plan
from nexus_llm.data.tasks import load_array

KEY_SCHEMA = "col int, key long, ordinal long"


def _local_cores(master: str) -> int | None:
    m = re.fullmatch(r"local\[(\d+|\*)\]", master)
    if m:
        return os.cpu_count() if m.group(1) == "*" else int(m.group(1))
    return 1 if master == "local" else None


def spark_session(master: str, conf: dict[str, str] | None = None, app_name: str = "nexus-data-prepare"):
    """A SparkSession; on a local master it binds to 127.0.0.1 and runs without its web UI."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    # pyspark warns about pandas 3 on import of its Arrow helpers; nothing here uses pandas.
    warnings.filterwarnings(
        "ignore", message="PySpark does not yet fully support pandas", category=FutureWarning
    )
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(master).appName(app_name)
    cores = _local_cores(master)
    defaults: dict[str, str] = {
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.ui.showConsoleProgress": "false",
    }
    if cores is not None:
        defaults.update(
            {
                "spark.ui.enabled": "false",
                "spark.driver.bindAddress": "127.0.0.1",
                "spark.driver.host": "127.0.0.1",
                "spark.sql.shuffle.partitions": str(max(2, 2 * cores)),
            }
        )
    for key, value in {**defaults, **(conf or {})}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


class SparkExecutor:
    name = "spark"

    def __init__(self, master: str = "local[*]", conf: dict[str, str] | None = None, spark: Any = None):
        self.spark = spark or spark_session(master, conf)
        self._own = spark is None

    def run(self, fn: Any, items: Sequence[Any], desc: str) -> list[dict]:
        """One Spark task per item; results in item order."""
        if not items:
            return []
        sc = self.spark.sparkContext
        sc.setJobDescription(desc)
        with console.status(f"spark: {desc} ({len(items)} tasks)"):
            pairs = sc.parallelize(list(enumerate(items)), len(items)).map(partial(_indexed, fn)).collect()
        return [result for _, result in sorted(pairs, key=lambda p: p[0])]

    def link_keys(
        self, plan: Plan, splits: Sequence[int], columns: Sequence[int], memory_bytes: int
    ) -> list[np.ndarray]:
        """Group equal keys with a shuffle; link each document to the first with its key."""
        from pyspark.sql import functions as F

        splits_df = self.spark.createDataFrame([(int(s),) for s in splits], "split int").repartition(
            len(splits), "split"
        )
        keyed = splits_df.mapInArrow(partial(_key_batches, plan, list(columns)), KEY_SCHEMA)
        grouped = (
            keyed.groupBy("col", "key")
            .agg(F.min("ordinal").alias("first"), F.collect_list("ordinal").alias("members"))
            .where(F.size("members") > 1)
        )
        links = grouped.select("col", "first", F.explode("members").alias("other")).where("other != first")
        with console.status("spark: group dedup keys"):
            table = links.toArrow()
        col = table.column("col").to_numpy()
        pairs = np.stack([table.column("first").to_numpy(), table.column("other").to_numpy()], axis=1).astype(
            np.int64
        )
        return [dedup.unique_pairs([pairs[col == c]]) for c in columns]

    def close(self) -> None:
        if self._own:
            self.spark.stop()


def _indexed(fn: Any, pair: tuple[int, Any]) -> tuple[int, dict]:
    return pair[0], fn(pair[1])


def _key_batches(plan: Plan, columns: list[int], batches: Iterator[Any]) -> Iterator[Any]:
    """Arrow batches of (column, key, ordinal) for the splits named in the incoming batches."""
    import pyarrow as pa

    for batch in batches:
        for split in batch.column("split").to_pylist():
            d = plan.split_dir(split)
            keys = load_array(storage.join(d, "keys.npy"))
            ordinals = np.asarray(load_array(storage.join(d, "ordinals.npy")), dtype=np.int64)
            for c in columns:
                yield pa.RecordBatch.from_arrays(
                    [
                        pa.array(np.full(len(ordinals), c, dtype=np.int32)),
                        # Spark has no unsigned 64-bit type: the same bits as a signed long keep equality.
                        pa.array(np.ascontiguousarray(keys[:, c]).view(np.int64)),
                        pa.array(ordinals),
                    ],
                    names=["col", "key", "ordinal"],
                )
