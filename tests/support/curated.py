"""Reading a curated-data directory back in tests."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from nexus_llm import storage


def read(out: Path | str, kind: str = "part") -> list[dict]:
    """Rows of one kind of output (part, rejected, quarantine), in manifest order."""
    m = storage.read_manifest(str(out))
    return [row for f in m["files"][kind] for row in pq.read_table(Path(out) / f).to_pylist()]
