"""The aws: section validates with messages that say how to fix the value."""

from __future__ import annotations

import pytest

from nexus_llm.config import ConfigError, parse_config


@pytest.mark.parametrize(
    ("aws", "message"),
    [
        ({"training": {"spot": True, "max_runtime_hours": 10, "max_wait_hours": 5}}, "raise max_wait_hours"),
        ({"serving": {"capacity": "cpu", "cpu": 3000}}, "cpu must be one of"),
        ({"serving": {"min_tasks": 5, "max_tasks": 2}}, "max_tasks (2) must be >= min_tasks (5)"),
        ({"project": "Nexus_Prod"}, "3-20 characters"),
        ({"bucket_suffix": "UPPER"}, "a-z and 0-9"),
        ({"network": {"vpc_cidr": "10.0.0.0/24"}}, "/16 CIDR"),
        ({"serving": {"model_uri": "/local/model"}}, "s3:// URI"),
        ({"data_job": {"glue_version": "4.0"}}, "glue_version"),
        ({"servng": {}}, "Did you mean 'serving'"),
        (
            {"serving": {"allow_anonymous": True, "api_keys_secret_arn": "arn:aws:secretsmanager:x"}},
            "remove one",
        ),
    ],
)
def test_bad_aws_values_are_reported_with_a_fix(aws, message):
    with pytest.raises(ConfigError) as err:
        parse_config({"aws": aws})
    assert message in str(err.value)


def test_on_demand_training_needs_no_wait_time():
    cfg = parse_config({"aws": {"training": {"spot": False, "max_runtime_hours": 10, "max_wait_hours": 1}}})
    assert cfg.aws.training.spot is False


def test_exposure_warnings_name_plain_http_and_anonymous_access():
    default = parse_config({}).aws.serving
    assert default.allow_anonymous is False and default.api_keys_secret_arn is None
    assert any("plain HTTP" in w for w in default.exposure_warnings())
    anonymous = parse_config({"aws": {"serving": {"allow_anonymous": True}}}).aws.serving
    assert any("without an API key" in w for w in anonymous.exposure_warnings())
    https = parse_config({"aws": {"serving": {"certificate_arn": "arn:aws:acm:x"}}}).aws.serving
    assert https.exposure_warnings() == []
