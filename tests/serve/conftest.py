"""Serving fixtures: a real engine on the tiny model, and uvicorn servers on 127.0.0.1 in threads."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn

from nexus_llm.serve.app import create_app
from nexus_llm.serve.batching import BatchingEngine
from nexus_llm.serve.config import ServeConfig
from nexus_llm.serve.loading import load_model
from support.tiny import build_tiny_model

API_KEY = "test-key-0123456789"


class Served:
    """A running server: its base URL, app and engine."""

    def __init__(self, url: str, app, server: uvicorn.Server) -> None:
        self.url = url
        self.app = app
        self.engine = app.state.engine
        self.server = server

    def client(self, **kw) -> httpx.Client:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=kw.pop("timeout", 60.0), **kw)


@contextmanager
def serve_app(app, ready_timeout: float = 120.0) -> Iterator[Served]:
    """Run ``app`` under uvicorn on a free 127.0.0.1 port in a thread; stop it (drain) on exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=10))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + ready_timeout
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield Served(f"http://127.0.0.1:{port}", app, server)
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def wait_healthy(url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} never became healthy")


def make_engine(model_dir: Path, **kw) -> BatchingEngine:
    """An engine on one torch thread in float32 (outputs are compared with transformers' own generate)."""
    return BatchingEngine(lambda: load_model(str(model_dir), "float32", threads=1), model_dir.name, **kw)


@pytest.fixture(scope="package")
def tiny_engine(tiny_model_dir) -> Iterator[BatchingEngine]:
    """One loaded engine on the tiny model, shared by the servers of this package's tests."""
    import torch

    threads = torch.get_num_threads()  # loading sets it process-wide; other stages' tests get it back
    engine = make_engine(tiny_model_dir, max_batch_size=16)
    engine.start()
    assert engine.wait_ready(120), engine.error
    yield engine
    engine.shutdown(10)
    torch.set_num_threads(threads)


@pytest.fixture(scope="package")
def served(tiny_engine) -> Iterator[Served]:
    """The main test server: API key required, small body limit, default concurrency."""
    settings = ServeConfig(max_body_bytes=64 * 1024, max_tokens=200)
    app = create_app(tiny_engine, settings, [API_KEY], manage_engine=False)
    with serve_app(app) as s:
        yield s


@pytest.fixture(scope="package")
def long_model_dir(tmp_path_factory) -> Path:
    """The tiny model with a 4096-token context, for requests that must still be running when cut."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-long"), max_positions=4096)
