"""``nexus aws submit-data-job``: the Spark curation job on AWS Glue.

Uploads the entry script (:mod:`nexus_llm.deploy.entrypoints.glue`), the ``nexus_llm`` package as a zip, the
config and any local inputs to the data bucket, creates or updates the Glue job (Glue 5.0, Python 3.11,
worker type and count from ``aws.data_job``), and starts a run.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path
from typing import Any

from nexus_llm import __version__
from nexus_llm.config import NexusConfig
from nexus_llm.deploy import artifacts
from nexus_llm.deploy.clients import AwsClients, poll_until
from nexus_llm.deploy.cloudformation import exported
from nexus_llm.deploy.names import ResourceNames

GLUE_ENTRY = Path(__file__).parent / "entrypoints" / "glue.py"  # uploaded as glue_entry.py
# What the data stage imports beyond Glue 5.0's own Python libraries (pyarrow, numpy, pandas, boto3 ...).
DATA_STAGE_MODULES = ("ftfy", "xxhash", "pydantic", "PyYAML", "fsspec", "s3fs", "rich", "typer")
GLUE_DONE = {"SUCCEEDED", "FAILED", "STOPPED", "TIMEOUT", "ERROR"}


def python_modules(cfg: NexusConfig) -> list[str]:
    """Requirements for ``--additional-python-modules``: the config's, else the versions installed here."""
    if cfg.aws.data_job.python_modules is not None:
        return list(cfg.aws.data_job.python_modules)
    out = []
    for name in DATA_STAGE_MODULES:
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(name)
    return out


def role_arn(clients: AwsClients, names: ResourceNames, key: str) -> str:
    value = exported(clients).get(names.export(key))
    if not value:
        raise LookupError(f"export {names.export(key)} not found: run `nexus aws deploy` first (iam stack)")
    return value


def job_definition(cfg: NexusConfig, names: ResourceNames, role: str, script_uri: str, zip_uri: str) -> dict:
    dj = cfg.aws.data_job
    return {
        "Name": names.glue_job,
        "Description": f"Nexus LLM data curation ({names.project})",
        "Role": role,
        "Command": {"Name": "glueetl", "ScriptLocation": script_uri, "PythonVersion": "3"},
        "GlueVersion": dj.glue_version,
        "WorkerType": dj.worker_type,
        "NumberOfWorkers": dj.workers,
        "Timeout": dj.timeout_minutes,
        "MaxRetries": 0,
        "SecurityConfiguration": f"{names.project}-glue",
        "ExecutionProperty": {"MaxConcurrentRuns": 2},
        "DefaultArguments": {
            "--job-language": "python",
            "--extra-py-files": zip_uri,
            "--additional-python-modules": ",".join(python_modules(cfg)),
            "--TempDir": f"s3://{names.data_bucket}/tmp/glue/",
            "--enable-metrics": "true",
            "--enable-continuous-cloudwatch-log": "true",
            "--enable-observability-metrics": "true",
        },
        "Tags": {"Project": names.project},
    }


def submit_data_job(
    cfg: NexusConfig,
    names: ResourceNames,
    clients: AwsClients,
    inputs: list[str],
    output: str | None = None,
    config_path: str | None = None,
) -> dict[str, Any]:
    """Upload code and inputs, create/update the Glue job and start a run; returns the run's request."""
    if not inputs:
        raise ValueError(
            f"give at least one input: a local path, or an s3:// URI under {names.raw_uri}{names.run_name}/"
        )
    output = output or names.curated_uri()
    curated_root = f"s3://{names.data_bucket}/curated/"
    if not output.startswith(curated_root):
        raise ValueError(
            f"output {output} is outside {curated_root}, the only prefix the Glue role may write"
        )
    glue = clients.client("glue")
    role = role_arn(clients, names, "GlueRoleArn")
    code = artifacts.package_zip()
    base = f"{names.jobs_uri}{names.run_name}/"
    zip_uri = artifacts.put_bytes(
        clients, code, f"{base}nexus_llm-{__version__}-{artifacts.digest(code)}.zip"
    )
    script_uri = artifacts.put_bytes(clients, GLUE_ENTRY.read_bytes(), f"{base}glue_entry.py")
    uris = artifacts.upload_inputs(clients, inputs, f"{names.raw_uri}{names.run_name}/")
    definition = job_definition(cfg, names, role, script_uri, zip_uri)
    if _job_exists(glue, names.glue_job):
        update = {k: v for k, v in definition.items() if k not in ("Name", "Tags")}
        glue.update_job(JobName=names.glue_job, JobUpdate=update)
    else:
        glue.create_job(**definition)
    arguments = {
        "--nexus-inputs": json.dumps(uris),
        "--nexus-output": output,
    }
    if config_path:
        config_uri = artifacts.put_bytes(clients, Path(config_path).read_bytes(), f"{base}nexus.yaml")
        arguments["--nexus-config"] = config_uri
    run_id = glue.start_job_run(JobName=names.glue_job, Arguments=arguments)["JobRunId"]
    return {"JobName": names.glue_job, "JobRunId": run_id, "Arguments": arguments, "Inputs": uris}


def _job_exists(glue: Any, name: str) -> bool:
    try:
        glue.get_job(JobName=name)
        return True
    except glue.exceptions.EntityNotFoundException:
        return False


def data_job_timeout_s(cfg: NexusConfig) -> float:
    """How long to wait for a run: Glue's own job timeout plus 15 minutes for queueing and start-up."""
    return (cfg.aws.data_job.timeout_minutes + 15) * 60


def wait_data_job(
    clients: AwsClients, job: str, run_id: str, timeout_s: float, poll_s: float = 30, on_state=None
) -> dict:
    """Poll the run until it ends (or ``timeout_s`` passes); returns Glue's description of it."""
    glue = clients.client("glue")
    return poll_until(
        lambda: glue.get_job_run(JobName=job, RunId=run_id)["JobRun"],
        lambda run: run["JobRunState"] in GLUE_DONE,
        timeout_s,
        poll_s,
        f"Glue run {run_id} of {job}",
        on_poll=(lambda run: on_state(run["JobRunState"])) if on_state else None,
    )
