"""What the jobs need in S3: the ``nexus_llm`` package as a zip, scripts, configs, local inputs.

Every S3 call here names the bucket owner it expects (``ExpectedBucketOwner`` = the caller's account):
bucket names are predictable (see :mod:`nexus_llm.deploy.names`), so someone could create
``<project>-data-<suffix>`` in another account first; S3 then refuses the request (403) instead of
sending code, configs or data to a stranger's bucket.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path

from nexus_llm.deploy.clients import AwsClients

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # src/nexus_llm
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)


def split_s3(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def package_zip(package_dir: Path = PACKAGE_DIR) -> bytes:
    """A reproducible zip of the package (sorted entries, fixed times): same code, same bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(package_dir.rglob("*")):
            if path.is_dir() or "__pycache__" in path.parts or path.suffix in {".pyc", ".pyo"}:
                continue
            info = zipfile.ZipInfo(
                f"{package_dir.name}/{path.relative_to(package_dir).as_posix()}", _FIXED_TIME
            )
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, path.read_bytes())
    return buf.getvalue()


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def put_bytes(clients: AwsClients, data: bytes, uri: str) -> str:
    bucket, key = split_s3(uri)
    owner = clients.account_id()
    clients.client("s3").put_object(Bucket=bucket, Key=key, Body=data, ExpectedBucketOwner=owner)
    return uri


def upload_file(clients: AwsClients, path: Path, uri: str) -> str:
    bucket, key = split_s3(uri)
    owner = {"ExpectedBucketOwner": clients.account_id()}
    clients.client("s3").upload_file(os.fspath(path), bucket, key, ExtraArgs=owner)
    return uri


def upload_inputs(clients: AwsClients, inputs: list[str], raw_uri: str) -> list[str]:
    """Local files and directories go to ``raw_uri`` (the only prefix the Glue role reads raw data
    from); ``s3://`` inputs must already be there."""
    out = []
    for item in inputs:
        if item.startswith("s3://"):
            if not item.startswith(raw_uri):
                raise ValueError(
                    f"input {item} is outside {raw_uri}: the Glue role may read raw data only there. "
                    "Copy it there, or pass a local path to have it uploaded."
                )
            out.append(item)
            continue
        path = Path(item)
        if not path.exists():
            raise FileNotFoundError(f"input {item} does not exist")
        if path.is_dir():
            files = {
                f"{path.name}/{f.relative_to(path).as_posix()}": f
                for f in sorted(path.rglob("*"))
                if f.is_file()
            }
            out.append(f"{raw_uri}{path.name}/")
        else:
            files = {path.name: path}
            out.append(f"{raw_uri}{path.name}")
        for rel, f in files.items():
            upload_file(clients, f, f"{raw_uri}{rel}")
    return out
