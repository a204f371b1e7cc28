"""The disk fills up while a checkpoint is being saved: the previous checkpoint stays complete and
usable, the failed one leaves nothing behind, and once there is room the same command resumes from the
previous checkpoint and ends where an uninterrupted run ends.

The checkpoint directory is a real tmpfs, sized so that one checkpoint fits and the second does not:
the write fails with ENOSPC inside torch/safetensors, as on a full disk. The mount lives in a private
mount namespace (``unshare``), so nothing is mounted on the host and nothing outlives the test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nexus_llm.train.checkpoint import complete_checkpoints
from support.train import make_tokens, train_section, write_config

pytestmark = pytest.mark.slow

SCRIPT = """
set -u
mount -t tmpfs -o size={size}k nexus-full "{mnt}" || exit 90
"{python}" -m nexus_llm.train -c "{config}" > "{out}/first.log" 2>&1; echo $? > "{out}/first.rc"
ls -A "{mnt}/checkpoints" > "{out}/after-failure.ls" 2>&1
cp -a "{mnt}/checkpoints" "{out}/after-failure"
df -k "{mnt}" > "{out}/df.txt"
mount -o remount,size={bigger}k "{mnt}"  # the operator makes room
"{python}" -m nexus_llm.train -c "{config}" > "{out}/second.log" 2>&1; echo $? > "{out}/second.rc"
"""


def _namespace() -> list[str]:
    """A private mount namespace: ``unshare -m`` as root, else a user namespace that maps us to root."""
    return ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-Urm"]


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]


def test_disk_full_during_a_checkpoint_keeps_the_previous_one_and_the_run_resumes(tmp_path):
    if shutil.which("unshare") is None:
        pytest.fail("`unshare` (util-linux) is needed to mount a small tmpfs for this test")
    tokens = make_tokens(tmp_path / "data", docs=60)
    section = {"max_steps": 12, "save_every": 4, "eval_every": 6}

    whole = tmp_path / "whole"  # the uninterrupted run, on the ordinary disk
    cfg = write_config(tmp_path / "whole.yaml", train_section(tokens, whole, **section))
    proc = subprocess.run([sys.executable, "-m", "nexus_llm.train", "-c", str(cfg)], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = _du(whole / "checkpoints" / "checkpoint-12")

    mnt, out = tmp_path / "mnt", tmp_path / "out"
    mnt.mkdir()
    out.mkdir()
    full = dict(train_section(tokens, out, **section), checkpoint_dir=str(mnt / "checkpoints"))
    cfg = write_config(tmp_path / "full.yaml", full)
    # room for one checkpoint and half of the next: the save at step 8 runs out of space
    size_kb = (one * 3 // 2) // 1024
    script = SCRIPT.format(
        size=size_kb, bigger=size_kb * 4, mnt=mnt, out=out, config=cfg, python=sys.executable
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*_namespace(), "bash", "-c", script], capture_output=True, text=True, env=env, timeout=900)  # fmt: skip
    assert proc.returncode != 90, f"cannot mount a tmpfs here: {proc.stderr}"
    assert proc.returncode == 0, proc.stderr

    first = (out / "first.log").read_text()
    assert int((out / "first.rc").read_text()) == 2, first[-3000:]
    assert "Traceback" not in first, first[-3000:]
    message = " ".join(first.split())
    assert "disk full: no space left on the device" in message and "saving checkpoint-8" in message, message
    # the failed save left nothing behind; the one before it is complete
    assert (out / "after-failure.ls").read_text().split() == ["checkpoint-4"], (out / "df.txt").read_text()
    assert [s for s, _ in complete_checkpoints(str(out / "after-failure"))] == [4]

    second = (out / "second.log").read_text()
    assert int((out / "second.rc").read_text()) == 0, second[-3000:]
    joined = "".join(second.split())  # the console wraps long paths at any character
    assert "resumedfrom" in joined and "checkpoint-4" in joined, second[-3000:]
    a, b = _metrics(whole / "runs"), _metrics(out / "runs")
    assert [r["step"] for r in b] == [r["step"] for r in a]
    assert abs(a[-1]["loss"] - b[-1]["loss"]) < 1e-4 and abs(a[-1]["val_loss"] - b[-1]["val_loss"]) < 1e-4
    assert (out / "model" / "manifest.json").is_file()
