"""Serving fixtures: a real engine on the tiny model, and uvicorn servers on 127.0.0.1 in threads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nexus_llm.serve.config import ServeConfig
from nexus_llm.serve.engine.batching import BatchingEngine
from nexus_llm.serve.engine.loading import load_model
from nexus_llm.serve.http.app import create_app
from support.serving import API_KEY, Served, serve_app, wait_healthy
from support.tiny import build_tiny_model

__all__ = ["API_KEY", "Served", "serve_app", "wait_healthy"]


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
