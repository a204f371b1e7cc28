"""Fixtures for the deploy tests: moto's AWS server on 127.0.0.1 and config files that point at it."""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tool(name: str) -> str:
    """A CLI next to this interpreter (cfn-lint) or in the tools venv (checkov), else on PATH."""
    candidates = [
        os.environ.get(f"NEXUS_{name.upper().replace('-', '_')}", ""),
        str(Path(sys.executable).with_name(name)),
        str(REPO / ".venv-tools" / "bin" / name),
        shutil.which(name) or "",
    ]
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return c
    pytest.fail(
        f"{name} not found (looked in {', '.join(c for c in candidates if c)}). "
        "Run `make setup`, which installs checkov into .venv-tools from "
        "tests/deploy/checkov-requirements.txt."
    )


@pytest.fixture(scope="module")
def moto_url():
    """moto's server for every AWS service, on a free port, with fake credentials for boto3."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        }.items():
            mp.setenv(key, value)
        mp.delenv("AWS_PROFILE", raising=False)
        yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="session")
def checkov_bin() -> str:
    return _tool("checkov")


@pytest.fixture(scope="session")
def cfn_lint_bin() -> str:
    return _tool("cfn-lint")


@pytest.fixture
def make_config(tmp_path):
    """Write a nexus.yaml with the given aws: section (run name ``demo``) and return its path."""

    def make(aws: dict, name: str = "config.yaml", **top) -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump({"name": "demo", **top, "aws": aws}), encoding="utf-8")
        return path

    return make
