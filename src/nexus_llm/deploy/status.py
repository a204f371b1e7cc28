"""``nexus aws status``: what is deployed and what ran, gathered from CloudFormation, SageMaker, Glue."""

from __future__ import annotations

from typing import Any

from nexus_llm.deploy.clients import AwsClients
from nexus_llm.deploy.cloudformation import stack_statuses
from nexus_llm.deploy.names import ResourceNames


def collect_status(names: ResourceNames, clients: AwsClients, limit: int = 5) -> dict[str, Any]:
    stacks = stack_statuses(names, clients)
    endpoint = next((s.outputs["ServiceUrl"] for s in stacks if "ServiceUrl" in s.outputs), None)
    jobs = clients.client("sagemaker").list_training_jobs(
        NameContains=names.run_name, SortBy="CreationTime", SortOrder="Descending", MaxResults=limit
    )["TrainingJobSummaries"]
    training = [(j["TrainingJobName"], j["TrainingJobStatus"], str(j["CreationTime"])) for j in jobs]
    glue = clients.client("glue")
    try:
        runs = glue.get_job_runs(JobName=names.glue_job, MaxResults=limit)["JobRuns"]
    except glue.exceptions.EntityNotFoundException:
        runs = []
    data = [(r["Id"], r["JobRunState"], str(r.get("StartedOn", ""))) for r in runs]
    return {"stacks": stacks, "endpoint": endpoint, "training_jobs": training, "data_runs": data}
