"""Checkpoints that are complete or absent, local or in object storage, and resumed automatically.

``<checkpoint_dir>/checkpoint-<step>/`` holds accelerate's state (model weights as safetensors,
optimizer, the scheduler, every process's RNG states), ``trainer_state.json`` (step, data position,
the identity of the data) and, written last, ``COMPLETE``. Only checkpoints with ``COMPLETE`` are ever
resumed or counted, so a process killed mid-save never leaves a checkpoint that looks usable.

Local: accelerate writes into ``.tmp-checkpoint-<step>``, which is renamed into place and then marked.
Remote (``s3://``): accelerate writes to a node-local staging directory, every node uploads its files,
and the main process writes ``COMPLETE`` after all uploads, so a new machine can resume from it.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from typing import Any

from nexus_llm import storage

COMPLETE = "COMPLETE"
STATE = "trainer_state.json"
_NAME = re.compile(r"^checkpoint-(\d+)$")


def complete_checkpoints(checkpoint_dir: str) -> list[tuple[int, str]]:
    """``(step, uri)`` of every complete checkpoint, oldest first."""
    found = []
    for name in storage.listdir(checkpoint_dir):
        match = _NAME.match(name)
        if match and storage.exists(storage.join(checkpoint_dir, name, COMPLETE)):
            found.append((int(match.group(1)), storage.join(checkpoint_dir, name)))
    return sorted(found)


def latest_checkpoint(checkpoint_dir: str) -> tuple[int, str] | None:
    found = complete_checkpoints(checkpoint_dir)
    return found[-1] if found else None


def save_checkpoint(
    accelerator, checkpoint_dir: str, step: int, state: dict[str, Any], staging: str, keep: int
) -> str:
    """Save on every process; return the checkpoint's URI once it is complete."""
    name = f"checkpoint-{step}"
    final = storage.join(checkpoint_dir, name)
    remote = storage.is_remote(checkpoint_dir)
    local = os.path.join(staging, name) if remote else os.path.join(checkpoint_dir, f".tmp-{name}")
    if accelerator.is_local_main_process and os.path.exists(local):
        shutil.rmtree(local)
    accelerator.wait_for_everyone()
    accelerator.save_state(local)
    accelerator.wait_for_everyone()
    if remote and accelerator.is_local_main_process:
        storage.upload_dir(local, final)
        shutil.rmtree(local, ignore_errors=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if not remote:
            storage.write_json_atomic(os.path.join(local, STATE), state)
            storage.replace_local_dir(local, final)
        else:
            storage.write_json_atomic(storage.join(final, STATE), state)
        storage.write_json_atomic(storage.join(final, COMPLETE), {"step": step, "time": time.time()})
        prune(checkpoint_dir, keep)
    accelerator.wait_for_everyone()
    return final


def prune(checkpoint_dir: str, keep: int) -> None:
    """Delete all but the newest ``keep`` complete checkpoints, and incomplete ones older than them."""
    complete = complete_checkpoints(checkpoint_dir)
    if not complete:
        return
    for _step, uri in complete[:-keep]:
        storage.remove(uri)
    newest = complete[-1][0]
    for name in storage.listdir(checkpoint_dir):
        match = _NAME.match(name.removeprefix(".tmp-"))
        uri = storage.join(checkpoint_dir, name)
        if match and int(match.group(1)) < newest and (int(match.group(1)), uri) not in complete:
            storage.remove(uri)


def load_checkpoint(accelerator, uri: str, staging: str) -> dict[str, Any]:
    """Restore model, optimizer, scheduler and RNG states on every process; return the trainer state."""
    local = uri
    if storage.is_remote(uri):
        local = os.path.join(staging, "resume-" + storage.basename(uri))
        if accelerator.is_local_main_process:
            shutil.rmtree(local, ignore_errors=True)
            storage.download_dir(uri, local)
        accelerator.wait_for_everyone()
    accelerator.load_state(local)
    return storage.read_json(storage.join(uri, STATE))
