"""AWS Glue entry script: Glue's key/value job arguments → the curation job's command line.

Glue passes only ``--key value`` pairs (plus its own ``--JOB_ID``, ``--TempDir`` ...), so the input list
cannot be positional as in ``spark_job.py INPUT... --output OUT``. ``nexus aws submit-data-job`` uploads
this file as the job's script and starts runs with ``--nexus-inputs`` (a JSON list), ``--nexus-output``
and optionally ``--nexus-config``; the ``nexus_llm`` package itself comes from ``--extra-py-files``.
Kept free of nexus imports at module level so it can be unit-tested and read on its own.
"""

from __future__ import annotations

import argparse
import json
import sys


def spark_job_argv(glue_argv: list[str]) -> list[str]:
    """The ``spark_job.py`` arguments for Glue's ``sys.argv[1:]`` (Glue's own arguments are ignored)."""
    p = argparse.ArgumentParser(prog="glue_entry.py")
    p.add_argument("--nexus-inputs", required=True, help="JSON list of input URIs")
    p.add_argument("--nexus-output", required=True)
    p.add_argument("--nexus-config", default="")
    args, _glue_own = p.parse_known_args(glue_argv)
    inputs = json.loads(args.nexus_inputs)
    if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) for i in inputs):
        raise SystemExit("--nexus-inputs must be a non-empty JSON list of URIs")
    argv = ["--output", args.nexus_output]
    if args.nexus_config:
        argv += ["--config", args.nexus_config]
    return [*argv, *inputs]


def main() -> None:
    from nexus_llm.data import spark_job

    spark_job.main(spark_job_argv(sys.argv[1:]))


if __name__ == "__main__":
    main()
