"""Long subprocesses that start when the session does and are read by the test that needs them.

The real fine-tuning run (tests/pipeline/test_finetune_real.py, about 7 minutes of 2 CPU cores) was a
third of the suite's time when it ran in turn, while much of the rest of the suite waits on servers, JVMs
and sockets with a core idle. So when that module is collected, ``pytest_collection_modifyitems`` (in
tests/conftest.py) starts the run in the background at the lowest CPU priority (``nice`` 19: the other
tests' processes take the CPU whenever they want it, timing tests included) and moves the module's tests
to the end of the session; its fixture then waits for the run with :func:`result`. The command, and so
what is tested, is the same as running it in the fixture; only the timing changes. Measured on the
2-core Ice Lake Xeon: the whole suite took 1,168 s with the run in turn and 884 s with it in the
background and the extras installed with `--no-compile` (630 passed both times).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Run:
    proc: subprocess.Popen
    workdir: Path
    started: float
    timeout: float

    def wait(self) -> subprocess.CompletedProcess:
        """Wait for the run (up to its timeout from the start); its return code and output."""
        left = max(1.0, self.timeout - (time.monotonic() - self.started))
        try:
            self.proc.wait(timeout=left)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        out = (self.workdir / "stdout.txt").read_text(errors="replace")
        err = (self.workdir / "stderr.txt").read_text(errors="replace")
        return subprocess.CompletedProcess(self.proc.args, self.proc.returncode, out, err)


_runs: dict[str, Run] = {}


def start(name: str, args: list[str], *, cwd: Path, env: dict[str, str], timeout: float) -> Path:
    """Start ``args`` (with ``{workdir}`` replaced by a fresh directory) at nice 19; the directory."""
    workdir = Path(tempfile.mkdtemp(prefix=f"nexus-{name}-"))
    args = [a.replace("{workdir}", str(workdir)) for a in args]
    with open(workdir / "stdout.txt", "wb") as out, open(workdir / "stderr.txt", "wb") as err:
        proc = subprocess.Popen(
            args, cwd=cwd, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
            preexec_fn=lambda: os.nice(19),
        )  # fmt: skip
    _runs[name] = Run(proc, workdir, time.monotonic(), timeout)
    return workdir


def result(name: str) -> tuple[subprocess.CompletedProcess, Path] | None:
    """The finished run ``name`` and its directory, or None when it was not started early."""
    run = _runs.get(name)
    return None if run is None else (run.wait(), run.workdir)


def stop_all() -> None:
    """Kill what is still running (an aborted session) and remove the runs' directories."""
    for run in _runs.values():
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()
        shutil.rmtree(run.workdir, ignore_errors=True)
    _runs.clear()
