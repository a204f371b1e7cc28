"""``nexus aws ...``: render, deploy, destroy, submit jobs, status, cost."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import typer

from nexus_llm.console import console, table

app = typer.Typer(
    help="Deploy to AWS: CloudFormation stacks, Glue data jobs, SageMaker training, serving on ECS.",
    no_args_is_help=True,
)

CONFIG = typer.Option(None, "--config", "-c", help="nexus.yaml (its aws: section); defaults when omitted")
STACKS = typer.Option(None, "--stack", help="only these stacks (repeatable): storage, network, iam, ...")


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """AWS and input problems become one clear message and exit code 2, not a traceback."""
    from botocore.exceptions import BotoCoreError, ClientError

    from nexus_llm.deploy.cloudformation import StackError
    from nexus_llm.deploy.cost import PriceError

    try:
        yield
    except (StackError, PriceError, LookupError, ValueError, ClientError, BotoCoreError) as err:
        console.print(f"[bold red]error[/]: {err}")
        raise typer.Exit(2) from None


def _setup(config: str | None, need_names: bool = True):
    from nexus_llm.config import load_config
    from nexus_llm.deploy.clients import AwsClients
    from nexus_llm.deploy.names import ResourceNames

    cfg = load_config(config)
    clients = AwsClients.from_config(cfg.aws)
    names = ResourceNames.resolve(cfg.aws, cfg.name, clients) if need_names else None
    return cfg, clients, names


@app.command()
def render(
    config: str | None = CONFIG,
    output: str | None = typer.Option(None, "--output", "-o", help="directory (default: aws.render_dir)"),
) -> None:
    """Write the CloudFormation templates (one per stack) and render.json."""
    from nexus_llm.deploy.render import render_templates

    with _user_errors():
        cfg, _, names = _setup(config)
        out = output or cfg.aws.render_dir
        summary = render_templates(cfg, names, out)
    rows = [(s["stack"], s["file"], s["resources"]) for s in summary["stacks"].values()]
    console.print(
        table(f"templates in {out} (bucket suffix {names.suffix})", ["stack", "file", "resources"], rows)
    )


@app.command()
def deploy(
    config: str | None = CONFIG,
    stack: list[str] | None = STACKS,
    poll_seconds: float = typer.Option(5.0, help="how often to poll CloudFormation while waiting"),
) -> None:
    """Create or update the stacks in order, waiting for each (with progress)."""
    from nexus_llm.console import progress
    from nexus_llm.deploy.cloudformation import deploy_stacks

    with _user_errors():
        cfg, clients, names = _setup(config)
        with progress() as bar:
            tasks: dict[str, Any] = {}

            def on_progress(concern: str, done: int, total: int) -> None:
                if concern not in tasks:
                    tasks[concern] = bar.add_task(names.stack(concern), total=total)
                bar.update(tasks[concern], completed=min(done, total))

            results = deploy_stacks(cfg, names, clients, stack, poll_s=poll_seconds, progress=on_progress)
    rows = [(r.name, r.action, r.status) for r in results]
    console.print(table("stacks", ["stack", "action", "status"], rows))
    for r in results:
        if "ServiceUrl" in r.outputs:
            console.print(f"endpoint: {r.outputs['ServiceUrl']} (healthy once the model has loaded)")


@app.command()
def destroy(
    config: str | None = CONFIG,
    stack: list[str] | None = STACKS,
    yes: bool = typer.Option(False, "--yes", "-y", help="do not ask for confirmation"),
    poll_seconds: float = typer.Option(5.0, help="how often to poll CloudFormation while waiting"),
) -> None:
    """Delete the stacks in reverse order. Buckets, the KMS key and ECR repositories are kept."""
    from nexus_llm.deploy.cloudformation import RETAINED, destroy_stacks

    with _user_errors():
        _, clients, names = _setup(config)
        if not yes:
            typer.confirm(f"delete the {names.project}-* stacks in {names.region}?", abort=True)
        results = destroy_stacks(names, clients, stack, poll_s=poll_seconds)
    console.print(table("stacks", ["stack", "action"], [(r.name, r.action) for r in results]))
    console.print(f"kept: {RETAINED}. Delete them by hand when you no longer need the data.")


@app.command("submit-data-job")
def submit_data_job(
    inputs: list[str] = typer.Argument(
        ..., help="local files/directories (uploaded) or s3:// URIs under raw/"
    ),
    config: str | None = CONFIG,
    output: str | None = typer.Option(None, "--output", "-o", help="default: s3://<data>/curated/<name>/"),
    wait: bool = typer.Option(False, "--wait", help="wait for the run to finish"),
) -> None:
    """Run the Spark curation job on AWS Glue."""
    from nexus_llm.deploy.data_job import submit_data_job as submit
    from nexus_llm.deploy.data_job import wait_data_job

    with _user_errors():
        cfg, clients, names = _setup(config)
        run = submit(cfg, names, clients, inputs, output, config)
        console.print(table("Glue run", ["field", "value"], [
            ("job", run["JobName"]), ("run id", run["JobRunId"]), ("output", run["Arguments"]["--nexus-output"]),
            ("inputs", ", ".join(run["Inputs"])),
        ]))  # fmt: skip
        if wait:
            final = wait_data_job(clients, run["JobName"], run["JobRunId"], on_state=console.print)
            if final["JobRunState"] != "SUCCEEDED":
                console.print(f"[bold red]run {final['JobRunState']}[/]: {final.get('ErrorMessage', '')}")
                raise typer.Exit(1)


@app.command("submit-train-job")
def submit_train_job(
    config: str = typer.Option(..., "--config", "-c", help="nexus.yaml: uploaded and given to the job"),
    overrides: list[str] | None = typer.Option(None, "--set", help="dotted override KEY=VALUE (repeatable)"),
    name: str | None = typer.Option(None, "--name", help="job name (default: <name>-<UTC time>)"),
    wait: bool = typer.Option(False, "--wait", help="wait for the job to finish"),
) -> None:
    """Start a SageMaker training job (spot by default, resuming from the run's checkpoints)."""
    from nexus_llm.deploy.train_job import parse_overrides, wait_train_job
    from nexus_llm.deploy.train_job import submit_train_job as submit

    with _user_errors():
        cfg, clients, names = _setup(config)
        req = submit(cfg, names, clients, config, parse_overrides(overrides or []), name)
        stop = req["StoppingCondition"]
        console.print(table("SageMaker training job", ["field", "value"], [
            ("name", req["TrainingJobName"]), ("image", req["AlgorithmSpecification"]["TrainingImage"]),
            ("instances", f"{req['ResourceConfig']['InstanceCount']} x {req['ResourceConfig']['InstanceType']}"),
            ("spot", req["EnableManagedSpotTraining"]), ("max runtime s", stop["MaxRuntimeInSeconds"]),
            ("checkpoints", req["CheckpointConfig"]["S3Uri"]), ("output", req["OutputDataConfig"]["S3OutputPath"]),
        ]))  # fmt: skip
        if wait:
            final = wait_train_job(clients, req["TrainingJobName"], on_state=console.print)
            if final["TrainingJobStatus"] != "Completed":
                console.print(
                    f"[bold red]job {final['TrainingJobStatus']}[/]: {final.get('FailureReason', '')}"
                )
                raise typer.Exit(1)


@app.command()
def status(config: str | None = CONFIG) -> None:
    """Stacks, the serving endpoint, recent training jobs and data-job runs."""
    from nexus_llm.deploy.status import collect_status

    with _user_errors():
        _, clients, names = _setup(config)
        info = collect_status(names, clients)
    console.print(table("stacks", ["stack", "status"], [(s.name, s.status) for s in info["stacks"]]))
    if info["endpoint"]:
        console.print(f"endpoint: {info['endpoint']}")
    if info["training_jobs"]:
        console.print(table("training jobs", ["name", "status", "created"], info["training_jobs"]))
    if info["data_runs"]:
        console.print(table("data-job runs", ["run id", "state", "started"], info["data_runs"]))


@app.command()
def cost(
    config: str | None = CONFIG,
    price: list[str] | None = typer.Option(None, "--price", help="TYPE=USD_PER_HOUR for an instance type"),
    as_json: bool = typer.Option(False, "--json", help="print the estimate as JSON on stdout"),
) -> None:
    """Estimate the monthly and per-job cost from the config, showing every price assumed."""
    from nexus_llm.config import load_config
    from nexus_llm.deploy.cost import estimate

    with _user_errors():
        cfg = load_config(config)
        prices = {}
        for item in price or []:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"--price {item!r}: expected TYPE=USD_PER_HOUR, e.g. g5.xlarge=1.006")
            prices[key] = float(value)
        est = estimate(cfg, prices)
    if as_json:
        print(json.dumps({**est, "lines": [vars(line) for line in est["lines"]]}, indent=2))
        return
    rows = [(ln.group, ln.item, ln.assumption, ln.unit_price, ln.monthly_usd) for ln in est["lines"]]
    rows.append(("total", "", "", "", est["monthly_total_usd"]))
    console.print(table(f"estimated monthly cost, USD (prices: {est['prices_as_of']})",
                        ["group", "item", "assumption", "price", "USD/month"], rows))  # fmt: skip
    jobs = est["per_job"]
    console.print(table("per job, USD", ["job", "hours", "USD"], [
        ("training", jobs["training"]["hours"], jobs["training"]["usd"]),
        ("data (Glue)", jobs["data"]["hours"], jobs["data"]["usd"]),
    ]))  # fmt: skip
    over = est["monthly_total_usd"] > est["budget_usd"]
    console.print(
        f"budget: {est['budget_usd']:,.2f} USD/month"
        + (" [bold red](estimate exceeds it)[/]" if over else "")
    )
    console.print("Prices vary by region and over time; check the AWS pricing pages for yours.")
