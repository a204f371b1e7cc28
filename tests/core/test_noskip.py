"""CI (``NEXUS_NO_SKIP=1``) turns a skipped test into a failure; without it a skip stays a skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def _pytest(tmp_path: Path, no_skip: bool) -> subprocess.CompletedProcess:
    (tmp_path / "conftest.py").write_text("from support.noskip import pytest_runtest_makereport  # noqa\n")
    (tmp_path / "test_x.py").write_text(
        "import shutil, pytest\n"
        "@pytest.mark.skipif(True, reason='chromium is not installed')\n"
        "def test_browser(): pass\n"
        "def test_inline(): pytest.skip('no java')\n"
        "@pytest.mark.xfail(reason='known')\n"
        "def test_known(): assert False\n"
        "def test_ok(): pass\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NEXUS_NO_SKIP"}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    env["COLUMNS"] = "400"  # the summary lines in full
    if no_skip:
        env["NEXUS_NO_SKIP"] = "1"
    args = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-rA",
        "-p",
        "no:cacheprovider",
        "-c",
        os.devnull,
        str(tmp_path),
    ]
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)


def test_ci_fails_on_a_skipped_test(tmp_path):
    proc = _pytest(tmp_path, no_skip=True)
    assert proc.returncode == 1, proc.stdout
    assert "1 failed, 1 passed, 1 xfailed, 1 error" in proc.stdout  # a skipif skips in setup: an error
    assert "NEXUS_NO_SKIP=1 (CI) runs every test: Skipped: chromium is not installed" in proc.stdout
    assert "runs every test: Skipped: no java" in proc.stdout


def test_a_skip_stays_a_skip_outside_ci(tmp_path):
    proc = _pytest(tmp_path, no_skip=False)
    assert proc.returncode == 0, proc.stdout
    assert "2 skipped" in proc.stdout
