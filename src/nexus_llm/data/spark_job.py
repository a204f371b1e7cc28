"""``nexus data prepare --engine spark`` as a script for spark-submit, AWS Glue or EMR.

    spark-submit --py-files nexus_llm.zip spark_job.py --output s3://bucket/curated \\
        [--config s3://bucket/nexus.yaml] s3://bucket/raw/

On Glue, give this file as the job's script and install the package with
``--additional-python-modules nexus-llm`` (or ship the zip with ``--extra-py-files``); Glue's own
arguments (``--JOB_NAME`` and friends) are ignored. The SparkSession comes from the cluster
(``getOrCreate``), so the master and resources are whatever the platform configured.
"""

from __future__ import annotations

import argparse
import json
import sys


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="spark_job.py", description=__doc__.split("\n")[0])
    p.add_argument("inputs", nargs="+", help="input files, directories or globs (local or s3://)")
    p.add_argument("--output", required=True, help="output directory (local or s3://)")
    p.add_argument("--config", help="nexus.yaml (local path or s3:// URI); its data: section is used")
    args, _unknown = p.parse_known_args(argv)  # Glue adds its own --JOB_NAME etc.
    return args


def load_data_config(uri: str | None):
    """The job's config (local or ``s3://``) through the resolver every command uses."""
    from nexus_llm.config import load_config

    return load_config(uri)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from pyspark.sql import SparkSession

    from nexus_llm.data.prepare import run_prepare
    from nexus_llm.data.spark import SparkExecutor

    cfg = load_data_config(args.config)
    spark = SparkSession.builder.appName("nexus-data-prepare").getOrCreate()
    manifest = run_prepare(args.inputs, args.output, cfg.data, executor=SparkExecutor(spark=spark))
    print(json.dumps({k: manifest[k] for k in ("records_in", "records_out", "removed", "quarantined")}))
    return manifest


if __name__ == "__main__":
    main()
