"""Where a model is: a local directory for any model URI (local, ``s3://`` prefix, ``model.tar.gz``).

One cache serves train, eval and serve (:func:`nexus_llm.storage.cached_local_copy`, kind ``models``):
keyed by the remote files' names, sizes and ETags, filled by an atomic rename, so a model retrained into
the same URI is fetched again and replicas starting together on one host can race safely.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile

from nexus_llm import storage

CACHE_KIND = "models"


def fetch_model(uri: str, dest: str) -> str:
    """Copy a model directory or extract a ``.tar.gz`` (local or remote) into ``dest``; returns ``dest``."""
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


def resolve_model(uri: str, cache_dir: str | None = None) -> str:
    """A local directory for ``uri``: itself when local, else a cached download (re-fetched when it changes)."""
    if not storage.is_remote(uri):
        return uri
    return storage.cached_local_copy(uri, kind=CACHE_KIND, fetch=fetch_model, cache_dir=cache_dir)
