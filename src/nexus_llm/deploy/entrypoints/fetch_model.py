"""Serving-container start: fetch the model named by ``NEXUS_MODEL_URI``, then run the server.

    python -m nexus_llm.deploy.entrypoints.fetch_model [--uri URI] [--dest /opt/ml/model] -- nexus serve /opt/ml/model ...

The URI is a model directory (``s3://<models>/models/<name>/``) or a SageMaker ``model.tar.gz``. With no
URI (unset variable) nothing is fetched: the model is baked into the image or mounted. The download
is why the ECS service gives new tasks a health-check grace period before the load balancer counts.
"""

from __future__ import annotations

import argparse
import os
import sys

from nexus_llm.console import console
from nexus_llm.models.loading import fetch_model  # the one copy: train, eval and serve use it too


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    own, command = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    p = argparse.ArgumentParser(prog="python -m nexus_llm.deploy.entrypoints.fetch_model")
    p.add_argument("--uri", default=os.environ.get("NEXUS_MODEL_URI", ""))
    p.add_argument("--dest", default="/opt/ml/model")
    args = p.parse_args(own)
    if args.uri:
        console.print(f"fetching model {args.uri} -> {args.dest}")
        try:
            fetch_model(args.uri, args.dest)
        except (FileNotFoundError, OSError) as err:
            console.print(f"[bold red]cannot fetch the model[/]: {err}")
            sys.exit(2)
    if command:
        os.execvp(command[0], command)


if __name__ == "__main__":
    main()
