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


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    """No AWS credentials anywhere: variables, files or instance metadata."""
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_cost_prints_a_table_with_prices_and_a_total(make_config, no_credentials):
    path = make_config({"serving": {"instance_type": "g5.xlarge", "min_tasks": 2}})
    result = CliRunner().invoke(app, ["aws", "cost", "-c", str(path)])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "estimated monthly cost in us-east-1" in out and cost.PRICES_AS_OF in out
    assert "no AWS credentials for the AWS Price List API" in out
    assert "g5.xlarge" in out and "$1.006/h" in out
    assert "total" in out and "per job" in out and "at max_tasks" in out
    assert "Not included" in out and "data transfer out" in out


def test_without_credentials_another_region_says_the_table_is_us_east_1s(make_config, no_credentials):
    path = make_config({"region": "eu-west-1"})
    result = CliRunner().invoke(app, ["aws", "cost", "-c", str(path)])
    assert result.exit_code == 0, result.output
    assert "eu-west-1 may differ" in " ".join(result.output.split())


def _product(usagetype: str, usd: str, unit: str = "Hrs", **attributes: str) -> str:
    return json.dumps({
        "product": {"attributes": {"usagetype": usagetype, **attributes}},
        "terms": {"OnDemand": {"SKU.JRTCKXETXF": {"priceDimensions": {
            "SKU.JRTCKXETXF.6YS6EN2CT7": {"unit": unit, "pricePerUnit": {"USD": usd}}}}}},
    })  # fmt: skip


def _pricing_client():
    import boto3

    return boto3.client("pricing", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")


def test_region_prices_come_from_the_price_list_api(make_config):
    """The Price List API (its responses at the client seam, botocore's Stubber): the config's region
    and instance types are asked for, on-demand prices used, spot and Flex usage types skipped."""
    from botocore.stub import Stubber

    cfg = parse_config({"aws": {"region": "eu-west-1"}})
    client = _pricing_client()
    term = lambda field, value: {"Type": "TERM_MATCH", "Field": field, "Value": value}  # noqa: E731
    region = term("regionCode", "eu-west-1")
    with Stubber(client) as stub:
        stub.add_response(
            "get_products",
            {
                "PriceList": [
                    _product("EU-Train:ml.g5.2xlarge", "1.7020000000"),
                    _product("EU-Train-Spot:ml.g5.2xlarge", "0.51"),
                ]
            },
            {"ServiceCode": "AmazonSageMaker", "Filters": [region, term("instanceName", "ml.g5.2xlarge")]},
        )
        stub.add_response(
            "get_products",
            {
                "PriceList": [
                    _product("EU-ETL-Flex-DPU-Hour", "0.29", "DPU-Hour"),
                    _product("EU-ETL-DPU-Hour", "0.44", "DPU-Hour"),
                ]
            },
            {"ServiceCode": "AWSGlue", "Filters": [region]},
        )
        ec2 = [region, term("instanceType", "g5.xlarge"), term("operatingSystem", "Linux"), term("tenancy", "Shared"),
               term("preInstalledSw", "NA"), term("capacitystatus", "Used")]  # fmt: skip
        stub.add_response(
            "get_products",
            {"PriceList": [_product("EU-BoxUsage:g5.xlarge", "1.1230000000")]},
            {"ServiceCode": "AmazonEC2", "Filters": ec2},
        )
        book = cost.region_prices(cfg, client)
        stub.assert_no_pending_responses()
    assert book.live == {"sagemaker:ml.g5.2xlarge": 1.702, "glue:dpu": 0.44, "ec2:g5.xlarge": 1.123}
    assert book.source.startswith("AWS Price List API, eu-west-1, on-demand")
    est = cost.estimate(cfg, book=book)
    assert est["lines"][0].unit_price == "$1.123/h" and est["price_source"] == book.source
    assert est["per_job"]["training"]["unit_price"].startswith("$1.702/h")


def test_a_failing_price_list_api_falls_back_to_the_table_and_says_why():
    from botocore.stub import Stubber

    cfg = parse_config({"aws": {"region": "eu-west-1"}})
    client = _pricing_client()
    with Stubber(client) as stub:
        stub.add_client_error("get_products", "AccessDeniedException", "not allowed: pricing:GetProducts")
        book = cost.region_prices(cfg, client)
    assert book.live == {}
    assert "built-in table" in book.source and "AccessDeniedException" in book.source
    assert "eu-west-1 may differ" in book.source
    assert cost.estimate(cfg, book=book)["lines"][0].unit_price == "$1.006/h"  # the table's us-east-1 price


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


def test_unknown_instance_type_asks_for_a_price_and_price_option_supplies_it(make_config, no_credentials):
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
def test_bad_price_options_and_markup_in_messages_are_printed_as_text(make_config, bad, no_credentials):
    """Messages carry user and AWS text; rich must print ``[/...]`` in them, not parse it as markup."""
    result = CliRunner().invoke(app, ["aws", "cost", "-c", str(make_config({})), "--price", bad])
    assert result.exit_code == 2, result.output
    assert "expected TYPE=USD_PER_HOUR" in result.output or "no price" in result.output
    assert bad in result.output.replace("\n", "") and "Traceback" not in result.output


def test_table_cells_with_brackets_are_printed_as_text(make_config, no_credentials):
    path = make_config({"serving": {"instance_type": "g9[/i].x"}})
    result = CliRunner().invoke(app, ["aws", "cost", "-c", str(path), "--price", "g9[/i].x=1"])
    assert result.exit_code == 0, result.output
    assert "EC2 g9[/i].x" in result.output
