"""Every wait for AWS ends: the poller returns when the operation finishes, or gives up at its limit."""

from __future__ import annotations

import pytest

from nexus_llm.config import parse_config
from nexus_llm.deploy.clients import WaitTimeout, poll_until
from nexus_llm.deploy.data_job import data_job_timeout_s
from nexus_llm.deploy.train_job import train_job_timeout_s


def test_poll_until_returns_the_finished_state_and_reports_each_poll():
    states, seen = iter(["STARTING", "RUNNING", "SUCCEEDED"]), []
    final = poll_until(lambda: next(states), lambda s: s == "SUCCEEDED", 5, 0.001, "run", on_poll=seen.append)
    assert final == "SUCCEEDED" and seen == ["STARTING", "RUNNING", "SUCCEEDED"]


def test_poll_until_gives_up_at_its_limit():
    calls = []
    with pytest.raises(WaitTimeout, match="run r1 has not finished after 0 s"):
        poll_until(lambda: calls.append(1) or "RUNNING", lambda s: False, 0.05, 0.02, "run r1")
    assert 2 <= len(calls) <= 4  # polled until the limit, not once and not forever


def test_default_limits_follow_the_jobs_own_limits():
    cfg = parse_config({"aws": {"data_job": {"timeout_minutes": 60}}})
    assert data_job_timeout_s(cfg) == 75 * 60
    spot = {"StoppingCondition": {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}}
    assert train_job_timeout_s(spot) == 7200 + 1800
    assert train_job_timeout_s({"StoppingCondition": {"MaxRuntimeInSeconds": 3600}}) == 3600 + 1800
