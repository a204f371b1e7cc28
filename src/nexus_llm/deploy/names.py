"""Names of everything ``nexus aws`` creates, computed once from the config (no state to lose).

Bucket names are global across all AWS accounts, so they carry a suffix. It is derived, not stored:
``sha256(account:region:project)[:10]``. The same suffix comes out on every laptop, CI runner and
clone that deploys to the same account and region, so ``deploy``, ``submit-*-job`` and ``destroy``
always agree on the buckets without a state file that could be lost or diverge, and the hash keeps
the account id out of the bucket name. ``aws.bucket_suffix`` pins it explicitly (to adopt existing
buckets, or to render without AWS credentials). ``nexus aws render`` records the suffix it used in
``render.json``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from nexus_llm.deploy.clients import AwsClients
from nexus_llm.deploy.config import AwsConfig

STACK_ORDER = ("storage", "network", "iam", "serving", "monitoring", "budget")
"""Deploy order (destroy runs it backwards): each stack imports only from stacks before it."""

METRICS_NAMESPACE = "NexusLLM/API"
METRICS_DIMENSION = "Service"


def derive_suffix(account_id: str, region: str, project: str) -> str:
    return hashlib.sha256(f"{account_id}:{region}:{project}".encode()).hexdigest()[:10]


@dataclass(frozen=True)
class ResourceNames:
    """Every name and S3 prefix, so templates, jobs and IAM policies use the same ones."""

    project: str
    run_name: str
    region: str
    suffix: str

    @classmethod
    def resolve(cls, aws: AwsConfig, run_name: str, clients: AwsClients | None = None) -> ResourceNames:
        """Names for this config; asks STS for the account id only when no suffix is pinned."""
        suffix = aws.bucket_suffix
        if suffix is None:
            clients = clients or AwsClients.from_config(aws)
            suffix = derive_suffix(clients.account_id(), aws.region, aws.project)
        return cls(aws.project, _safe(run_name), aws.region, suffix)

    def stack(self, concern: str) -> str:
        return f"{self.project}-{concern}"

    def export(self, key: str) -> str:
        """Name of a cross-stack export (``Fn::ImportValue``)."""
        return f"{self.project}-{key}"

    def bucket(self, kind: str) -> str:
        """``data``, ``models`` or ``logs`` bucket (at most 20 + 8 + 10 characters: under S3's 63)."""
        return f"{self.project}-{kind}-{self.suffix}"

    @property
    def data_bucket(self) -> str:
        return self.bucket("data")

    @property
    def models_bucket(self) -> str:
        return self.bucket("models")

    @property
    def logs_bucket(self) -> str:
        return self.bucket("logs")

    def role(self, what: str) -> str:
        """IAM role (and its inline policy) for ``training``, ``glue``, ``serve-execution`` ..."""
        return f"{self.project}-{what}"

    def repository(self, kind: str) -> str:
        """ECR repository for the ``train`` or ``serve`` image."""
        return f"{self.project}/{kind}"

    # S3 layout. IAM policies grant each role only the prefixes it needs (see stacks/iam.py).
    @property
    def raw_uri(self) -> str:
        return f"s3://{self.data_bucket}/raw/"

    @property
    def jobs_uri(self) -> str:
        """Job code and configs uploaded by ``submit-*-job``."""
        return f"s3://{self.data_bucket}/jobs/"

    def curated_uri(self) -> str:
        return f"s3://{self.data_bucket}/curated/{self.run_name}/"

    def tokens_uri(self) -> str:
        return f"s3://{self.data_bucket}/tokens/{self.run_name}/"

    def training_output_uri(self) -> str:
        return f"s3://{self.models_bucket}/training/{self.run_name}/"

    def checkpoints_uri(self) -> str:
        """Stable per run name, so a resubmitted or spot-interrupted job resumes from the last one."""
        return f"s3://{self.models_bucket}/checkpoints/{self.run_name}/"

    def model_uri(self) -> str:
        return f"s3://{self.models_bucket}/models/{self.run_name}/"

    @property
    def serving_cluster(self) -> str:
        return f"{self.project}-serving"

    @property
    def serving_service(self) -> str:
        return f"{self.project}-serve"

    @property
    def glue_job(self) -> str:
        return f"{self.project}-curate"

    @property
    def service_dimension(self) -> str:
        """Value of the ``Service`` dimension the server's EMF lines carry (env ``NEXUS_SERVICE_NAME``)."""
        return self.project


def _safe(name: str) -> str:
    """A run name usable in S3 keys and SageMaker job names."""
    out = "".join(c if c.isalnum() or c == "-" else "-" for c in name.lower()).strip("-")
    return out or "nexus"
