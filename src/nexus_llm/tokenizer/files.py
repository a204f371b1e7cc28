"""Moving finished directories between local disk and a stage's output URI (local path or ``s3://``).

Libraries such as ``transformers`` and ``accelerate`` write only to local paths; stages let them write to a
local staging directory and publish it here, file by file, leaving the completion marker to the caller.
"""

from __future__ import annotations

import hashlib
import os
import shutil

from nexus_llm import storage


def file_sha256(uri: str) -> str:
    """Content hash of one file (tokenizer identity, config identity)."""
    return hashlib.sha256(storage.read_bytes(uri)).hexdigest()


def upload_dir(local_dir: str, uri: str, exclude: tuple[str, ...] = ()) -> list[str]:
    """Copy every file under ``local_dir`` to ``uri`` (each atomically); return the relative paths."""
    copied = []
    for root, _dirs, names in os.walk(local_dir):
        for name in sorted(names):
            rel = os.path.relpath(os.path.join(root, name), local_dir).replace(os.sep, "/")
            if rel in exclude:
                continue
            target = storage.join(uri, *rel.split("/"))
            if not storage.is_remote(uri) and os.path.abspath(target) == os.path.abspath(
                os.path.join(root, name)
            ):
                copied.append(rel)
                continue
            storage.upload_file_atomic(os.path.join(root, name), target)
            copied.append(rel)
    return sorted(copied)


def download_dir(uri: str, local_dir: str) -> str:
    """A local copy of the directory at ``uri`` (``uri`` itself when it is already local)."""
    if not storage.is_remote(uri):
        return uri
    fs, path = storage.get_fs(uri)
    os.makedirs(local_dir, exist_ok=True)
    for found in fs.find(path):
        rel = found[len(path.rstrip("/")) + 1 :]
        dest = os.path.join(local_dir, *rel.split("/"))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        fs.get_file(found, dest)
    return local_dir


def replace_dir(src: str, dest: str) -> None:
    """Move a finished local directory into place, replacing an older one (rename, so atomic per name)."""
    if os.path.exists(dest):
        shutil.rmtree(dest)
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    os.replace(src, dest)


def copy_flat_dir(src_uri: str, dest_uri: str) -> list[str]:
    """Copy the files directly under ``src_uri`` to ``dest_uri`` (small directories, e.g. a tokenizer)."""
    fs, path = storage.get_fs(src_uri)
    names = sorted(storage.basename(p) for p in fs.ls(path, detail=False) if fs.isfile(p))
    for name in names:
        data = storage.read_bytes(storage.join(src_uri, name))
        storage.write_bytes_atomic(storage.join(dest_uri, name), data)
    return names
