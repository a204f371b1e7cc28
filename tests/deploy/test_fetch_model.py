"""The serving container's start step: fetch the model (directory or model.tar.gz), then exec the server."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile

import pytest

from nexus_llm.deploy.entrypoints.fetch_model import fetch_model


def _tar(path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_sagemaker_model_tarball_is_extracted(tmp_path):
    _tar(tmp_path / "model.tar.gz", {"config.json": b"{}", "tokenizer/tokenizer.json": b'{"v": 1}'})
    fetch_model(str(tmp_path / "model.tar.gz"), str(tmp_path / "out"))
    assert (tmp_path / "out" / "tokenizer" / "tokenizer.json").read_bytes() == b'{"v": 1}'


def test_tarball_members_escaping_the_destination_are_refused(tmp_path):
    _tar(tmp_path / "evil.tar.gz", {"../escaped.txt": b"x"})
    with pytest.raises(tarfile.TarError):
        fetch_model(str(tmp_path / "evil.tar.gz"), str(tmp_path / "out"))
    assert not (tmp_path / "escaped.txt").exists()


def test_entrypoint_fetches_then_runs_the_server_command(tmp_path):
    src = tmp_path / "model"
    (src / "sub").mkdir(parents=True)
    (src / "config.json").write_text("{}")
    (src / "sub" / "weights.bin").write_bytes(b"\x00\x01")
    dest = tmp_path / "opt-ml-model"
    marker = tmp_path / "served"
    command = [
        sys.executable,
        "-c",
        f"import os; open({str(marker)!r}, 'w').write(str(sorted(os.listdir({str(dest)!r}))))",
    ]
    env = {**os.environ, "NEXUS_MODEL_URI": str(src)}
    entry = [
        sys.executable,
        "-m",
        "nexus_llm.deploy.entrypoints.fetch_model",
        "--dest",
        str(dest),
        "--",
        *command,
    ]
    proc = subprocess.run(entry, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (dest / "sub" / "weights.bin").read_bytes() == b"\x00\x01"
    assert marker.read_text() == "['config.json', 'sub']"  # the command ran after the fetch


def test_missing_model_exits_with_a_message(tmp_path):
    entry = [sys.executable, "-m", "nexus_llm.deploy.entrypoints.fetch_model"]
    args = ["--uri", str(tmp_path / "nope"), "--dest", str(tmp_path / "d")]
    proc = subprocess.run([*entry, *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "cannot fetch the model" in proc.stderr
