"""Serving-container start: fetch the model named by ``NEXUS_MODEL_URI``, then run the server.

    python -m nexus_llm.deploy.entrypoints.fetch_model [--uri URI] [--dest /opt/ml/model] -- nexus serve /opt/ml/model ...

The URI is a model directory (``s3://<models>/models/<name>/``) or a SageMaker ``model.tar.gz``. With no
URI (unset variable) nothing is fetched: the model is baked into the image or mounted. The download
is why the ECS service gives new tasks a health-check grace period before the load balancer counts.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tarfile
import tempfile

from nexus_llm import storage
from nexus_llm.console import console


def fetch_model(uri: str, dest: str) -> str:
    """Copy a model directory or extract a ``.tar.gz`` into ``dest``; returns ``dest``."""
    os.makedirs(dest, exist_ok=True)
    fs, path = storage.get_fs(uri)
    if uri.endswith((".tar.gz", ".tgz")):
        with tempfile.TemporaryDirectory() as tmp:
            local = os.path.join(tmp, "model.tar.gz")
            fs.get_file(path, local)
            with tarfile.open(local, "r:gz") as tar:
                tar.extractall(dest, filter="data")  # "data" refuses absolute paths and links out of dest
        return dest
    if not fs.isdir(path):
        raise FileNotFoundError(f"model {uri} is neither a directory nor a .tar.gz")
    if storage.is_remote(uri):
        storage.download_dir(uri, dest)
    else:  # a mounted or baked-in directory; download_dir would hand back the source itself
        shutil.copytree(path, dest, dirs_exist_ok=True)
    return dest


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
