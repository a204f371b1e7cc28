"""Whole-directory copies to and from a real S3 server (SeaweedFS): concurrent, with byte progress."""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path

import pytest
from rich.console import Console
from rich.progress import Progress

from nexus_llm import console, storage

pytestmark = pytest.mark.s3


def _tree(root) -> dict[str, bytes]:
    """40 files in nested folders, 1 byte to 300 KB, each with distinct content."""
    files = {}
    for i in range(40):
        rel = f"{'sub/' if i % 3 else ''}{'deep/' if i % 7 == 0 else ''}file-{i:02d}.bin"
        data = os.urandom(1 + (i * 7919) % 300_000)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files[rel] = data
    return files


@pytest.fixture
def recorded(monkeypatch):
    """The transfer displays shown, drawn into a string instead of the terminal."""
    shown: list[Progress] = []

    def make() -> Progress:
        bar = Progress(console=Console(file=io.StringIO(), force_terminal=True), transient=True)
        shown.append(bar)
        return bar

    monkeypatch.setattr(console, "transfer_progress", make)
    return shown


@pytest.fixture
def in_flight(monkeypatch):
    """The most file transfers s3fs had running at once (its coroutines, on the real server)."""
    import s3fs

    state = {"now": 0, "max": 0}

    def counting(name):
        original = getattr(s3fs.S3FileSystem, name)

        async def wrapper(self, *args, **kwargs):
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
            try:
                await asyncio.sleep(0.01)  # let the others start: a sequential copy still counts 1
                return await original(self, *args, **kwargs)
            finally:
                state["now"] -= 1

        monkeypatch.setattr(s3fs.S3FileSystem, name, wrapper)

    counting("_put_file")
    counting("_get_file")
    return state


def test_directories_travel_concurrently_with_byte_progress(s3_env, tmp_path, recorded, in_flight):
    bucket = s3_env.create_bucket("storage-copy")
    files = _tree(tmp_path / "src")
    total = sum(len(d) for d in files.values())

    copied = storage.upload_dir(str(tmp_path / "src"), f"{bucket}/model", exclude=("file-03.bin",))
    assert copied == sorted(rel for rel in files if rel != "file-03.bin")
    assert in_flight["max"] > 1  # files went up side by side, not one after another
    up = recorded[-1].tasks[0]
    assert up.total == total - len(files["file-03.bin"]) and up.completed == up.total

    in_flight["max"] = 0
    local = storage.download_dir(f"{bucket}/model", str(tmp_path / "back"))
    assert in_flight["max"] > 1
    back = {p.relative_to(local).as_posix(): p.read_bytes() for p in Path(local).rglob("*") if p.is_file()}
    assert back == {rel: data for rel, data in files.items() if rel != "file-03.bin"}
    down = recorded[-1].tasks[0]
    assert down.completed == down.total == up.total
