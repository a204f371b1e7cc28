"""`nexus aws deploy`, the job submissions, status and destroy against moto's server on 127.0.0.1.

The tests in this module share one deployment and run in file order: deploy, inspect, submit jobs,
fetch a model, destroy.
"""

from __future__ import annotations

import io
import json
import zipfile
from types import SimpleNamespace

import pytest
import yaml
from typer.testing import CliRunner

from nexus_llm.cli import app
from nexus_llm.config import load_config
from nexus_llm.data.spark_job import parse_args as spark_job_args
from nexus_llm.deploy.clients import AwsClients
from nexus_llm.deploy.cloudformation import deploy_stacks, describe, destroy_stacks, exported
from nexus_llm.deploy.data_job import submit_data_job
from nexus_llm.deploy.entrypoints.glue import spark_job_argv
from nexus_llm.deploy.names import STACK_ORDER, ResourceNames
from nexus_llm.deploy.train_job import submit_train_job

pytestmark = pytest.mark.aws
ACCOUNT = "123456789012"  # moto's default account


def nexus(*args: str):
    result = CliRunner().invoke(app, list(args))
    return result


@pytest.fixture(scope="module")
def aws(moto_url, tmp_path_factory):
    """One deployment of all six stacks (GPU serving) through `nexus aws deploy`."""
    work = tmp_path_factory.mktemp("aws")
    cfg_path = work / "nexus.yaml"
    raw = {"name": "demo", "seed": 7, "aws": {"endpoint_url": moto_url, "budget": {"monthly_usd": 900}}}
    cfg_path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    result = nexus("aws", "deploy", "-c", str(cfg_path), "--poll-seconds", "0.05")
    assert result.exit_code == 0, result.output
    cfg = load_config(cfg_path)
    clients = AwsClients.from_config(cfg.aws)
    names = ResourceNames.resolve(cfg.aws, cfg.name, clients)
    return SimpleNamespace(cfg=cfg, cfg_path=cfg_path, clients=clients, names=names, work=work, deploy=result)


def test_bucket_names_carry_the_account_cloudformation_filled_in(aws):
    """The templates say ${AWS::AccountId}; the deployed buckets carry the account STS reports, which
    is what the job commands compute."""
    assert aws.names.data_bucket == f"nexus-data-{ACCOUNT}-us-east-1"
    assert exported(aws.clients)["nexus-DataBucket"] == aws.names.data_bucket
    deployed = aws.clients.client("cloudformation").get_template(StackName="nexus-storage")["TemplateBody"]
    assert "${AWS::AccountId}" in json.dumps(deployed) and ACCOUNT not in json.dumps(deployed)


def test_commands_that_act_on_aws_need_credentials_and_say_so(aws, monkeypatch, tmp_path):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    result = nexus("aws", "deploy", "-c", str(aws.cfg_path), "--poll-seconds", "0.05")
    assert result.exit_code == 2
    assert "cannot reach AWS to learn the account id" in " ".join(result.output.split())


def test_deploy_creates_every_stack_and_prints_the_endpoint(aws):
    for concern in STACK_ORDER:
        stack = describe(aws.clients, aws.names.stack(concern))
        assert stack["StackStatus"] == "CREATE_COMPLETE", concern
    assert "endpoint: http://" in aws.deploy.output
    # (moto's CloudFormation skips the generated secret, so its ARN output and the read-it hint are absent)
    assert "plain HTTP, so API keys cross the network unencrypted" in " ".join(aws.deploy.output.split())


def test_deployed_buckets_use_the_project_key(aws):
    s3 = aws.clients.client("s3")
    names = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert {aws.names.data_bucket, aws.names.models_bucket, aws.names.logs_bucket} <= names
    key_arn = exported(aws.clients)["nexus-KmsKeyArn"]
    rule = s3.get_bucket_encryption(Bucket=aws.names.data_bucket)["ServerSideEncryptionConfiguration"][
        "Rules"
    ][0]
    assert rule["ApplyServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": key_arn,
    }
    # (moto keeps a CloudFormation key's policy as a dict and then fails DescribeKey, so list instead)
    assert key_arn in {k["KeyArn"] for k in aws.clients.client("kms").list_keys()["Keys"]}


def test_deployed_roles_carry_scoped_inline_policies(aws):
    iam = aws.clients.client("iam")
    role = iam.get_role(RoleName="nexus-training")["Role"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "sagemaker.amazonaws.com"
    }
    doc = iam.get_role_policy(RoleName="nexus-training", PolicyName="nexus-training")["PolicyDocument"]
    text = json.dumps(doc)
    assert f"{aws.names.models_bucket}/checkpoints/*" in text
    assert not iam.list_attached_role_policies(RoleName="nexus-training")["AttachedPolicies"]
    for name in ("nexus-glue", "nexus-serve-task", "nexus-serve-execution", "nexus-serve-instance"):
        assert iam.get_role(RoleName=name)["Role"]["Arn"] == f"arn:aws:iam::{ACCOUNT}:role/{name}"
    # the serving stack lets the execution role read the API-key secret (and nothing more)
    assert iam.list_role_policies(RoleName="nexus-serve-execution")["PolicyNames"] == [
        "nexus-serve-execution",
        "nexus-serve-api-keys",
    ]
    keys = iam.get_role_policy(RoleName="nexus-serve-execution", PolicyName="nexus-serve-api-keys")
    assert [s["Action"] for s in keys["PolicyDocument"]["Statement"]] == [["secretsmanager:GetSecretValue"]]


def test_deployed_network_and_serving_match_the_config(aws):
    ec2 = aws.clients.client("ec2")
    vpc_id = exported(aws.clients)["nexus-VpcId"]
    assert ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]["CidrBlock"] == "10.42.0.0/16"
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]
    assert len(subnets) == 4
    ecs = aws.clients.client("ecs")
    service = ecs.describe_services(cluster="nexus-serving", services=["nexus-serve"])["services"][0]
    assert service["desiredCount"] == 2
    # (moto's CloudFormation drops a service's LoadBalancers; test_stacks pins them in the template)
    task = ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"]
    container = task["containerDefinitions"][0]
    assert container["resourceRequirements"] == [{"type": "GPU", "value": "1"}]
    assert container["image"] == f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/nexus/serve:0.1.0"
    groups = aws.clients.client("elbv2").describe_target_groups(Names=["nexus-serve"])["TargetGroups"]
    assert groups[0]["HealthCheckPath"] == "/health" and groups[0]["TargetType"] == "ip"
    repos = aws.clients.client("ecr").describe_repositories()["repositories"]
    assert {r["repositoryName"]: r["imageTagMutability"] for r in repos} == {
        "nexus/train": "IMMUTABLE",
        "nexus/serve": "IMMUTABLE",
    }
    topics = aws.clients.client("sns").list_topics()["Topics"]
    assert any(t["TopicArn"].endswith(":nexus-alerts") for t in topics)


def _resolve_refs(value, physical: dict[str, str]):
    if isinstance(value, dict):
        if set(value) == {"Ref"}:
            return physical[value["Ref"]]
        return {k: _resolve_refs(v, physical) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_refs(v, physical) for v in value]
    return value


def _create_alarms_as_cloudformation_would(aws) -> int:
    """moto 5.2.5's CloudFormation cannot create alarms: its model map (every CloudFormationModel
    subclass, moto/cloudformation/parsing.py) has only AWS::CloudWatch::Dashboard for CloudWatch, so
    it skips AWS::CloudWatch::Alarm with "not supported by moto's CloudFormation implementation".
    Stand in for CloudFormation's alarm handler: PutMetricAlarm with each alarm's properties from the
    template the deployed stack holds, Refs resolved to that stack's physical ids."""
    cf = aws.clients.client("cloudformation")
    stack = aws.names.stack("monitoring")
    template = cf.get_template(StackName=stack)["TemplateBody"]
    template = json.loads(template) if isinstance(template, str) else template
    topic = cf.describe_stack_resource(StackName=stack, LogicalResourceId="AlertsTopic")
    physical = {"AlertsTopic": topic["StackResourceDetail"]["PhysicalResourceId"]}
    alarms = [r for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    for alarm in alarms:
        aws.clients.client("cloudwatch").put_metric_alarm(**_resolve_refs(alarm["Properties"], physical))
    return len(alarms)


def test_deployed_alarms_follow_the_guide_rules(aws):
    cloudwatch = aws.clients.client("cloudwatch")
    assert not cloudwatch.describe_alarms(AlarmNamePrefix="nexus-")["MetricAlarms"], (
        "moto now creates alarms through CloudFormation: drop the stand-in below"
    )
    assert _create_alarms_as_cloudformation_would(aws) == 2
    alarms = {
        a["MetricName"]: a for a in cloudwatch.describe_alarms(AlarmNamePrefix="nexus-")["MetricAlarms"]
    }
    topic = next(t["TopicArn"] for t in aws.clients.client("sns").list_topics()["Topics"])
    assert topic.endswith(":nexus-alerts")
    expected = {
        "ResponseTime": {"Statistic": "Average", "Period": 300, "EvaluationPeriods": 2, "Threshold": 5.0},
        "ErrorCount": {"Statistic": "Sum", "Period": 300, "EvaluationPeriods": 1, "Threshold": 5.0},
    }
    assert set(alarms) == set(expected)
    for metric, want in expected.items():
        alarm = alarms[metric]
        assert alarm["AlarmName"] == f"nexus-{metric}"
        assert alarm["Namespace"] == "NexusLLM/API"
        assert alarm["Dimensions"] == [{"Name": "Service", "Value": "nexus"}]
        assert {k: alarm[k] for k in want} == want, metric
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
        assert alarm["AlarmActions"] == [topic] and alarm["OKActions"] == [topic]
        assert alarm["TreatMissingData"] == "notBreaching"


def test_deploying_a_stack_before_its_dependencies_fails_clearly(aws, tmp_path):
    cfg_path = tmp_path / "other.yaml"
    cfg_path.write_text(
        yaml.safe_dump({"aws": {"project": "other", "endpoint_url": aws.cfg.aws.endpoint_url}})
    )
    result = nexus("aws", "deploy", "-c", str(cfg_path), "--stack", "serving", "--poll-seconds", "0.05")
    assert result.exit_code == 2
    assert "other-" in result.output and "Traceback" not in result.output


def test_second_deploy_changes_nothing(aws):
    results = deploy_stacks(aws.cfg, aws.names, aws.clients, poll_s=0.05)
    assert [r.action for r in results] == ["unchanged"] * len(STACK_ORDER)


def test_submit_data_job_uploads_code_and_inputs_and_starts_glue(aws, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.jsonl").write_text('{"text": "one"}\n', encoding="utf-8")
    (corpus / "b.jsonl").write_text('{"text": "two"}\n', encoding="utf-8")
    result = nexus("aws", "submit-data-job", "-c", str(aws.cfg_path), str(corpus))
    assert result.exit_code == 0, result.output
    glue, s3, names = aws.clients.client("glue"), aws.clients.client("s3"), aws.names
    job = glue.get_job(JobName="nexus-curate")["Job"]
    assert job["GlueVersion"] == "5.0" and job["WorkerType"] == "G.1X" and job["NumberOfWorkers"] == 10
    assert job["Role"] == exported(aws.clients)["nexus-GlueRoleArn"]
    assert job["Command"]["Name"] == "glueetl"
    assert job["Command"]["ScriptLocation"] == f"s3://{names.data_bucket}/jobs/demo/glue_entry.py"
    assert job["SecurityConfiguration"] == "nexus-glue"
    zip_key = job["DefaultArguments"]["--extra-py-files"].split("/", 3)[3]
    code = s3.get_object(Bucket=names.data_bucket, Key=zip_key)["Body"].read()
    assert "nexus_llm/data/spark_job.py" in zipfile.ZipFile(io.BytesIO(code)).namelist()
    assert "ftfy==" in job["DefaultArguments"]["--additional-python-modules"]
    run = glue.get_job_runs(JobName="nexus-curate")["JobRuns"][0]
    args = run["Arguments"]
    assert json.loads(args["--nexus-inputs"]) == [f"s3://{names.data_bucket}/raw/demo/corpus/"]
    assert args["--nexus-output"] == f"s3://{names.data_bucket}/curated/demo/"
    uploaded = s3.list_objects_v2(Bucket=names.data_bucket, Prefix="raw/demo/corpus/")["Contents"]
    assert sorted(o["Key"] for o in uploaded) == ["raw/demo/corpus/a.jsonl", "raw/demo/corpus/b.jsonl"]
    config_key = args["--nexus-config"].split("/", 3)[3]
    assert s3.get_object(Bucket=names.data_bucket, Key=config_key)["Body"].read() == aws.cfg_path.read_bytes()
    # what Glue hands the script (its own arguments first) becomes the curation job's command line
    glue_argv = ["--JOB_ID", "j_1", "--JOB_RUN_ID", run["Id"]] + [x for kv in args.items() for x in kv]
    parsed = spark_job_args(spark_job_argv(glue_argv))
    assert parsed.inputs == [f"s3://{names.data_bucket}/raw/demo/corpus/"]
    assert parsed.output == args["--nexus-output"] and parsed.config == args["--nexus-config"]


def test_submit_data_job_refuses_inputs_the_glue_role_cannot_read(aws):
    result = nexus("aws", "submit-data-job", "-c", str(aws.cfg_path), "s3://someone-else/raw/x.jsonl")
    assert result.exit_code == 2
    assert "outside" in result.output and "Traceback" not in result.output


def test_submit_train_job_sends_spot_checkpoints_image_and_hyperparameters(aws):
    result = nexus(
        "aws",
        "submit-train-job",
        "-c",
        str(aws.cfg_path),
        "--set",
        "train.max_steps=100",
        "--name",
        "demo-job-1",
    )
    assert result.exit_code == 0, result.output
    names = aws.names
    job = aws.clients.client("sagemaker").describe_training_job(TrainingJobName="demo-job-1")
    assert job["EnableManagedSpotTraining"] is True
    stop = job["StoppingCondition"]
    assert stop["MaxRuntimeInSeconds"] == 24 * 3600
    assert stop["MaxWaitTimeInSeconds"] >= stop["MaxRuntimeInSeconds"]
    assert job["CheckpointConfig"] == {
        "S3Uri": f"s3://{names.models_bucket}/checkpoints/demo/",
        "LocalPath": "/opt/ml/checkpoints",
    }
    assert job["HyperParameters"] == {"config": "nexus.yaml", "train.max_steps": "100"}
    assert (
        job["AlgorithmSpecification"]["TrainingImage"]
        == f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/nexus/train:0.1.0"
    )
    assert job["RoleArn"] == exported(aws.clients)["nexus-TrainingRoleArn"]
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in job["InputDataConfig"]}
    assert channels["training"] == f"s3://{names.data_bucket}/tokens/demo/"
    config_prefix = channels["config"]
    key = config_prefix.split("/", 3)[3] + "nexus.yaml"
    body = aws.clients.client("s3").get_object(Bucket=names.data_bucket, Key=key)["Body"].read()
    assert body == aws.cfg_path.read_bytes()
    assert job["OutputDataConfig"]["S3OutputPath"] == f"s3://{names.models_bucket}/training/demo/"
    assert job["ResourceConfig"]["InstanceType"] == "ml.g5.2xlarge"


def test_submit_train_job_rejects_a_bad_override_before_creating_anything(aws):
    before = aws.clients.client("sagemaker").list_training_jobs()["TrainingJobSummaries"]
    result = nexus("aws", "submit-train-job", "-c", str(aws.cfg_path), "--set", "train.max_stepz=100")
    assert result.exit_code == 2
    assert "max_stepz" in result.output and "Traceback" not in result.output
    assert aws.clients.client("sagemaker").list_training_jobs()["TrainingJobSummaries"] == before


def test_set_overrides_shape_the_job_request_too(aws):
    sets = ["--set", "aws.training.instance_type=ml.g5.12xlarge", "--set", "aws.training.spot=false"]
    result = nexus("aws", "submit-train-job", "-c", str(aws.cfg_path), "--name", "demo-job-2", *sets)
    assert result.exit_code == 0, result.output
    job = aws.clients.client("sagemaker").describe_training_job(TrainingJobName="demo-job-2")
    assert job["ResourceConfig"]["InstanceType"] == "ml.g5.12xlarge"
    assert job["EnableManagedSpotTraining"] is False
    assert "MaxWaitTimeInSeconds" not in job["StoppingCondition"]
    # the container applies the same overrides to the same file
    assert job["HyperParameters"]["aws.training.instance_type"] == "ml.g5.12xlarge"


@pytest.mark.parametrize("key", ["aws.project=other", "name=other", "aws=x", "aws.region=eu-west-1"])
def test_set_refuses_keys_that_decide_buckets_and_stacks(aws, key):
    before = aws.clients.client("sagemaker").list_training_jobs()["TrainingJobSummaries"]
    result = nexus("aws", "submit-train-job", "-c", str(aws.cfg_path), "--set", key)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "cannot be overridden per job" in result.output
    assert aws.clients.client("sagemaker").list_training_jobs()["TrainingJobSummaries"] == before


def test_every_s3_request_of_the_submissions_names_the_expected_bucket_owner(aws, tmp_path):
    """Bucket names are predictable, so each upload says which account must own the bucket."""
    clients = AwsClients.from_config(aws.cfg.aws)
    sent = []

    def record(request, **_):
        owner = request.headers.get("x-amz-expected-bucket-owner")
        sent.append((request.method, request.url, owner.decode() if isinstance(owner, bytes) else owner))

    clients.client("s3").meta.events.register("before-send.s3", record)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.jsonl").write_text('{"text": "one"}\n', encoding="utf-8")
    (tmp_path / "b.jsonl").write_text('{"text": "two"}\n', encoding="utf-8")
    inputs = [str(corpus), str(tmp_path / "b.jsonl")]
    clients.client("glue").delete_job(JobName="nexus-curate")  # moto's Glue has no UpdateJob
    submit_data_job(aws.cfg, aws.names, clients, inputs, config_path=str(aws.cfg_path))
    submit_train_job(aws.names, clients, str(aws.cfg_path), name="demo-owner-check")
    # code zip, Glue script, two inputs, the data job's config, the training job's config
    assert sum(1 for method, _, _ in sent if method == "PUT") == 6, sent
    assert all(owner == ACCOUNT for _, _, owner in sent), sent


def test_status_shows_stacks_endpoint_and_jobs(aws):
    result = nexus("aws", "status", "-c", str(aws.cfg_path))
    assert result.exit_code == 0, result.output
    assert "nexus-storage" in result.output and "CREATE_COMPLETE" in result.output
    assert "demo-job-1" in result.output
    assert "endpoint: http://" in result.output


def test_serving_container_fetches_the_model_directory_from_s3(aws, tmp_path):
    from nexus_llm.deploy.entrypoints.fetch_model import fetch_model

    s3 = aws.clients.client("s3")
    files = {"config.json": b'{"model_type": "llama"}', "tokenizer/tokenizer.json": b"{}"}
    for rel, data in files.items():
        s3.put_object(Bucket=aws.names.models_bucket, Key=f"models/demo/{rel}", Body=data)
    dest = fetch_model(aws.names.model_uri(), str(tmp_path / "model"))
    for rel, data in files.items():
        assert (tmp_path / "model" / rel).read_bytes() == data
    assert dest == str(tmp_path / "model")


def _moto_cannot_delete_route_tables_and_nat(aws) -> None:
    """Real CloudFormation deletes the network stack's NAT gateway and route tables; moto's does not
    (its RouteTable/NatGateway models have no delete), so remove them the way CloudFormation would."""
    ec2 = aws.clients.client("ec2")
    vpc = [{"Name": "vpc-id", "Values": [exported(aws.clients)["nexus-VpcId"]]}]
    for table in ec2.describe_route_tables(Filters=vpc)["RouteTables"]:
        if any(a.get("Main") for a in table["Associations"]):
            continue
        for assoc in table["Associations"]:
            ec2.disassociate_route_table(AssociationId=assoc["RouteTableAssociationId"])
        ec2.delete_route_table(RouteTableId=table["RouteTableId"])
    for gateway in ec2.describe_nat_gateways(Filters=vpc)["NatGateways"]:
        ec2.delete_nat_gateway(NatGatewayId=gateway["NatGatewayId"])


def test_destroy_deletes_stacks_in_reverse_and_keeps_the_data(aws):
    seen: dict[str, list[tuple[int, int]]] = {}

    def progress(concern: str, done: int, total: int) -> None:
        seen.setdefault(concern, []).append((done, total))

    results = destroy_stacks(aws.names, aws.clients, ["budget", "monitoring"], poll_s=0.05, progress=progress)
    assert [r.concern for r in results] == ["budget", "monitoring"]
    total = seen["monitoring"][-1][1]
    assert total >= 1 and seen["monitoring"][-1] == (total, total)  # every resource counted as gone
    _moto_cannot_delete_route_tables_and_nat(aws)
    result = nexus("aws", "destroy", "-c", str(aws.cfg_path), "--yes", "--poll-seconds", "0.05")
    assert result.exit_code == 0, result.output
    for concern in STACK_ORDER:
        assert describe(aws.clients, aws.names.stack(concern)) is None, concern
    buckets = {b["Name"] for b in aws.clients.client("s3").list_buckets()["Buckets"]}
    assert aws.names.data_bucket in buckets and aws.names.models_bucket in buckets
    assert "kept:" in result.output
