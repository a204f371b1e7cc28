"""The ``aws:`` section of ``nexus.yaml``: one source of truth for every template and job request.

Defaults give a small, working deployment (one GPU per serving task on ``g5.xlarge``, spot training on
``ml.g5.2xlarge``, Glue 5 for the data job); every value can be overridden in the file.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from nexus_llm.configbase import StrictModel

_PROJECT_RE = re.compile(r"^[a-z][a-z0-9-]{1,18}[a-z0-9]$")
_FARGATE_CPU = {256, 512, 1024, 2048, 4096, 8192, 16384}


class NetworkSettings(StrictModel):
    """The VPC: two public subnets (load balancer, NAT) and two private ones (tasks, jobs)."""

    vpc_cidr: str = Field("10.42.0.0/16", description="a /16 CIDR; subnets are /20 slices of it")
    nat_gateways: Literal[1, 2] = Field(
        1, description="1 is cheaper; 2 keeps private subnets online when one availability zone fails"
    )

    @field_validator("vpc_cidr")
    @classmethod
    def _is_slash16(cls, value: str) -> str:
        if not re.fullmatch(r"(\d{1,3}\.){3}\d{1,3}/16", value):
            raise ValueError("must be an IPv4 /16 CIDR such as 10.42.0.0/16")
        return value


class StorageSettings(StrictModel):
    """Buckets: lifecycle rules and the size the cost estimate assumes."""

    noncurrent_version_days: int = Field(30, ge=1, description="delete overwritten object versions after")
    infrequent_access_days: int = Field(
        90, ge=30, description="move objects to Standard-IA after (S3 requires at least 30)"
    )
    log_expiry_days: int = Field(365, ge=1, description="delete access/flow logs after")
    expected_gb: float = Field(100, ge=0, description="data + models stored, for `nexus aws cost`")


class ServingSettings(StrictModel):
    """ECS service behind an application load balancer."""

    capacity: Literal["gpu", "cpu"] = Field(
        "gpu", description="gpu: EC2 GPU instances in an ECS capacity provider; cpu: Fargate (no GPU)"
    )
    instance_type: str = Field("g5.xlarge", description="EC2 type for gpu capacity (one task per instance)")
    gpus_per_task: int = Field(1, ge=1, le=8)
    cpu: int = Field(
        2048, description="CPU units per task (1024 = 1 vCPU); Fargate allows 256..16384 in fixed steps"
    )
    memory_mb: int = Field(8192, ge=512, description="memory per task in MiB")
    image_tag: str = Field("0.1.0", description="tag of the serving image in the stack's ECR repository")
    model_uri: str | None = Field(
        None,
        description="s3:// model directory or model.tar.gz in the models bucket "
        "(default: s3://<models bucket>/models/<name>/)",
    )
    min_tasks: int = Field(2, ge=1)
    max_tasks: int = Field(10, ge=1)
    scale_on: Literal["requests", "cpu"] = "requests"
    target_requests_per_task: int = Field(
        60, ge=1, description="ALB requests per task per minute that autoscaling aims for"
    )
    target_cpu_percent: int = Field(60, ge=10, le=95)
    health_check_grace_seconds: int = Field(
        900, ge=60, le=7200, description="time to download and load the model before health checks count"
    )
    api_keys_secret_arn: str | None = Field(
        None,
        description="Secrets Manager secret holding NEXUS_API_KEYS (comma-separated keys); "
        "default: the serving stack generates one",
    )
    allow_anonymous: bool = Field(
        False,
        description="serve without API keys (anyone who reaches the load balancer may use the model); "
        "off by default: the serving stack then generates a key",
    )
    certificate_arn: str | None = Field(
        None, description="ACM certificate for HTTPS; without one the load balancer listens on HTTP only"
    )
    allowed_cidr: str = Field("0.0.0.0/0", description="who may reach the load balancer")
    hours_per_month: float = Field(730, ge=0, le=744, description="hours the service runs, for the estimate")

    @model_validator(mode="after")
    def _check(self) -> ServingSettings:
        if self.max_tasks < self.min_tasks:
            raise ValueError(f"max_tasks ({self.max_tasks}) must be >= min_tasks ({self.min_tasks})")
        if self.capacity == "cpu" and self.cpu not in _FARGATE_CPU:
            raise ValueError(f"cpu must be one of {sorted(_FARGATE_CPU)} on Fargate (got {self.cpu})")
        if self.model_uri is not None and not self.model_uri.startswith("s3://"):
            raise ValueError("model_uri must be an s3:// URI in the models bucket")
        if self.allow_anonymous and self.api_keys_secret_arn:
            raise ValueError(
                "allow_anonymous: true and api_keys_secret_arn both set: remove one "
                "(keys from the secret, or no keys at all)"
            )
        return self

    def exposure_warnings(self) -> list[str]:
        """What a reviewer should know about who can use the endpoint and how keys travel."""
        out = []
        if self.allow_anonymous:
            out.append(
                f"aws.serving.allow_anonymous is true: anyone in {self.allowed_cidr} can use the model "
                "without an API key"
            )
        elif not self.certificate_arn:
            out.append(
                "no aws.serving.certificate_arn: the endpoint is plain HTTP, so API keys cross the "
                "network unencrypted; set an ACM certificate to get HTTPS"
            )
        return out


class TrainingSettings(StrictModel):
    """SageMaker training job."""

    image_tag: str = Field("0.1.0", description="tag of the training image in the stack's ECR repository")
    image_uri: str | None = Field(None, description="full image URI; overrides the stack's repository + tag")
    instance_type: str = "ml.g5.2xlarge"
    instance_count: int = Field(1, ge=1, le=64)
    volume_gb: int = Field(100, ge=1, le=16384)
    spot: bool = Field(True, description="managed spot training (checkpoints make interruptions resumable)")
    max_runtime_hours: float = Field(24, gt=0, le=28 * 24)
    max_wait_hours: float = Field(48, gt=0, le=28 * 24, description="spot only: runtime plus waiting")
    tokens_uri: str | None = Field(
        None, description="s3:// token shards (default: s3://<data bucket>/tokens/<name>/)"
    )
    hours_per_job: float = Field(8, ge=0, description="expected billable hours of one job, for the estimate")
    jobs_per_month: float = Field(4, ge=0)

    @model_validator(mode="after")
    def _check(self) -> TrainingSettings:
        if self.spot and self.max_wait_hours < self.max_runtime_hours:
            raise ValueError(
                f"max_wait_hours ({self.max_wait_hours}) must be >= max_runtime_hours "
                f"({self.max_runtime_hours}) for spot training; raise max_wait_hours"
            )
        if self.tokens_uri is not None and not self.tokens_uri.startswith("s3://"):
            raise ValueError("tokens_uri must be an s3:// URI in the data bucket")
        return self


class DataJobSettings(StrictModel):
    """The Spark curation job on AWS Glue."""

    engine: Literal["glue"] = "glue"
    glue_version: Literal["5.0"] = Field("5.0", description="Glue 5.0 runs Python 3.11, which nexus needs")
    worker_type: Literal["G.1X", "G.2X", "G.4X", "G.8X"] = "G.1X"
    workers: int = Field(10, ge=2, le=299)
    timeout_minutes: int = Field(120, ge=1, le=10080)
    python_modules: list[str] | None = Field(
        None,
        description="pip requirements installed on the workers "
        "(default: the data stage's libraries at the versions installed here)",
    )
    hours_per_job: float = Field(0.5, ge=0, description="expected hours of one run, for the estimate")
    jobs_per_month: float = Field(4, ge=0)


class MonitoringSettings(StrictModel):
    """Alarms on the serving metrics (the guide's rules) and where they are sent."""

    alarm_email: str | None = Field(None, description="subscribe this address to the alerts topic")
    response_time_threshold_s: float = Field(5.0, gt=0, description="average ResponseTime over 2 x 300 s")
    error_count_threshold: float = Field(5, ge=0, description="sum of ErrorCount in 300 s")
    log_retention_days: Literal[365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653] = 365


class BudgetSettings(StrictModel):
    """A monthly cost budget that alerts at 80 % and 100 %."""

    monthly_usd: float = Field(2000, gt=0)
    email: str | None = Field(None, description="also e-mail budget alerts here (besides the topic)")


class AwsConfig(StrictModel):
    """``nexus aws`` settings: stacks, images, jobs, alarms and budget."""

    project: str = Field(
        "nexus", description="prefix of stack, bucket and resource names: 3-20 of a-z, 0-9, '-'"
    )
    region: str = "us-east-1"
    endpoint_url: str | None = Field(
        None, description="AWS API endpoint override (tests, LocalStack); AWS_ENDPOINT_URL also works"
    )
    bucket_suffix: str | None = Field(
        None,
        description="fixed bucket-name suffix (adopt existing buckets); default: <account>-<region>",
    )
    render_dir: str = Field("infra", description="where `nexus aws render` writes templates by default")
    network: NetworkSettings = NetworkSettings()
    storage: StorageSettings = StorageSettings()
    serving: ServingSettings = ServingSettings()
    training: TrainingSettings = TrainingSettings()
    data_job: DataJobSettings = DataJobSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    budget: BudgetSettings = BudgetSettings()

    @field_validator("project")
    @classmethod
    def _project_name(cls, value: str) -> str:
        if not _PROJECT_RE.match(value):
            raise ValueError("must be 3-20 characters of a-z, 0-9 and '-', starting with a letter")
        return value

    @field_validator("bucket_suffix")
    @classmethod
    def _suffix(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[a-z0-9]{4,16}", value):
            raise ValueError("must be 4-16 characters of a-z and 0-9")
        return value
