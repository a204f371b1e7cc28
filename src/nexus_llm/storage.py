"""Object storage for every stage: fsspec URIs (local paths or ``s3://``), atomic writes, manifests.

A stage is complete exactly when its ``manifest.json`` exists: stages write their outputs first and
the manifest last, through :func:`write_json_atomic`, so an interrupted stage is never mistaken for a
complete one. Local writes go to a temporary name and are renamed into place; an S3 PUT is already
atomic (an object appears whole or not at all).

S3 endpoint and credentials come from the standard AWS variables (``AWS_ENDPOINT_URL_S3``,
``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ...) or from ``storage:`` in ``nexus.yaml`` via
:func:`configure`.
"""

from __future__ import annotations

import contextlib
import glob as _glob
import json
import os
import posixpath
import shutil
import uuid
from collections.abc import Iterable
from typing import Any

import fsspec
from fsspec.core import url_to_fs

MANIFEST = "manifest.json"

_s3_options: dict[str, Any] = {}


def configure(
    endpoint_url: str | None = None,
    region: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
) -> None:
    """Set S3 options for this process (from ``nexus.yaml``); unset values fall back to AWS variables."""
    _s3_options.clear()
    if endpoint_url:
        _s3_options["endpoint_url"] = endpoint_url
    if region:
        _s3_options["region"] = region
    if access_key_id:
        _s3_options["key"] = access_key_id
    if secret_access_key:
        _s3_options["secret"] = secret_access_key


def s3_options() -> dict[str, Any]:
    """fsspec/s3fs keyword arguments for the configured or environment-given S3 endpoint."""
    endpoint = (
        _s3_options.get("endpoint_url")
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
    )
    opts: dict[str, Any] = {}
    client_kwargs: dict[str, Any] = {}
    if endpoint:
        client_kwargs["endpoint_url"] = endpoint
    region = _s3_options.get("region") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        client_kwargs["region_name"] = region
    if client_kwargs:
        opts["client_kwargs"] = client_kwargs
    for key in ("key", "secret"):
        if key in _s3_options:
            opts[key] = _s3_options[key]
    return opts


def unreachable(err: BaseException) -> str | None:
    """A message for a failure to reach the object store (connection refused or dropped, timeouts,
    no credentials), found anywhere in ``err``'s chain of causes; ``None`` for any other error.

    s3fs retries such failures before it gives up, so reaching here means the endpoint stayed away.
    """
    try:
        from botocore.exceptions import ConnectionError as BotoConnectionError
        from botocore.exceptions import HTTPClientError, NoCredentialsError, PartialCredentialsError
    except ImportError:  # no S3 libraries, so no S3 failure
        return None
    kinds = (BotoConnectionError, HTTPClientError, NoCredentialsError, PartialCredentialsError)
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, kinds):
            if isinstance(current, NoCredentialsError | PartialCredentialsError):
                return f"{current}: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or storage: in nexus.yaml)"
            return (
                f"{current}. The object store stopped answering, so the command stopped. Outputs are "
                "marked complete only when finished (manifest.json last), so nothing half-written "
                "will be used: run the same command again once the endpoint answers."
            )
        current = current.__cause__ or current.__context__
    return None


def is_remote(uri: str) -> bool:
    return "://" in str(uri) and not str(uri).startswith("file://")


def storage_options(uri: str) -> dict[str, Any]:
    return s3_options() if str(uri).startswith(("s3://", "s3a://")) else {}


def get_fs(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem for ``uri`` and the path inside it."""
    uri = str(uri)
    if uri.startswith("s3a://"):
        uri = "s3://" + uri[len("s3a://") :]
    return url_to_fs(uri, **storage_options(uri))


def join(base: str, *parts: str) -> str:
    """Join path parts onto a local path or URI."""
    base = str(base)
    if is_remote(base):
        return posixpath.join(base, *parts)
    return os.path.join(base, *parts)


def basename(uri: str) -> str:
    return posixpath.basename(str(uri).rstrip("/"))


def exists(uri: str) -> bool:
    fs, path = get_fs(uri)
    return fs.exists(path)


def makedirs(uri: str) -> None:
    """Create a directory (a no-op on object stores, which have none)."""
    if not is_remote(uri):
        os.makedirs(uri, exist_ok=True)


def open_file(uri: str, mode: str = "rb", **kwargs: Any):
    """Open a local path or URI (``compression="infer"`` to read ``.gz`` transparently)."""
    return fsspec.open(str(uri), mode, **storage_options(uri), **kwargs).open()


def read_bytes(uri: str) -> bytes:
    fs, path = get_fs(uri)
    return fs.cat_file(path)


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def read_json(uri: str) -> Any:
    return json.loads(read_bytes(uri))


def write_bytes_atomic(uri: str, data: bytes) -> None:
    """Write a whole file so that readers see the old content or the new one, never a part."""
    uri = str(uri)
    if is_remote(uri):
        fs, path = get_fs(uri)
        fs.pipe_file(path, data)
        return
    with _local_replace(uri) as fh:
        fh.write(data)


@contextlib.contextmanager
def _local_replace(path: str):
    """A file handle on a temporary name beside ``path``, renamed over it once written and synced."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{uuid.uuid4().hex}")
    try:
        with open(tmp, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text_atomic(uri: str, text: str) -> None:
    write_bytes_atomic(uri, text.encode("utf-8"))


def write_json_atomic(uri: str, obj: Any) -> None:
    write_bytes_atomic(uri, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def upload_file_atomic(local_path: str, uri: str) -> None:
    """Copy a finished local file to ``uri`` atomically (rename locally, single PUT remotely)."""
    uri = str(uri)
    if is_remote(uri):
        fs, path = get_fs(uri)
        fs.put_file(local_path, path)
        return
    with open(local_path, "rb") as src, _local_replace(uri) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)


def remove(uri: str, recursive: bool = True) -> None:
    """Remove a file or directory tree if it exists."""
    fs, path = get_fs(uri)
    if fs.exists(path):
        fs.rm(path, recursive=recursive)


def move(src: str, dst: str) -> None:
    """Move a file: a rename locally, copy-then-delete on object stores."""
    if not is_remote(src) and not is_remote(dst):
        os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
        os.replace(src, dst)
        return
    fs, path = get_fs(src)
    fs.mv(path, get_fs(dst)[1])


def listdir(uri: str) -> list[str]:
    """Names (not paths) directly under ``uri``; empty when it does not exist."""
    fs, path = get_fs(uri)
    if not fs.exists(path):
        return []
    return sorted(basename(p) for p in fs.ls(path, detail=False) if basename(p) != basename(path))


def size(uri: str) -> int:
    fs, path = get_fs(uri)
    return int(fs.size(path))


def _hidden(relative: str) -> bool:
    """Whether any component of a path found under a directory is hidden (``.x``) or private (``_x``)."""
    return any(part.startswith((".", "_")) for part in relative.split("/"))


def _unstrip(uri: str, found: str) -> str:
    """Give a path found by fsspec back its protocol, as the user wrote it."""
    if is_remote(uri):
        protocol = str(uri).split("://", 1)[0]
        return f"{protocol}://{found}"
    return found


def expand(inputs: Iterable[str], suffixes: tuple[str, ...] | None = None) -> list[str]:
    """Expand files, directories (recursively) and globs into a sorted, de-duplicated file list.

    Raises ``FileNotFoundError`` naming the input that matched nothing.
    """
    out: list[str] = []
    for item in inputs:
        item = str(item)
        fs, path = get_fs(item)
        if _glob.has_magic(item):
            # like a shell, '*' does not match hidden files
            found = [p for p in fs.glob(path) if fs.isfile(p) and not basename(p).startswith(".")]
        elif fs.isdir(path):
            root = path.rstrip("/") + "/"
            found = [p for p in fs.find(path) if not _hidden(p[len(root) :] if p.startswith(root) else p)]
        elif fs.exists(path):
            found = [path]
        else:
            raise FileNotFoundError(f"input {item!r} does not exist")
        if suffixes is not None:
            found = [p for p in found if p.lower().endswith(suffixes)]
        if not found:
            what = f" with a suffix in {', '.join(suffixes)}" if suffixes else ""
            raise FileNotFoundError(f"input {item!r} matched no files{what}")
        out.extend(_unstrip(item, p) for p in sorted(found))
    seen: set[str] = set()
    return [p for p in out if not (p in seen or seen.add(p))]


def fingerprint(uri: str) -> str:
    """A content identity for a file: xxh3-128 of the bytes locally, the object's ETag remotely.

    Used to decide whether a stage's inputs changed (content, not timestamps).
    """
    fs, path = get_fs(uri)
    if is_remote(uri):
        info = fs.info(path)
        tag = info.get("ETag") or info.get("etag") or info.get("checksum") or info.get("md5")
        if tag:
            return f"etag:{str(tag).strip(chr(34))}:{info.get('size')}"
    import xxhash

    h = xxhash.xxh3_128()
    with fs.open(path, "rb") as fh:
        while block := fh.read(8 << 20):
            h.update(block)
    return f"xxh3:{h.hexdigest()}"


def read_manifest(directory: str) -> dict[str, Any] | None:
    """The stage manifest under ``directory``, or ``None`` when the stage is not complete."""
    uri = join(directory, MANIFEST)
    try:
        return read_json(uri)
    except FileNotFoundError:
        return None


def claim_output(directory: str, stage: str, what: str) -> dict[str, Any]:
    """Take ``directory`` over for a new run of ``stage`` and return the old manifest (``{}`` if none).

    Refuses another stage's output (``what`` names this stage's, in the message); removes the manifest
    first, so a rewrite that is interrupted never looks complete. The caller then removes old outputs.
    """
    old = read_manifest(directory) or {}
    if old.get("stage", stage) != stage:
        raise ValueError(f"{directory!r} holds the output of `{old['stage']}`, not {what}: choose another -o")
    remove(join(directory, MANIFEST))
    return old


def write_manifest(directory: str, manifest: dict[str, Any]) -> None:
    """Mark a stage complete. Call after every other output is written."""
    write_json_atomic(join(directory, MANIFEST), manifest)


# --- whole directories -----------------------------------------------------------------------------
# Libraries such as transformers and accelerate write only to local paths: stages let them write to a
# local staging directory and publish it with upload_dir, leaving their completion marker for last.


def file_sha256(uri: str) -> str:
    """Content hash of one (small) file: a tokenizer's or a config's identity."""
    import hashlib

    return hashlib.sha256(read_bytes(uri)).hexdigest()


TRANSFER_CONCURRENCY = 16
"""Files copied at once to or from object storage (s3fs runs them concurrently on its event loop)."""


def upload_dir(local_dir: str, uri: str, exclude: tuple[str, ...] = (), what: str | None = None) -> list[str]:
    """Copy every file under ``local_dir`` to ``uri`` (each atomically); return the relative paths.

    To object storage the files go concurrently (:data:`TRANSFER_CONCURRENCY` at a time, each one a
    single PUT or a multipart upload, so each appears whole or not at all), with a progress display
    of the bytes sent. ``what`` names the copy in that display.
    """
    pairs = []
    for root, _dirs, names in os.walk(local_dir):
        for name in sorted(names):
            source = os.path.join(root, name)
            rel = os.path.relpath(source, local_dir).replace(os.sep, "/")
            if rel not in exclude:
                pairs.append((rel, source, join(uri, *rel.split("/"))))
    if is_remote(uri) and pairs:
        fs, _ = get_fs(uri)
        total = sum(os.path.getsize(source) for _, source, _ in pairs)
        with _transfer(what or f"upload to {uri}", total) as callback:
            fs.put(
                [source for _, source, _ in pairs],
                [get_fs(target)[1] for _, _, target in pairs],
                callback=callback,
                batch_size=TRANSFER_CONCURRENCY,
            )
    else:
        for _rel, source, target in pairs:
            if os.path.abspath(target) != os.path.abspath(source):
                upload_file_atomic(source, target)
    return sorted(rel for rel, _, _ in pairs)


def download_dir(uri: str, local_dir: str, what: str | None = None) -> str:
    """A local copy of the directory at ``uri`` (``uri`` itself when it is already local).

    Files are fetched concurrently (:data:`TRANSFER_CONCURRENCY` at a time) with a progress display of
    the bytes received. A file is written in place, so callers download into a directory they rename
    into place once complete (:func:`cached_local_copy`) or that they fill again on every run.
    """
    if not is_remote(uri):
        return uri
    fs, path = get_fs(uri)
    base = path.rstrip("/")
    found = {p: info for p, info in fs.find(base, detail=True).items() if info.get("type") != "directory"}
    os.makedirs(local_dir, exist_ok=True)
    sources, targets = [], []
    for remote in sorted(found):
        dest = os.path.join(local_dir, *remote[len(base) + 1 :].split("/"))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        sources.append(remote)
        targets.append(dest)
    if sources:
        total = sum(int(found[p].get("size") or 0) for p in sources)
        with _transfer(what or f"download {uri}", total) as callback:
            fs.get(sources, targets, callback=callback, batch_size=TRANSFER_CONCURRENCY)
    return local_dir


@contextlib.contextmanager
def _transfer(description: str, total_bytes: int):
    """An fsspec callback that shows the bytes of a many-file copy in one progress bar."""
    from fsspec.callbacks import Callback

    from nexus_llm.console import transfer_progress

    with transfer_progress() as bar:
        task = bar.add_task(description, total=total_bytes)

        class FileBytes(Callback):
            """One file's callback: its byte counts go to the shared bar."""

            def call(self, *args: Any, **kwargs: Any) -> None:
                pass

            def relative_update(self, inc: int = 1) -> None:
                bar.advance(task, inc)

        class AllFiles(Callback):
            """The copy's callback: counts files, and hands each file a :class:`FileBytes`."""

            def branched(self, path_1: str, path_2: str, **kwargs: Any) -> Callback:
                return FileBytes()

        yield AllFiles()


def copy_flat_dir(src_uri: str, dest_uri: str, only: Iterable[str] | None = None) -> list[str]:
    """Copy the files directly under ``src_uri`` to ``dest_uri`` (small directories, e.g. a tokenizer).

    ``only`` limits the copy to those file names (e.g. the tokenizer files of a model directory).
    """
    fs, path = get_fs(src_uri)
    wanted = set(only) if only is not None else None
    names = sorted(
        basename(p)
        for p in fs.ls(path, detail=False)
        if fs.isfile(p) and (wanted is None or basename(p) in wanted)
    )
    for name in names:
        write_bytes_atomic(join(dest_uri, name), read_bytes(join(src_uri, name)))
    return names


def replace_local_dir(src: str, dest: str) -> None:
    """Move a finished local directory into place, replacing an older one."""
    if os.path.exists(dest):
        shutil.rmtree(dest)
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    os.replace(src, dest)


# --- a local cache of remote directories (models to evaluate or serve) -------------------------------


def cache_root() -> str:
    """``NEXUS_CACHE``, else ``$XDG_CACHE_HOME/nexus_llm`` (``~/.cache/nexus_llm``)."""
    return os.environ.get("NEXUS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "nexus_llm"
    )


def remote_identity(uri: str) -> str:
    """A key that changes whenever the remote object(s) change: names, sizes and ETags."""
    import hashlib

    fs, path = get_fs(uri)
    infos = list(fs.find(path, detail=True).values()) if fs.isdir(path) else [fs.info(path)]
    parts = sorted(
        (str(i.get("name")), i.get("size"), str(i.get("ETag") or i.get("mtime") or "")) for i in infos
    )
    return hashlib.sha256(json.dumps([uri, parts], default=str).encode()).hexdigest()[:24]


def cached_local_copy(uri: str, kind: str = "models", fetch=None, cache_dir: str | None = None) -> str:
    """A local directory holding ``uri``: itself when local, else a cached download.

    The cache key is :func:`remote_identity`, so a changed remote (a retrained model at the same URI)
    is downloaded again; downloads land in a temporary directory renamed into place, so a partial
    download is never used. ``fetch(uri, dest)`` does the copying (default :func:`download_dir`).
    """
    import tempfile

    if not is_remote(uri):
        return uri
    root = cache_dir or os.path.join(cache_root(), kind)
    target = os.path.join(root, remote_identity(uri))
    if os.path.isdir(target):
        return target
    os.makedirs(root, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".download-", dir=root)
    try:
        (fetch or download_dir)(uri, tmp)
        try:
            os.replace(tmp, target)
        except OSError:
            if not os.path.isdir(target):  # another process finished the same download first: fine
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
