"""Checkpoints that are complete or absent, local or in object storage, and resumed automatically.

``<checkpoint_dir>/checkpoint-<step>/`` holds accelerate's state (model weights as safetensors,
optimizer, the scheduler, every process's RNG states), ``trainer_state.json`` (step, data position,
the identity of the data) and, written last, ``COMPLETE``: the list of every other file with its size.
A checkpoint is complete only when ``COMPLETE`` exists *and* every file it lists is there with that
size; only complete checkpoints are ever resumed or counted. So a process killed mid-save never leaves
a checkpoint that looks usable, and neither does a copy that arrived out of order: SageMaker syncs
``/opt/ml/checkpoints`` to and from S3 file by file, in no particular order, so after a spot restart
``COMPLETE`` can be present while the weights are still missing or partial.

Local: accelerate writes into ``.tmp-checkpoint-<step>``, which is renamed into place and then marked.
Remote (``s3://``): accelerate writes to a node-local staging directory, every node uploads its files,
and the main process writes ``COMPLETE`` after all uploads, so a new machine can resume from it.

A save that fails (a full disk most often) removes its own partial directory, so the space comes back
and the checkpoints before it stay as they were; a full disk is reported as such (torch's own message
for it is an "unexpected pos" from its zip writer).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import time
from contextlib import contextmanager
from typing import Any

from nexus_llm import storage

COMPLETE = "COMPLETE"
STATE = "trainer_state.json"
_NAME = re.compile(r"^checkpoint-(\d+)$")


def _inventory(uri: str) -> dict[str, int]:
    """Every file under ``uri`` (relative path -> size), ``COMPLETE`` excluded."""
    fs, path = storage.get_fs(uri)
    base = path.rstrip("/")
    fs.invalidate_cache(base)
    found = fs.find(base, detail=True) if fs.exists(base) else {}
    files = {name[len(base) + 1 :]: int(info["size"]) for name, info in found.items()}
    files.pop(COMPLETE, None)
    return files


def mark_complete(uri: str, step: int) -> None:
    """Write ``COMPLETE`` listing every file of the checkpoint with its size (call when all are written)."""
    marker = {"step": step, "time": time.time(), "files": dict(sorted(_inventory(uri).items()))}
    storage.write_json_atomic(storage.join(uri, COMPLETE), marker)


def is_complete(uri: str) -> bool:
    """True when ``COMPLETE`` exists and every file it lists is present with the listed size."""
    try:
        marker = storage.read_json(storage.join(uri, COMPLETE))
    except (FileNotFoundError, ValueError):  # absent, or itself only partly copied
        return False
    listed = marker.get("files") if isinstance(marker, dict) else None
    if not listed:  # a bare marker (older versions) proves nothing about the other files
        return False
    present = _inventory(uri)
    return all(present.get(rel) == size for rel, size in listed.items())


def complete_checkpoints(checkpoint_dir: str) -> list[tuple[int, str]]:
    """``(step, uri)`` of every complete checkpoint, oldest first."""
    found = []
    for name in storage.listdir(checkpoint_dir):
        match = _NAME.match(name)
        if match and is_complete(storage.join(checkpoint_dir, name)):
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
    try:
        with quiet_tied_weights():
            accelerator.save_state(local)
    except Exception as err:
        shutil.rmtree(local, ignore_errors=True)  # every process: a node's part may be half written
        raise _save_error(err, local, checkpoint_dir) from err
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
        mark_complete(final, step)
        prune(checkpoint_dir, keep)
    accelerator.wait_for_everyone()
    return final


LOW_SPACE_BYTES = 64 << 20
"""Free space under which a failed save is taken for a full disk (torch reports it obliquely)."""


def _save_error(err: Exception, local: str, checkpoint_dir: str) -> Exception:
    """``err``, or, when the disk is full, an ``OSError(ENOSPC)`` that says so and what to do."""
    try:
        free = shutil.disk_usage(os.path.dirname(os.path.abspath(local))).free
    except OSError:
        free = None
    enospc = isinstance(err, OSError) and err.errno == errno.ENOSPC
    if not enospc and (free is None or free >= LOW_SPACE_BYTES):
        return err
    left = f" ({free / 2**20:,.1f} MiB free)" if free is not None else ""
    return OSError(
        errno.ENOSPC,
        f"no space left on the device of {os.path.dirname(os.path.abspath(local))}{left} while saving "
        f"{os.path.basename(local).removeprefix('.tmp-')}. The unfinished checkpoint was removed; the "
        f"complete ones in {checkpoint_dir} are intact. Make room (or lower train.save_total_limit) and "
        "run the same command again: training resumes from the latest complete checkpoint.",
    )


class _TiedWeightsFilter(logging.Filter):
    """Drops accelerate's "Removed shared tensor {'lm_head.weight'}" warning, logged on every save of a
    model with tied input and output embeddings (the demo and small presets): safetensors stores a
    shared tensor once and ``from_pretrained`` re-ties it, so there is nothing to check. Any other
    shared tensor is still reported."""

    def filter(self, record: logging.LogRecord) -> bool:
        match = _SHARED.search(record.getMessage())
        if not match:
            return True
        names = [n.strip(" '\"") for n in match.group(1).split(",")]
        return not all(n.endswith("lm_head.weight") for n in names)


_SHARED = re.compile(r"Removed shared tensor \{(.*?)\} while saving")
_SHARED_LOGGER = "accelerate.utils.other"


@contextmanager
def quiet_tied_weights():
    """Silence only the tied-embedding warning of accelerate's safetensors saving, for one save."""
    logger, quiet = logging.getLogger(_SHARED_LOGGER), _TiedWeightsFilter()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


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
