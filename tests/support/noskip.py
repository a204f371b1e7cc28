"""CI runs every test: with ``NEXUS_NO_SKIP=1`` (set by ``.ci/run``) a skipped test is a failure.

A test that skips itself because its tool is missing (Chromium for the report, a browser-less runner)
would otherwise let CI pass without running it. Expected failures (``xfail``) are left alone.
"""

from __future__ import annotations

import os

import pytest

ENV = "NEXUS_NO_SKIP"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if os.environ.get(ENV) == "1" and report.skipped and not hasattr(report, "wasxfail"):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, but {ENV}=1 (CI) runs every test: {reason}"
