"""``nexus data prepare``."""

from __future__ import annotations

from pathlib import Path

import typer

from nexus_llm.cliopts import schema_option, set_option
from nexus_llm.configbase import with_overrides
from nexus_llm.console import console
from nexus_llm.data.config import DataConfig, SparkConfig


def prepare(
    inputs: list[str] = typer.Argument(
        ..., help="Files, directories or globs, local or s3://: .jsonl[.gz], .json, .parquet, .txt, .md"
    ),
    output: str = typer.Option(..., "-o", "--output", help="Output directory (local path or s3:// prefix)."),
    engine: str | None = schema_option(DataConfig, "engine", "data", "--engine"),
    config: Path = typer.Option(
        None, "-c", "--config", help="nexus.yaml; its data: section sets filters and dedup."
    ),
    workers: int | None = schema_option(DataConfig, "workers", "data", "--workers"),
    spark_master: str | None = schema_option(SparkConfig, "master", "data.spark", "--spark-master"),
    overrides: list[str] | None = set_option(),
) -> None:
    """Clean, filter and deduplicate raw text into curated Parquet shards.

    Writes OUT/part-*.parquet (id, text, source, meta), OUT/rejected/ (every removed document with its
    reason), OUT/quarantine/ (every unreadable record with file, line, error and raw bytes) and
    OUT/manifest.json. Rerun with the same arguments to resume an interrupted run.
    """
    from nexus_llm.config import load_config
    from nexus_llm.data.prepare import print_summary, run_prepare

    cfg = with_overrides(load_config(config, overrides).data, "data", engine=engine, workers=workers)
    manifest = run_prepare(inputs, output, cfg, spark_master=spark_master)
    if manifest.get("up_to_date"):
        console.print(f"[green]up to date[/]: {output} was already prepared from these inputs and settings.")
    print_summary(manifest)
    console.print(f"curated data: {output}")
