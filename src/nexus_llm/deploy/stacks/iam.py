"""IAM stack: one least-privilege role per job or service.

Each role may touch only the S3 prefixes its work needs (see :class:`ResourceNames` for the layout),
its own log groups, metrics in its own namespace, its own ECR repository and the project KMS key.
No AWS managed ``*FullAccess`` policy and no ``*`` / ``service:*`` action appears anywhere; the tests
check both.
"""

from __future__ import annotations

from typing import Any

from troposphere import GetAtt, Ref, iam

from nexus_llm.config import NexusConfig
from nexus_llm.deploy.names import ResourceNames
from nexus_llm.deploy.stacks.common import (
    arn,
    assume_role,
    export,
    global_arn,
    import_value,
    log_group_name,
    new_template,
    policy,
    statement,
    tags,
)

CONCERN = "iam"
READ = ["s3:GetObject", "s3:GetObjectVersion"]
WRITE = ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]


def s3_access(bucket: str, read: list[str] = (), write: list[str] = ()) -> list[dict[str, Any]]:
    """Object access on ``bucket/<prefix>*`` only, and listing restricted to the same prefixes."""
    out = []
    if read:
        out.append(statement(READ, [global_arn("s3", f"{bucket}/{p}*") for p in read]))
    if write:
        out.append(statement(WRITE, [global_arn("s3", f"{bucket}/{p}*") for p in write]))
    prefixes = sorted({*read, *write})
    out.append(
        statement(
            ["s3:ListBucket"],
            [global_arn("s3", bucket)],
            {"StringLike": {"s3:prefix": [f"{p}*" for p in prefixes]}},
        )
    )
    out.append(statement(["s3:GetBucketLocation"], [global_arn("s3", bucket)]))
    return out


def logs_access(group_prefix: str, create_group: bool = True) -> dict[str, Any]:
    actions = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    if create_group:
        actions += ["logs:CreateLogGroup", "logs:AssociateKmsKey"]
    return statement(
        actions,
        [arn("logs", f"log-group:{group_prefix}"), arn("logs", f"log-group:{group_prefix}:log-stream:*")],
    )


def metrics_access(namespace_pattern: str) -> dict[str, Any]:
    """PutMetricData has no resource type; the namespace condition is its only scope."""
    return statement(
        ["cloudwatch:PutMetricData"], "*", {"StringLike": {"cloudwatch:namespace": namespace_pattern}}
    )


def ecr_pull(names: ResourceNames, kind: str) -> list[dict[str, Any]]:
    return [
        statement(
            ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            [arn("ecr", f"repository/{names.repository(kind)}")],
        ),
        # GetAuthorizationToken has no resource type (AWS: "Resource types: none"); it only yields a
        # registry login, pulls are still limited to the repository above.
        statement(["ecr:GetAuthorizationToken"], "*"),
    ]


def kms_use(names: ResourceNames) -> dict[str, Any]:
    return statement(
        ["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"], [import_value(names, "KmsKeyArn")]
    )


def _role(names: ResourceNames, logical: str, name: str, service: str, statements: list[dict]) -> iam.Role:
    return iam.Role(
        logical,
        RoleName=names.role(name),
        AssumeRolePolicyDocument=assume_role(service),
        Policies=[iam.Policy(PolicyName=names.role(name), PolicyDocument=policy(*statements))],
        Tags=tags(names, CONCERN),
    )


def build(cfg: NexusConfig, names: ResourceNames):
    t = new_template(names, CONCERN, "least-privilege roles for training, data jobs and serving")
    for logical, name, service, statements in _role_specs(names):
        role = t.add_resource(_role(names, logical, name, service, statements))
        export(t, names, f"{logical}Arn", GetAtt(role, "Arn"), f"ARN of {role.RoleName}")
    # Always created, whatever aws.serving.capacity says: the serving stack imports the profile only
    # for GPU capacity, and CloudFormation refuses to delete an export another stack still imports.
    # Since this stack is updated before the serving stack, dropping the export on a gpu -> cpu switch
    # would fail the redeploy. An unused role and profile cost nothing.
    _instance_role(t, names)
    return t


def _role_specs(names: ResourceNames) -> list[tuple[str, str, str, list[dict]]]:
    """(logical id, role name suffix, service principal, policy statements) of each job/service role."""
    data, models = names.data_bucket, names.models_bucket
    training = [
        *s3_access(data, read=["tokens/", "tokenizer/", "curated/", "jobs/"]),
        *s3_access(models, read=["checkpoints/"], write=["training/", "checkpoints/"]),
        logs_access("/aws/sagemaker/TrainingJobs"),
        metrics_access("/aws/sagemaker/*"),
        *ecr_pull(names, "train"),
        kms_use(names),
    ]
    glue_job = [
        *s3_access(data, read=["raw/", "jobs/", "curated/", "tmp/"], write=["curated/", "tmp/"]),
        logs_access("/aws-glue/*"),
        metrics_access("Glue"),
        kms_use(names),
    ]
    serve_task = [*s3_access(models, read=["models/", "training/"]), kms_use(names)]
    execution = _execution_statements(names)
    return [
        ("TrainingRole", "training", "sagemaker.amazonaws.com", training),
        ("GlueRole", "glue", "glue.amazonaws.com", glue_job),
        ("ServeTaskRole", "serve-task", "ecs-tasks.amazonaws.com", serve_task),
        ("ServeExecutionRole", "serve-execution", "ecs-tasks.amazonaws.com", execution),
    ]


def _execution_statements(names: ResourceNames) -> list[dict[str, Any]]:
    """What the ECS agent needs to start a serving task: pull the image, write logs, decrypt.

    Reading the API-key secret is granted by the serving stack, which creates that secret (its ARN
    has a random suffix, unknown before), on exactly that one secret.
    """
    logs = logs_access(log_group_name(names, "serving"), create_group=False)
    return [*ecr_pull(names, "serve"), logs, kms_use(names)]


def _instance_role(t, names: ResourceNames) -> None:
    """GPU hosts: the ECS agent on each instance registers with this project's cluster only."""
    cluster = names.serving_cluster
    statements = [
        statement(
            ["ecs:DeregisterContainerInstance", "ecs:RegisterContainerInstance", "ecs:Submit*"],
            [arn("ecs", f"cluster/{cluster}")],
        ),
        statement(
            ["ecs:Poll", "ecs:StartTelemetrySession", "ecs:UpdateContainerInstancesState"],
            [arn("ecs", f"container-instance/{cluster}/*")],
        ),
        # DiscoverPollEndpoint has no resource type; it only returns the regional agent endpoint.
        statement(["ecs:DiscoverPollEndpoint"], "*"),
    ]
    role = t.add_resource(_role(names, "InstanceRole", "serve-instance", "ec2.amazonaws.com", statements))
    profile = t.add_resource(
        iam.InstanceProfile(
            "InstanceProfile", InstanceProfileName=names.role("serve-instance"), Roles=[Ref(role)]
        )
    )
    export(t, names, "InstanceProfileArn", GetAtt(profile, "Arn"), "instance profile of GPU hosts")
