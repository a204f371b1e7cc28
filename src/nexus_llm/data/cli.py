"""``nexus data prepare``."""

from __future__ import annotations

from pathlib import Path

import typer

from nexus_llm.console import console


def prepare(
    inputs: list[str] = typer.Argument(
        ..., help="Files, directories or globs, local or s3://: .jsonl[.gz], .json, .parquet, .txt, .md"
    ),
    output: str = typer.Option(..., "-o", "--output", help="Output directory (local path or s3:// prefix)."),
    engine: str = typer.Option(None, "--engine", help="local (worker processes, default) or spark."),
    config: Path = typer.Option(
        None, "-c", "--config", help="nexus.yaml; its data: section sets filters and dedup."
    ),
    workers: int = typer.Option(
        None, "--workers", min=1, help="Local worker processes (default: CPU count)."
    ),
    spark_master: str = typer.Option(None, "--spark-master", help="Spark master URL (default: local[*])."),
) -> None:
    """Clean, filter and deduplicate raw text into curated Parquet shards.

    Writes OUT/part-*.parquet (id, text, source, meta), OUT/rejected/ (every removed document with its
    reason), OUT/quarantine/ (every unreadable record with file, line, error and raw bytes) and
    OUT/manifest.json. Rerun with the same arguments to resume an interrupted run.
    """
    from nexus_llm.config import load_config
    from nexus_llm.data.prepare import print_summary, run_prepare

    cfg = load_config(config).data
    if engine is not None and engine not in ("local", "spark"):
        raise typer.BadParameter(f"unknown engine {engine!r}: use local or spark", param_hint="--engine")
    manifest = run_prepare(inputs, output, cfg, engine=engine, workers=workers, spark_master=spark_master)
    if manifest.get("up_to_date"):
        console.print(f"[green]up to date[/]: {output} was already prepared from these inputs and settings.")
    print_summary(manifest)
    console.print(f"curated data: {output}")
