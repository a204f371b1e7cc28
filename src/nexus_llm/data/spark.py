"""The Spark engine: the same tasks as the local engine, run as Spark tasks across a cluster.

Every phase is a list of independent tasks over files in the work directory (a split to read, clean,
filter and fingerprint; a key column and hash range to group; a split to write), so Spark only has to
run the very functions the local engine runs, one Spark task each, and both engines decide
identically. No shuffle is needed: a grouping task reads just its key column of every split, and its
memory is bounded by the hash range it groups. Only the links (one per duplicate) and per-task
statistics come back to the driver.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from collections.abc import Sequence
from functools import partial
from typing import Any

from nexus_llm.console import console


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

    def close(self) -> None:
        if self._own:
            self.spark.stop()


def _indexed(fn: Any, pair: tuple[int, Any]) -> tuple[int, dict]:
    return pair[0], fn(pair[1])
