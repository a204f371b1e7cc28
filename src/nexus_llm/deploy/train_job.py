"""``nexus aws submit-train-job``: a SageMaker training job running the training image.

The container (``python -m nexus_llm.deploy.entrypoints.sagemaker_train``) reads:

- channel ``training``: the token shards (``aws.training.tokens_uri``, default
  ``s3://<data>/tokens/<name>/``);
- channel ``config``: this ``nexus.yaml``, uploaded to ``s3://<data>/jobs/<name>/<job>/config/nexus.yaml``;
- hyperparameters: ``config`` = ``nexus.yaml`` (found in the ``config`` channel) and the dotted
  overrides from ``--set key=value`` (all values strings, as SageMaker requires). The request itself is
  built from the same merged config, so ``--set aws.training.instance_type=...`` changes the instance
  too; keys that decide where the job runs and writes (``name``, ``aws.project``, ``aws.region`` ...)
  are refused, since the stacks, buckets and prefixes were resolved from the file;
- checkpoints in ``/opt/ml/checkpoints``, synced with ``s3://<models>/checkpoints/<name>/`` (stable per
  run name, so a spot interruption or a resubmission resumes from the last complete checkpoint).

The model directory goes to ``s3://<models>/training/<name>/<job>/output/model.tar.gz``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from nexus_llm.config import NexusConfig, parse_config
from nexus_llm.configbase import ConfigError
from nexus_llm.deploy import artifacts
from nexus_llm.deploy.clients import AwsClients, dns_suffix, poll_until
from nexus_llm.deploy.cloudformation import exported
from nexus_llm.deploy.names import ResourceNames

CONFIG_FILE = "nexus.yaml"
CHECKPOINT_DIR = "/opt/ml/checkpoints"
SAGEMAKER_DONE = {"Completed", "Failed", "Stopped"}
# Parsed from the container's log lines, which carry the same JSON objects as runs/metrics.jsonl.
METRIC_DEFINITIONS = [
    {"Name": "train:loss", "Regex": r'"loss": ?([0-9.eE+-]+)'},
    {"Name": "train:tokens_per_second", "Regex": r'"tokens_per_second": ?([0-9.eE+-]+)'},
    {"Name": "train:mfu", "Regex": r'"mfu": ?([0-9.eE+-]+)'},
]


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """``["train.max_steps=100", ...]`` → ``{"train.max_steps": "100"}`` (values stay strings)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"--set {pair!r}: expected KEY=VALUE with a dotted key, e.g. train.max_steps=100"
            )
        out[key.strip()] = value
    return out


IDENTITY_KEYS = ("name", "aws.project", "aws.region", "aws.bucket_suffix", "aws.endpoint_url")
"""Settings that decide which account, stacks, buckets and S3 prefixes a job uses: file only."""


def _refuse_identity(key: str) -> None:
    for fixed in IDENTITY_KEYS:
        if key == fixed or fixed.startswith(f"{key}.") or key.startswith(f"{fixed}."):
            raise ConfigError(
                f"--set {key}: {fixed} decides which stacks, buckets and S3 prefixes the job uses, "
                "so it cannot be overridden per job; change it in nexus.yaml"
            )


def config_with_overrides(raw: dict[str, Any], overrides: dict[str, str], source: str) -> NexusConfig:
    """The config with the ``--set`` overrides applied and validated, before paying for an instance.

    The job request is built from this config and the container applies the same overrides to the
    same file, so both sides agree.
    """
    for key in overrides:
        _refuse_identity(key)
    merged = yaml.safe_load(yaml.safe_dump(raw)) or {}
    for key, value in overrides.items():
        node = merged
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {part!r} is not a section")
        node[leaf] = yaml.safe_load(value) if value else value
    return parse_config(merged, f"{source} with --set overrides")


def job_name(names: ResourceNames, now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    return f"{names.run_name[: 63 - len(stamp) - 1]}-{stamp}"


def training_image(cfg: NexusConfig, names: ResourceNames, clients: AwsClients) -> str:
    tr = cfg.aws.training
    if tr.image_uri:
        return tr.image_uri
    registry = f"{clients.account_id()}.dkr.ecr.{names.region}.{dns_suffix(names.region)}"
    return f"{registry}/{names.repository('train')}:{tr.image_tag}"


def training_request(
    cfg: NexusConfig,
    names: ResourceNames,
    *,
    name: str,
    image: str,
    role: str,
    kms_key: str | None,
    config_prefix: str,
    overrides: dict[str, str],
) -> dict[str, Any]:
    """The ``CreateTrainingJob`` request (pure, so tests can read every field)."""
    tr = cfg.aws.training
    tokens = tr.tokens_uri or names.tokens_uri()

    def channel(channel_name: str, uri: str) -> dict[str, Any]:
        source = {"S3DataType": "S3Prefix", "S3Uri": uri, "S3DataDistributionType": "FullyReplicated"}
        return {"ChannelName": channel_name, "DataSource": {"S3DataSource": source}, "InputMode": "File"}

    stopping = {"MaxRuntimeInSeconds": int(tr.max_runtime_hours * 3600)}
    if tr.spot:
        stopping["MaxWaitTimeInSeconds"] = int(tr.max_wait_hours * 3600)
    output: dict[str, str] = {"S3OutputPath": names.training_output_uri()}
    if kms_key:
        output["KmsKeyId"] = kms_key
    return {
        "TrainingJobName": name,
        "RoleArn": role,
        "AlgorithmSpecification": {
            "TrainingImage": image,
            "TrainingInputMode": "File",
            "MetricDefinitions": METRIC_DEFINITIONS,
            "EnableSageMakerMetricsTimeSeries": True,
        },
        "HyperParameters": {"config": CONFIG_FILE, **{k: str(v) for k, v in overrides.items()}},
        "InputDataConfig": [channel("training", tokens), channel("config", config_prefix)],
        "OutputDataConfig": output,
        "ResourceConfig": {
            "InstanceType": tr.instance_type,
            "InstanceCount": tr.instance_count,
            "VolumeSizeInGB": tr.volume_gb,
        },
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": tr.spot,
        "CheckpointConfig": {"S3Uri": names.checkpoints_uri(), "LocalPath": CHECKPOINT_DIR},
        "Environment": {"NEXUS_RUN_NAME": names.run_name},
        "Tags": [{"Key": "Project", "Value": names.project}, {"Key": "RunName", "Value": names.run_name}],
    }


def submit_train_job(
    names: ResourceNames,
    clients: AwsClients,
    config_path: str,
    overrides: dict[str, str] | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """Upload the config, then create the training job from it (with ``overrides`` applied);
    returns the request that was sent. ``names`` come from the same file."""
    overrides = overrides or {}
    text = Path(config_path).read_bytes()
    cfg = config_with_overrides(yaml.safe_load(text) or {}, overrides, config_path)
    exports = exported(clients)
    role = exports.get(names.export("TrainingRoleArn"))
    if not role:
        raise LookupError(f"export {names.export('TrainingRoleArn')} not found: run `nexus aws deploy` first")
    name = name or job_name(names)
    prefix = f"{names.jobs_uri}{names.run_name}/{name}/config/"
    artifacts.put_bytes(clients, text, prefix + CONFIG_FILE)
    request = training_request(
        cfg,
        names,
        name=name,
        image=training_image(cfg, names, clients),
        role=role,
        kms_key=exports.get(names.export("KmsKeyArn")),
        config_prefix=prefix,
        overrides=overrides,
    )
    clients.client("sagemaker").create_training_job(**request)
    return request


def train_job_timeout_s(request: dict[str, Any]) -> float:
    """How long to wait for a job: its own stopping condition (spot: the whole wait, queueing
    included) plus 30 minutes for SageMaker to start the instances and upload the model."""
    stop = request["StoppingCondition"]
    return stop.get("MaxWaitTimeInSeconds", stop["MaxRuntimeInSeconds"]) + 30 * 60


def wait_train_job(
    clients: AwsClients, name: str, timeout_s: float, poll_s: float = 60, on_state=None
) -> dict:
    sm = clients.client("sagemaker")
    return poll_until(
        lambda: sm.describe_training_job(TrainingJobName=name),
        lambda job: job["TrainingJobStatus"] in SAGEMAKER_DONE,
        timeout_s,
        poll_s,
        f"training job {name}",
        on_poll=(lambda job: on_state(f"{job['TrainingJobStatus']} / {job.get('SecondaryStatus', '')}"))
        if on_state
        else None,
    )
