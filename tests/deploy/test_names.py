"""Names: buckets per account and region, S3 limits respected, and the Glue entry's argument mapping."""

from __future__ import annotations

import json

import pytest

from nexus_llm.config import parse_config
from nexus_llm.data.spark_job import parse_args as spark_job_args
from nexus_llm.deploy.entrypoints.glue import spark_job_argv
from nexus_llm.deploy.names import ResourceNames
from nexus_llm.deploy.train_job import job_name, parse_overrides


def _names(account: str, region: str = "us-east-1", project: str = "nexus") -> ResourceNames:
    cfg = parse_config({"aws": {"region": region, "project": project}})
    return ResourceNames(cfg.aws.project, "demo", cfg.aws.region, account_id=account)


def test_bucket_names_differ_per_account_region_and_project_and_fit_s3_limits():
    a = _names("111111111111").data_bucket
    assert a == "nexus-data-111111111111-us-east-1" == _names("111111111111").data_bucket
    others = [
        _names("222222222222"),
        _names("111111111111", "eu-west-1"),
        _names("111111111111", project="other"),
    ]
    assert len({a, *(n.data_bucket for n in others)}) == 4
    longest = _names("111111111111", "ap-southeast-2", "a" * 20).bucket("models")
    assert len(longest) <= 63 and longest == longest.lower()


def test_template_names_leave_the_account_to_cloudformation_without_asking_aws():
    cfg = parse_config({"aws": {"region": "eu-west-1"}})
    names = ResourceNames.for_templates(cfg.aws, "demo")  # no clients: no AWS call can happen
    assert names.models_bucket == "nexus-models-${AWS::AccountId}-eu-west-1"
    assert names.templated() == names and _names("111111111111").templated().account_id is None


def test_pinned_suffix_names_and_s3_limits():
    cfg = parse_config({"name": "My Run_1", "aws": {"project": "a" * 20, "bucket_suffix": "z" * 16}})
    names = ResourceNames.for_templates(cfg.aws, cfg.name)
    assert len(names.bucket("models")) <= 63
    assert names.run_name == "my-run-1"
    assert names.checkpoints_uri() == f"s3://{'a' * 20}-models-{'z' * 16}/checkpoints/my-run-1/"
    assert len(job_name(names)) <= 63


def test_glue_arguments_become_the_spark_job_command_line():
    inputs = json.dumps(["s3://b/raw/a", "s3://b/raw/b"])
    glue_argv = ["--JOB_ID", "j_1", "--TempDir", "s3://b/tmp/", "--nexus-inputs", inputs]
    glue_argv += ["--nexus-output", "s3://b/curated/x/", "--enable-metrics", "true"]
    args = spark_job_args(spark_job_argv(glue_argv))
    assert args.inputs == ["s3://b/raw/a", "s3://b/raw/b"]
    assert args.output == "s3://b/curated/x/" and args.config is None


def test_glue_entry_rejects_an_empty_input_list():
    with pytest.raises(SystemExit):
        spark_job_argv(["--nexus-inputs", "[]", "--nexus-output", "s3://b/curated/"])


def test_overrides_keep_string_values_and_reject_missing_equals():
    assert parse_overrides(["train.max_steps=100", "train.lr=3e-4"]) == {
        "train.max_steps": "100",
        "train.lr": "3e-4",
    }
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_overrides(["train.max_steps"])


def test_clients_take_the_config_endpoint_else_aws_endpoint_url(monkeypatch):
    from nexus_llm.deploy.clients import AwsClients

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4999")
    assert AwsClients("eu-west-1").client("sagemaker").meta.endpoint_url == "http://127.0.0.1:4999"
    configured = AwsClients("eu-west-1", "http://127.0.0.1:5001").client("glue")
    assert (
        configured.meta.endpoint_url == "http://127.0.0.1:5001" and configured.meta.region_name == "eu-west-1"
    )


@pytest.mark.parametrize(
    ("region", "registry"),
    [
        ("us-east-1", "dkr.ecr.us-east-1.amazonaws.com"),
        ("cn-north-1", "dkr.ecr.cn-north-1.amazonaws.com.cn"),
        ("us-gov-west-1", "dkr.ecr.us-gov-west-1.amazonaws.com"),
    ],
)
def test_training_image_uses_the_partition_dns_suffix(region, registry):
    from types import SimpleNamespace

    from nexus_llm.deploy.train_job import training_image

    cfg = parse_config({"aws": {"region": region, "bucket_suffix": "abcd1234"}})
    names = ResourceNames.for_templates(cfg.aws, "demo")
    clients = SimpleNamespace(account_id=lambda: "111122223333")  # the seam's one call here
    assert training_image(cfg, names, clients) == f"111122223333.{registry}/nexus/train:0.1.0"
