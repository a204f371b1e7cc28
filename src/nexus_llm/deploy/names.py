"""Names of everything ``nexus aws`` creates, computed once from the config (no state to lose).

Bucket names are global across all AWS accounts, so they end in the account id and the region:
``<project>-<kind>-<account>-<region>`` (the pattern AWS's own CDK bootstrap and SageMaker default
buckets use). The same names come out on every laptop, CI runner and clone that deploys to the same
account and region, so ``deploy``, ``submit-*-job`` and ``destroy`` always agree on the buckets without
a state file that could be lost or diverge.

The templates never need the account: they carry CloudFormation's ``${AWS::AccountId}`` pseudo
parameter where the id goes, and CloudFormation fills it in when the stack is created. So ``nexus aws
render`` works before any credentials exist and writes the same templates for every account; the
commands that act on AWS (``deploy``, jobs, ``status``, ``destroy``) ask STS for the account first, so
they fail at once, clearly, without credentials. (AWS does not treat account ids as secret: IAM's
documentation says so; the ``ExpectedBucketOwner`` checks below keep another account's bucket of the
same name from being written to.)

``aws.bucket_suffix`` pins ``<project>-<kind>-<suffix>`` instead (to adopt existing buckets).
``nexus aws render`` records the bucket names it used in ``render.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from nexus_llm.deploy.clients import AwsClients
from nexus_llm.deploy.config import AwsConfig

STACK_ORDER = ("storage", "network", "iam", "serving", "monitoring", "budget")
"""Deploy order (destroy runs it backwards): each stack imports only from stacks before it."""

METRICS_NAMESPACE = "NexusLLM/API"
METRICS_DIMENSION = "Service"

ACCOUNT_PARAMETER = "${AWS::AccountId}"
"""CloudFormation's pseudo parameter, which templates carry where the account id goes."""


@dataclass(frozen=True)
class ResourceNames:
    """Every name and S3 prefix, so templates, jobs and IAM policies use the same ones.

    ``account_id`` is None for templates: names that hold it carry :data:`ACCOUNT_PARAMETER` instead
    (wrap them in ``Sub`` where a template needs a value, see ``stacks.common.cfn_value``).
    """

    project: str
    run_name: str
    region: str
    suffix: str | None = None
    account_id: str | None = None

    @classmethod
    def for_templates(cls, aws: AwsConfig, run_name: str) -> ResourceNames:
        """Names for rendering templates: no AWS call, the account left to CloudFormation."""
        return cls(aws.project, _safe(run_name), aws.region, aws.bucket_suffix)

    @classmethod
    def resolve(cls, aws: AwsConfig, run_name: str, clients: AwsClients | None = None) -> ResourceNames:
        """Names for acting on AWS: asks STS for the account id (a clear error without credentials)."""
        clients = clients or AwsClients.from_config(aws)
        return replace(cls.for_templates(aws, run_name), account_id=clients.account_id())

    def templated(self) -> ResourceNames:
        """The same names with the account left to CloudFormation: what ``render`` and ``deploy``
        put into templates, so a deployed template is exactly the rendered one."""
        return replace(self, account_id=None)

    @property
    def account_in_names(self) -> str:
        """The account part of bucket names: the id, or the pseudo parameter in templates."""
        return self.account_id or ACCOUNT_PARAMETER

    def stack(self, concern: str) -> str:
        return f"{self.project}-{concern}"

    def export(self, key: str) -> str:
        """Name of a cross-stack export (``Fn::ImportValue``)."""
        return f"{self.project}-{key}"

    def bucket(self, kind: str) -> str:
        """``data``, ``models`` or ``logs`` bucket: ``<project>-<kind>-<account>-<region>`` (at most
        20 + 8 + 12 + 1 + 15 = 56 characters, under S3's 63), or ``<project>-<kind>-<suffix>``."""
        if self.suffix is not None:
            return f"{self.project}-{kind}-{self.suffix}"
        return f"{self.project}-{kind}-{self.account_in_names}-{self.region}"

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
