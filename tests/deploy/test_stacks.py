"""Rendered templates: cfn-lint and checkov clean, least-privilege IAM, safe buckets, the guide's alarms."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from nexus_llm.cli import app
from nexus_llm.config import parse_config
from nexus_llm.deploy.names import ResourceNames
from nexus_llm.deploy.render import render_templates

pytestmark = pytest.mark.aws

REPO = Path(__file__).resolve().parents[2]
SUFFIX = "t3st5uffix"
# the default variant has no pinned suffix: its bucket names carry CloudFormation's account pseudo
# parameter (resolved at deploy time), so render needs no credentials
ACCOUNT_BUCKET = "nexus-{kind}-${{AWS::AccountId}}-us-east-1"
CERT = "arn:aws:acm:us-east-1:123456789012:certificate/0b5e-example"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:nexus-api-keys-AbCdEf"
VARIANTS = {
    # the defaults: GPU capacity, HTTP only, one NAT gateway, a generated API-key secret
    "gpu": {},
    # Fargate, HTTPS with a certificate, API keys from Secrets Manager, CPU scaling, e-mails, 2 NATs
    "cpu": {
        "bucket_suffix": SUFFIX,
        "region": "eu-west-1",
        "serving": {
            "capacity": "cpu",
            "certificate_arn": CERT,
            "api_keys_secret_arn": SECRET,
            "scale_on": "cpu",
        },
        "monitoring": {"alarm_email": "ops@example.com"},
        "budget": {"email": "ops@example.com", "monthly_usd": 750},
        "network": {"nat_gateways": 2},
    },
    # an explicitly anonymous endpoint, reachable from one network only
    "anon": {
        "bucket_suffix": SUFFIX,
        "serving": {"allow_anonymous": True, "allowed_cidr": "203.0.113.0/24", "max_tasks": 4},
    },
}


def bucket(kind: str) -> str:
    """A bucket's name in the default variant's templates (a ``Fn::Sub`` string)."""
    return ACCOUNT_BUCKET.format(kind=kind)


NO_AWS = {"HOME": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
          "AWS_EC2_METADATA_DISABLED": "true"}  # fmt: skip


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    """templates/<variant>/<stack>.json; the default variant through `nexus aws render`, with no AWS
    variable, credentials file or instance metadata to find (as on a new user's laptop)."""
    root = tmp_path_factory.mktemp("templates")
    for variant, aws in VARIANTS.items():
        cfg_path = root / f"{variant}.yaml"
        cfg_path.write_text(yaml.safe_dump({"name": "demo", "aws": aws}), encoding="utf-8")
        if variant == "gpu":
            with pytest.MonkeyPatch.context() as mp:
                for key in [k for k in os.environ if k.startswith("AWS_")]:
                    mp.delenv(key)
                for key, value in NO_AWS.items():
                    mp.setenv(key, value)
                result = CliRunner().invoke(
                    app, ["aws", "render", "-c", str(cfg_path), "-o", str(root / variant)]
                )
            assert result.exit_code == 0, result.output
            assert "plain HTTP" in result.output  # the default endpoint has no certificate
        else:
            cfg = parse_config(yaml.safe_load(cfg_path.read_text()))
            render_templates(cfg, ResourceNames.for_templates(cfg.aws, cfg.name), str(root / variant))
        cfg_path.unlink()
    return root


def load(rendered: Path, variant: str, stack: str) -> dict:
    return json.loads((rendered / variant / f"{stack}.json").read_text())


def resources(template: dict, rtype: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == rtype}


def all_templates(rendered: Path):
    for path in sorted(rendered.glob("*/*.json")):
        if path.name != "render.json":
            yield path, json.loads(path.read_text())


def test_there_is_one_builder_per_stack_in_deploy_order():
    from nexus_llm.deploy.names import STACK_ORDER
    from nexus_llm.deploy.stacks import BUILDERS

    assert tuple(BUILDERS) == STACK_ORDER


def test_render_writes_every_stack_and_a_summary(rendered):
    summary = json.loads((rendered / "gpu" / "render.json").read_text())
    assert summary["deploy_order"] == ["storage", "network", "iam", "serving", "monitoring", "budget"]
    assert summary["bucket_suffix"] is None
    assert summary["buckets"]["data"] == bucket("data")
    pinned = json.loads((rendered / "cpu" / "render.json").read_text())
    assert pinned["bucket_suffix"] == SUFFIX and pinned["buckets"]["data"] == f"nexus-data-{SUFFIX}"
    for stack in summary["deploy_order"]:
        assert (rendered / "gpu" / f"{stack}.json").is_file()


def test_cfn_lint_finds_nothing(rendered, cfn_lint_bin):
    files = [str(p) for p, _ in all_templates(rendered)]
    proc = subprocess.run([cfn_lint_bin, *files], capture_output=True, text=True, timeout=120)
    # exit code is a bit mask: 2 errors, 4 warnings, 8 informational; all must be clear
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_checkov_passes_offline_and_every_skip_says_why(rendered, checkov_bin, tmp_path):
    """One checkov run (it takes seconds to start) over both variants' templates and the Dockerfiles."""
    scan = tmp_path / "scan"
    shutil.copytree(rendered, scan / "templates")
    shutil.copytree(REPO / "docker", scan / "docker")
    args = ["-d", str(scan), "--framework", "cloudformation", "dockerfile", "--skip-download", "-o", "json"]
    proc = subprocess.run([checkov_bin, *args], capture_output=True, text=True, timeout=180, cwd=scan)
    reports = json.loads(proc.stdout)
    reports = {r["check_type"]: r for r in (reports if isinstance(reports, list) else [reports])}
    assert set(reports) == {"cloudformation", "dockerfile"}
    for kind, report in reports.items():
        summary = report["summary"]
        failed = [(c["check_id"], c["resource"], c["file_path"]) for c in report["results"]["failed_checks"]]
        assert summary["failed"] == 0 and not failed, (kind, failed)
        assert summary["parsing_errors"] == 0
        for check in report["results"]["skipped_checks"]:
            assert len(check["check_result"].get("suppress_comment", "")) > 20, check["check_id"]
    # every template of both variants and both Dockerfiles were actually scanned
    assert reports["cloudformation"]["summary"]["passed"] > 150
    assert reports["dockerfile"]["summary"]["passed"] > 50
    assert proc.returncode == 0


def _allow_statements(doc: dict):
    statements = doc.get("Statement", [])
    for s in statements if isinstance(statements, list) else [statements]:
        if s.get("Effect") == "Allow":
            yield s


def _policy_documents(template: dict):
    for logical, res in template["Resources"].items():
        props = res.get("Properties", {})
        for key in ("PolicyDocument", "KeyPolicy", "AssumeRolePolicyDocument"):
            if key in props:
                yield logical, props[key]
        for pol in props.get("Policies", []):
            yield logical, pol["PolicyDocument"]


def test_no_policy_allows_wildcard_actions_or_full_access(rendered):
    seen = 0
    for path, template in all_templates(rendered):
        for logical, doc in _policy_documents(template):
            for s in _allow_statements(doc):
                actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
                for action in actions:
                    seen += 1
                    assert action != "*" and not action.endswith(":*"), (
                        f"{path.name}:{logical} allows {action}"
                    )
        for res in template["Resources"].values():
            for arn in res.get("Properties", {}).get("ManagedPolicyArns", []):
                assert "FullAccess" not in json.dumps(arn), f"{path.name} uses {arn}"
    assert seen > 50


def _arn_text(resource) -> str:
    return json.dumps(resource)


def test_role_s3_access_is_limited_to_project_bucket_prefixes(rendered):
    iam = load(rendered, "gpu", "iam")
    buckets = {bucket(k) for k in ("data", "models", "logs")}
    roles = resources(iam, "AWS::IAM::Role")
    assert set(roles) == {"TrainingRole", "GlueRole", "ServeTaskRole", "ServeExecutionRole", "InstanceRole"}
    for logical, role in roles.items():
        for pol in role["Properties"]["Policies"]:
            for s in _allow_statements(pol["PolicyDocument"]):
                if not any(a.startswith("s3:") for a in s["Action"]):
                    continue
                for res in s["Resource"]:
                    text = _arn_text(res)
                    assert any(f":::{b}" in text for b in buckets), f"{logical}: {text}"
                    if "s3:GetObject" in s["Action"] or "s3:PutObject" in s["Action"]:
                        assert text.count("/") >= 1 and text.rstrip('"}').endswith("*"), text
    training = json.dumps(roles["TrainingRole"])
    assert f"{bucket('models')}/checkpoints/*" in training
    assert f"{bucket('data')}/tokens/*" in training
    assert f"{bucket('data')}/raw/" not in training  # training never reads raw data
    serve = json.dumps(roles["ServeTaskRole"])
    assert bucket("data") not in serve  # the API reads models only


def _container(serving: dict) -> dict:
    return resources(serving, "AWS::ECS::TaskDefinition")["TaskDefinition"]["Properties"][
        "ContainerDefinitions"
    ][0]


def _secret_grants(rendered: Path) -> list[tuple[str, str, list]]:
    """(variant, policy's logical id, resources) of every Allow that mentions Secrets Manager."""
    out = []
    for path, template in all_templates(rendered):
        for logical, doc in _policy_documents(template):
            for s in _allow_statements(doc):
                if any(a.startswith("secretsmanager:") for a in s["Action"]):
                    assert s["Action"] == ["secretsmanager:GetSecretValue"], (path, logical)
                    out.append((path.parent.name, logical, s["Resource"]))
    return out


def test_default_endpoint_needs_a_generated_api_key_only_its_execution_role_can_read(rendered):
    serving = load(rendered, "gpu", "serving")
    secret = resources(serving, "AWS::SecretsManager::Secret")["ApiKeysSecret"]["Properties"]
    generate = secret["GenerateSecretString"]
    assert generate["PasswordLength"] >= 32 and generate["ExcludePunctuation"] is True  # no ',' inside
    assert secret["KmsKeyId"] == {"Fn::ImportValue": "nexus-KmsKeyArn"}
    assert _container(serving)["Secrets"] == [
        {"Name": "NEXUS_API_KEYS", "ValueFrom": {"Ref": "ApiKeysSecret"}}
    ]
    read = resources(serving, "AWS::IAM::Policy")["ApiKeysReadPolicy"]["Properties"]
    assert read["Roles"] == ["nexus-serve-execution"]
    # no task starts before its execution role may read the keys
    assert "ApiKeysReadPolicy" in resources(serving, "AWS::ECS::Service")["Service"]["DependsOn"]
    assert serving["Outputs"]["ApiKeysSecretArn"]["Value"] == {"Ref": "ApiKeysSecret"}
    # the only Secrets Manager grant in the whole deployment: that one secret, nothing else
    assert [g for g in _secret_grants(rendered) if g[0] == "gpu"] == [
        ("gpu", "ApiKeysReadPolicy", [{"Ref": "ApiKeysSecret"}])
    ]


def test_a_configured_secret_replaces_the_generated_one(rendered):
    serving = load(rendered, "cpu", "serving")
    assert not resources(serving, "AWS::SecretsManager::Secret")
    assert _container(serving)["Secrets"] == [{"Name": "NEXUS_API_KEYS", "ValueFrom": SECRET}]
    assert [g for g in _secret_grants(rendered) if g[0] == "cpu"] == [("cpu", "ApiKeysReadPolicy", [SECRET])]
    assert serving["Outputs"]["ApiKeysSecretArn"]["Value"] == SECRET


def test_an_endpoint_without_keys_needs_allow_anonymous(rendered):
    serving = load(rendered, "anon", "serving")
    assert "Secrets" not in _container(serving) or _container(serving)["Secrets"] == []
    assert not resources(serving, "AWS::SecretsManager::Secret")
    assert not resources(serving, "AWS::IAM::Policy")
    assert "ApiKeysSecretArn" not in serving["Outputs"]
    assert not [g for g in _secret_grants(rendered) if g[0] == "anon"]
    ingress = resources(serving, "AWS::EC2::SecurityGroup")["LoadBalancerSecurityGroup"]["Properties"]
    assert {r["CidrIp"] for r in ingress["SecurityGroupIngress"]} == {"203.0.113.0/24"}


def test_instance_profile_export_survives_a_switch_from_gpu_to_cpu(rendered):
    """The IAM stack is updated before the serving stack, which still imports the profile while it
    switches: CloudFormation would refuse to drop the export, so every capacity keeps it."""
    for variant in VARIANTS:
        iam = load(rendered, variant, "iam")
        assert iam["Outputs"]["InstanceProfileArn"]["Export"] == {"Name": "nexus-InstanceProfileArn"}, variant
        assert "InstanceProfile" in resources(iam, "AWS::IAM::InstanceProfile")


def test_buckets_are_encrypted_private_versioned_tls_only_with_lifecycle(rendered):
    storage = load(rendered, "gpu", "storage")
    buckets = resources(storage, "AWS::S3::Bucket")
    assert {b["Properties"]["BucketName"]["Fn::Sub"] for b in buckets.values()} == {
        bucket(k) for k in ("data", "models", "logs")
    }
    policies = {
        p["Properties"]["Bucket"]["Ref"]: p for p in resources(storage, "AWS::S3::BucketPolicy").values()
    }
    for logical, resource in buckets.items():
        props = resource["Properties"]
        pab = props["PublicAccessBlockConfiguration"]
        assert all(
            pab[k] is True
            for k in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")
        )
        assert props["VersioningConfiguration"]["Status"] == "Enabled"
        sse = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
            "ServerSideEncryptionByDefault"
        ]
        assert sse["SSEAlgorithm"] == ("AES256" if logical == "LogsBucket" else "aws:kms")
        assert props["LifecycleConfiguration"]["Rules"]
        assert resource["DeletionPolicy"] == "Retain"
        deny = [
            s for s in policies[logical]["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"
        ]
        assert deny and deny[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    key = resources(storage, "AWS::KMS::Key")["Key"]["Properties"]
    assert key["EnableKeyRotation"] is True


def test_alarms_match_the_guide_rules_exactly(rendered):
    monitoring = load(rendered, "gpu", "monitoring")
    alarms = {
        a["Properties"]["MetricName"]: a["Properties"]
        for a in resources(monitoring, "AWS::CloudWatch::Alarm").values()
    }
    assert set(alarms) == {"ResponseTime", "ErrorCount"}
    common = {
        "Namespace": "NexusLLM/API",
        "Dimensions": [{"Name": "Service", "Value": "nexus"}],
        "ComparisonOperator": "GreaterThanThreshold",
        "Period": 300,
    }
    expected = {
        "ResponseTime": {**common, "Statistic": "Average", "EvaluationPeriods": 2, "Threshold": 5.0},
        "ErrorCount": {**common, "Statistic": "Sum", "EvaluationPeriods": 1, "Threshold": 5.0},
    }
    for metric, want in expected.items():
        got = alarms[metric]
        assert {k: got[k] for k in want} == want, metric
        assert float(got["Threshold"]) == want["Threshold"]
        assert got["AlarmActions"] == [{"Ref": "AlertsTopic"}]
    topic = resources(monitoring, "AWS::SNS::Topic")["AlertsTopic"]["Properties"]
    assert topic["KmsMasterKeyId"] == {"Fn::ImportValue": "nexus-KmsKeyArn"}


def test_budget_is_monthly_from_config_with_80_and_100_percent_alerts(rendered):
    budget = resources(load(rendered, "cpu", "budget"), "AWS::Budgets::Budget")["MonthlyBudget"]["Properties"]
    assert budget["Budget"]["TimeUnit"] == "MONTHLY" and budget["Budget"]["BudgetType"] == "COST"
    assert (
        float(budget["Budget"]["BudgetLimit"]["Amount"]) == 750
        and budget["Budget"]["BudgetLimit"]["Unit"] == "USD"
    )
    notes = budget["NotificationsWithSubscribers"]
    assert sorted(float(n["Notification"]["Threshold"]) for n in notes) == [80.0, 100.0]
    for n in notes:
        assert n["Notification"]["ThresholdType"] == "PERCENTAGE"
        kinds = {s["SubscriptionType"] for s in n["Subscribers"]}
        assert kinds == {"SNS", "EMAIL"}


def test_gpu_serving_runs_on_ec2_gpu_capacity_with_grace_period_and_health_check(rendered):
    serving = load(rendered, "gpu", "serving")
    task = resources(serving, "AWS::ECS::TaskDefinition")["TaskDefinition"]["Properties"]
    assert task["RequiresCompatibilities"] == ["EC2"]
    container = task["ContainerDefinitions"][0]
    assert container["ResourceRequirements"] == [{"Type": "GPU", "Value": "1"}]
    assert container["ReadonlyRootFilesystem"] is True
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["NEXUS_SERVICE_NAME"] == "nexus"
    assert env["NEXUS_MODEL_URI"] == {"Fn::Sub": f"s3://{bucket('models')}/models/demo/"}
    service = resources(serving, "AWS::ECS::Service")["Service"]["Properties"]
    assert service["HealthCheckGracePeriodSeconds"] >= 600
    assert "CapacityProviderStrategy" in service and "LaunchType" not in service
    assert resources(serving, "AWS::ECS::CapacityProvider")
    lt = resources(serving, "AWS::EC2::LaunchTemplate")["GpuLaunchTemplate"]["Properties"][
        "LaunchTemplateData"
    ]
    assert lt["InstanceType"] == "g5.xlarge" and lt["MetadataOptions"]["HttpTokens"] == "required"
    tg = resources(serving, "AWS::ElasticLoadBalancingV2::TargetGroup")["TargetGroup"]["Properties"]
    assert tg["HealthCheckPath"] == "/health" and tg["Matcher"] == {"HttpCode": "200"}
    target = resources(serving, "AWS::ApplicationAutoScaling::ScalableTarget")["ScalableTarget"]["Properties"]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (2, 10)
    policy = resources(serving, "AWS::ApplicationAutoScaling::ScalingPolicy")["ScalingPolicy"]["Properties"]
    metric = policy["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"]
    assert metric["PredefinedMetricType"] == "ALBRequestCountPerTarget"


def test_gpu_hosts_leave_room_for_a_rolling_deployment_at_full_scale(rendered):
    """One task per host and new tasks start before old ones stop: at max_tasks a deployment needs
    up to MaximumPercent/100 x max_tasks hosts, or it waits for capacity that never comes."""
    for variant, max_tasks in (("gpu", 10), ("anon", 4)):
        serving = load(rendered, variant, "serving")
        deployment = resources(serving, "AWS::ECS::Service")["Service"]["Properties"][
            "DeploymentConfiguration"
        ]
        asg = resources(serving, "AWS::AutoScaling::AutoScalingGroup")["GpuAutoScalingGroup"]["Properties"]
        assert deployment["MinimumHealthyPercent"] == 100
        assert int(asg["MaxSize"]) == max_tasks * deployment["MaximumPercent"] // 100 == 2 * max_tasks


def test_cpu_serving_uses_fargate_https_and_api_keys_secret(rendered):
    serving = load(rendered, "cpu", "serving")
    task = resources(serving, "AWS::ECS::TaskDefinition")["TaskDefinition"]["Properties"]
    assert task["RequiresCompatibilities"] == ["FARGATE"]
    container = task["ContainerDefinitions"][0]
    assert "ResourceRequirements" not in container
    assert container["Secrets"] == [{"Name": "NEXUS_API_KEYS", "ValueFrom": SECRET}]
    assert resources(serving, "AWS::ECS::Service")["Service"]["Properties"]["LaunchType"] == "FARGATE"
    assert not resources(serving, "AWS::ECS::CapacityProvider")
    listeners = {
        lst["Properties"]["Port"]: lst["Properties"]
        for lst in resources(serving, "AWS::ElasticLoadBalancingV2::Listener").values()
    }
    assert listeners[443]["Protocol"] == "HTTPS" and listeners[443]["Certificates"] == [
        {"CertificateArn": CERT}
    ]
    assert listeners[80]["DefaultActions"][0]["Type"] == "redirect"
    policy = resources(serving, "AWS::ApplicationAutoScaling::ScalingPolicy")["ScalingPolicy"]["Properties"]
    metric = policy["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"]
    assert metric["PredefinedMetricType"] == "ECSServiceAverageCPUUtilization"
