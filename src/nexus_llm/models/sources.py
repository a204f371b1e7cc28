"""What a model source is, and a local copy of it.

A source is one of:

- a GGUF file (``*.gguf``, local or ``s3://``): llama.cpp's format, possibly quantized;
- a Hugging Face model directory (``config.json`` + safetensors or ``pytorch_model*.bin``), local or an
  ``s3://`` prefix;
- a SageMaker ``model.tar.gz`` (local or ``s3://``) holding such a directory.
"""

from __future__ import annotations

import hashlib
import tarfile
from dataclasses import dataclass
from pathlib import Path

from nexus_llm import storage
from nexus_llm.models.errors import ModelError

GGUF_MAGIC = b"GGUF"
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "model*.bin")


@dataclass(frozen=True)
class LocalSource:
    """A source made local: ``kind`` is ``gguf`` (``path`` is the file) or ``hf`` (``path`` is a directory)."""

    kind: str
    path: Path
    uri: str
    digest: str


def is_tarball(uri: str) -> bool:
    return uri.endswith((".tar.gz", ".tgz"))


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(8 << 20):
            h.update(block)
    return f"sha256:{h.hexdigest()}"


def dir_digest(path: Path) -> str:
    """SHA-256 over every file's relative name and content (a model directory is read once anyway)."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
        h.update(f"{f.relative_to(path).as_posix()}\n".encode())
        with open(f, "rb") as fh:
            while block := fh.read(8 << 20):
                h.update(block)
    return f"sha256:{h.hexdigest()}"


def check_gguf(path: Path) -> None:
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != GGUF_MAGIC:
        raise ModelError(
            f"{path} is not a GGUF file (it starts with {magic!r}, not b'GGUF'): a corrupt or partial "
            "download? Fetch it again."
        )


def weight_files(path: Path) -> list[Path]:
    return sorted({p for pattern in WEIGHT_PATTERNS for p in path.glob(pattern)})


def check_hf_dir(path: Path, uri: str) -> None:
    """A Hugging Face model directory, with weights: say precisely what is missing otherwise."""
    if not (path / "config.json").is_file():
        ggufs = sorted(path.glob("*.gguf"))
        hint = f" It holds {ggufs[0].name}: import that file instead." if ggufs else ""
        raise ModelError(f"{uri} has no config.json: not a Hugging Face model directory.{hint}")
    if not weight_files(path):
        raise ModelError(
            f"{uri} has a config.json but no weights (*.safetensors or pytorch_model*.bin): an incomplete "
            "copy? Copy the weight files too."
        )


def _extract(tarball: Path, dest: Path) -> Path:
    try:
        with tarfile.open(tarball, "r:*") as tar:
            tar.extractall(dest, filter="data")  # "data" refuses absolute paths and links out of dest
    except (tarfile.TarError, OSError, EOFError) as err:
        raise ModelError(f"cannot unpack {tarball}: {err}") from None
    # SageMaker's model.tar.gz holds the files at its root; some tools add one top folder
    entries = [p for p in dest.iterdir() if not p.name.startswith(".")]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else dest


def localize(uri: str, scratch: Path) -> LocalSource:
    """Make ``uri`` local (downloading or unpacking into ``scratch``), check it, and digest its content."""
    if storage.is_remote(uri):
        fs, path = storage.get_fs(uri)
        if not fs.exists(path):
            raise ModelError(f"{uri} does not exist")
        if fs.isdir(path):
            local = Path(storage.download_dir(uri, str(scratch / "download")))
        else:
            local = scratch / storage.basename(uri)
            scratch.mkdir(parents=True, exist_ok=True)
            fs.get_file(path, str(local))
    else:
        local = Path(uri).expanduser()
        if not local.exists():
            raise ModelError(
                f"{uri} does not exist: give a GGUF file, a model directory, s3:// or model.tar.gz"
            )
    if local.is_file() and is_tarball(local.name):
        digest = file_digest(local)
        unpacked = _extract(local, scratch / "unpacked")
        check_hf_dir(unpacked, uri)
        return LocalSource("hf", unpacked, uri, digest)
    if local.is_file():
        check_gguf(local)
        return LocalSource("gguf", local, uri, file_digest(local))
    check_hf_dir(local, uri)
    return LocalSource("hf", local, uri, dir_digest(local))
