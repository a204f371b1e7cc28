"""`nexus aws cost`: a table with the prices it assumed, totals that add up, per-job costs."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from nexus_llm.cli import app
from nexus_llm.config import parse_config
from nexus_llm.deploy import cost


def _line(est: dict, item: str) -> cost.Line:
    return next(line for line in est["lines"] if line.item == item)


def test_cost_prints_a_table_with_prices_and_a_total(make_config):
    path = make_config({"serving": {"instance_type": "g5.xlarge", "min_tasks": 2}})
    result = CliRunner().invoke(app, ["aws", "cost", "-c", str(path)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "estimated monthly cost" in out and cost.PRICES_AS_OF in out
    assert "g5.xlarge" in out and "$1.006/h" in out
    assert "total" in out and "per job" in out and "at max_tasks" in out
    assert "Not included" in out and "data transfer out" in out
    assert "vary by region" in out


def test_estimate_lines_add_up_and_follow_the_config():
    training = {
        "instance_type": "ml.g5.2xlarge",
        "instance_count": 2,
        "hours_per_job": 10,
        "jobs_per_month": 3,
    }
    cfg = parse_config({"aws": {"serving": {"min_tasks": 3, "hours_per_month": 100}, "training": training}})
    est = cost.estimate(cfg)
    assert est["monthly_total_usd"] == pytest.approx(sum(line.monthly_usd for line in est["lines"]))
    assert _line(est, "EC2 g5.xlarge").monthly_usd == pytest.approx(3 * 100 * cost.EC2_HOURLY["g5.xlarge"])
    train = est["per_job"]["training"]["usd"]
    assert train == pytest.approx(1.515 * 2 * 10 * (1 - cost.SPOT_SAVING))
    on_demand = {"spot": False, "hours_per_job": 10, "instance_count": 2}
    assert cost.training_job_cost(parse_config({"aws": {"training": on_demand}}))["usd"] > train


def test_the_charges_the_templates_create_are_priced_or_listed_as_excluded():
    est = cost.estimate(parse_config({"aws": {"serving": {"min_tasks": 2, "target_requests_per_task": 60}}}))
    requests = 2 * 60 * 60 * 730
    logs = _line(est, "CloudWatch Logs ingestion")
    assert logs.monthly_usd == pytest.approx(
        requests * cost.LOG_KB_PER_REQUEST / 1e6 * cost.CW_LOGS_INGEST_GB
    )
    assert _line(est, "EMF custom metrics").monthly_usd == pytest.approx(3 * cost.CW_METRIC_MONTH)
    for item in ("Container Insights", "VPC flow logs to S3", "NAT gateway data", "Secrets Manager secret"):
        line = _line(est, item)
        assert line.monthly_usd > 0 and "$" in line.unit_price and line.assumption, item
    assert any("data transfer out" in e for e in est["excluded"])
    anonymous = cost.estimate(parse_config({"aws": {"serving": {"allow_anonymous": True}}}))
    assert not [line for line in anonymous["lines"] if line.item == "Secrets Manager secret"]


def test_a_line_at_max_tasks_shows_full_scale_outside_the_total():
    cfg = parse_config({"aws": {"serving": {"min_tasks": 2, "max_tasks": 6}}})
    est = cost.estimate(cfg)
    peak = est["at_max_tasks"]
    assert peak.assumption.startswith("6 hosts")
    assert peak.monthly_usd == pytest.approx(6 * 730 * cost.EC2_HOURLY["g5.xlarge"])
    assert peak not in est["lines"]


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
    assert est["at_max_tasks"]["monthly_usd"] == pytest.approx(10 * 730 * 2.5)


@pytest.mark.parametrize("bad", ["g5.xlarge", "x[/y]", "g5.xlarge=[/bold]", "=1"])
def test_bad_price_options_and_markup_in_messages_are_printed_as_text(make_config, bad):
    """Messages carry user and AWS text; rich must print ``[/...]`` in them, not parse it as markup."""
    result = CliRunner().invoke(app, ["aws", "cost", "-c", str(make_config({})), "--price", bad])
    assert result.exit_code == 2, result.output
    assert "expected TYPE=USD_PER_HOUR" in result.output or "no price" in result.output
    assert bad in result.output.replace("\n", "") and "Traceback" not in result.output


def test_table_cells_with_brackets_are_printed_as_text(make_config):
    path = make_config({"serving": {"instance_type": "g9[/i].x"}})
    result = CliRunner().invoke(app, ["aws", "cost", "-c", str(path), "--price", "g9[/i].x=1"])
    assert result.exit_code == 0, result.output
    assert "EC2 g9[/i].x" in result.output
