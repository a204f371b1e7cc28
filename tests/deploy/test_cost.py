"""`nexus aws cost`: a table with the prices it assumed, totals that add up, per-job costs."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from nexus_llm.cli import app
from nexus_llm.config import parse_config
from nexus_llm.deploy import cost


def test_cost_prints_a_table_with_prices_and_a_total(make_config):
    path = make_config({"serving": {"instance_type": "g5.xlarge", "min_tasks": 2}})
    result = CliRunner().invoke(app, ["aws", "cost", "-c", str(path)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "estimated monthly cost" in out and cost.PRICES_AS_OF in out
    assert "g5.xlarge" in out and "$1.006/h" in out
    assert "total" in out and "per job" in out
    assert "vary by region" in out


def test_estimate_lines_add_up_and_follow_the_config():
    cfg = parse_config({"aws": {"serving": {"min_tasks": 3, "hours_per_month": 100}, "training": {
        "instance_type": "ml.g5.2xlarge", "instance_count": 2, "hours_per_job": 10, "jobs_per_month": 3, "spot": True}}})  # fmt: skip
    est = cost.estimate(cfg)
    assert est["monthly_total_usd"] == pytest.approx(sum(line.monthly_usd for line in est["lines"]))
    ec2 = next(line for line in est["lines"] if line.item == "EC2 g5.xlarge")
    assert ec2.monthly_usd == pytest.approx(3 * 100 * cost.EC2_HOURLY["g5.xlarge"])
    train = est["per_job"]["training"]["usd"]
    assert train == pytest.approx(1.515 * 2 * 10 * (1 - cost.SPOT_SAVING))
    on_demand = cost.training_job_cost(parse_config({"aws": {"training": {"spot": False, "hours_per_job": 10,
                                                                         "instance_count": 2}}}))  # fmt: skip
    assert on_demand["usd"] > train


def test_fargate_estimate_uses_vcpu_and_memory_prices():
    cfg = parse_config(
        {"aws": {"serving": {"capacity": "cpu", "cpu": 4096, "memory_mb": 16384, "min_tasks": 2}}}
    )
    line = next(ln for ln in cost.estimate(cfg)["lines"] if ln.item.startswith("Fargate"))
    per_task_hour = 4 * cost.FARGATE_VCPU_HOUR + 16 * cost.FARGATE_GB_HOUR
    assert line.monthly_usd == pytest.approx(2 * 730 * per_task_hour)


def test_unknown_instance_type_asks_for_a_price_and_price_option_supplies_it(make_config):
    path = make_config({"serving": {"instance_type": "g9.mega"}})
    result = CliRunner().invoke(app, ["aws", "cost", "-c", str(path)])
    assert result.exit_code == 2 and "--price g9.mega=" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(app, ["aws", "cost", "-c", str(path), "--price", "g9.mega=2.5", "--json"])
    assert result.exit_code == 0, result.output
    est = json.loads(result.stdout)
    ec2 = next(line for line in est["lines"] if line["item"] == "EC2 g9.mega")
    assert ec2["monthly_usd"] == pytest.approx(2 * 730 * 2.5)
