"""``nexus aws ...``: render, deploy, destroy, submit jobs, status, cost."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import typer
from rich.markup import escape

from nexus_llm.console import console, table
from nexus_llm.errors import UserError

app = typer.Typer(
    help="Deploy to AWS: CloudFormation stacks, Glue data jobs, SageMaker training, serving on ECS.",
    no_args_is_help=True,
)

CONFIG = typer.Option(None, "--config", "-c", help="nexus.yaml (its aws: section); defaults when omitted")
STACKS = typer.Option(None, "--stack", help="only these stacks (repeatable): storage, network, iam, ...")
POLL = typer.Option(5.0, "--poll-seconds", help="how often to poll CloudFormation while waiting")
STACK_TIMEOUT = typer.Option(60.0, "--timeout-minutes", help="give up waiting for a stack after this long")


def _job_timeout(minutes: float | None, default_s: float) -> float:
    return default_s if minutes is None else minutes * 60


def _say(message: str, detail: Any = "") -> None:
    """``message`` is our own rich markup; ``detail`` (AWS text, user input) is printed as is."""
    console.print(f"{message}{escape(str(detail))}", soft_wrap=True)


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """AWS and input problems become a ``UserError`` (one clear message and exit code 2, not a traceback)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from nexus_llm.deploy.clients import WaitTimeout
    from nexus_llm.deploy.cloudformation import StackError
    from nexus_llm.deploy.cost import PriceError

    try:
        yield
    except UserError:
        raise
    except (StackError, PriceError, WaitTimeout, LookupError, ValueError, ClientError, BotoCoreError) as err:
        raise UserError(str(err)) from None


def _setup(config: str | None):
    """Config, clients and names for a command that acts on AWS: asks STS for the account first, so
    missing credentials fail here, clearly, before anything is created."""
    from nexus_llm.config import load_config
    from nexus_llm.deploy.clients import AwsClients
    from nexus_llm.deploy.names import ResourceNames

    cfg = load_config(config)
    clients = AwsClients.from_config(cfg.aws)
    return cfg, clients, ResourceNames.resolve(cfg.aws, cfg.name, clients)


def _warn_exposure(cfg) -> None:
    for warning in cfg.aws.serving.exposure_warnings():
        _say("[bold yellow]warning[/]: ", warning)


def _stack_progress(bar, names) -> Callable[[str, int, int], None]:
    """A progress callback that shows one bar per stack."""
    tasks: dict[str, Any] = {}

    def on_progress(concern: str, done: int, total: int) -> None:
        if concern not in tasks:
            tasks[concern] = bar.add_task(names.stack(concern), total=total)
        bar.update(tasks[concern], completed=min(done, total))

    return on_progress


@app.command()
def render(
    config: str | None = CONFIG,
    output: str | None = typer.Option(None, "--output", "-o", help="directory (default: aws.render_dir)"),
) -> None:
    """Write the CloudFormation templates (one per stack) and render.json."""
    from nexus_llm.config import load_config
    from nexus_llm.deploy.names import ResourceNames
    from nexus_llm.deploy.render import render_templates

    with _user_errors():  # no AWS call: the templates leave the account id to CloudFormation
        cfg = load_config(config)
        out = output or cfg.aws.render_dir
        summary = render_templates(cfg, ResourceNames.for_templates(cfg.aws, cfg.name), out)
    rows = [(s["stack"], s["file"], s["resources"]) for s in summary["stacks"].values()]
    console.print(table(escape(f"templates in {out}"), ["stack", "file", "resources"], rows))
    note = " (CloudFormation fills in the account id)" if summary["bucket_suffix"] is None else ""
    _say("buckets: ", ", ".join(summary["buckets"].values()) + note)
    _warn_exposure(cfg)


@app.command()
def deploy(
    config: str | None = CONFIG,
    stack: list[str] | None = STACKS,
    poll_seconds: float = POLL,
    timeout_minutes: float = STACK_TIMEOUT,
) -> None:
    """Create or update the stacks in order, waiting for each (with progress)."""
    from nexus_llm.console import progress
    from nexus_llm.deploy.cloudformation import deploy_stacks

    with _user_errors():
        cfg, clients, names = _setup(config)
        with progress() as bar:
            on_progress = _stack_progress(bar, names)
            results = deploy_stacks(
                cfg,
                names,
                clients,
                stack,
                poll_s=poll_seconds,
                timeout_s=timeout_minutes * 60,
                progress=on_progress,
            )
    rows = [(r.name, r.action, r.status) for r in results]
    console.print(table("stacks", ["stack", "action", "status"], rows))
    for r in results:
        if "ServiceUrl" in r.outputs:
            _say("endpoint: ", f"{r.outputs['ServiceUrl']} (healthy once the model has loaded)")
        if "ApiKeysSecretArn" in r.outputs:
            secret = r.outputs["ApiKeysSecretArn"]
            _say(
                "API key: ",
                f"aws secretsmanager get-secret-value --secret-id {secret} "
                "--query SecretString --output text",
            )
    _warn_exposure(cfg)


@app.command()
def destroy(
    config: str | None = CONFIG,
    stack: list[str] | None = STACKS,
    yes: bool = typer.Option(False, "--yes", "-y", help="do not ask for confirmation"),
    poll_seconds: float = POLL,
    timeout_minutes: float = STACK_TIMEOUT,
) -> None:
    """Delete the stacks in reverse order, waiting for each (with progress). Buckets, the KMS key and
    ECR repositories are kept."""
    from nexus_llm.console import progress
    from nexus_llm.deploy.cloudformation import RETAINED, destroy_stacks

    with _user_errors():
        _, clients, names = _setup(config)
        if not yes:
            typer.confirm(f"delete the {names.project}-* stacks in {names.region}?", abort=True)
        with progress() as bar:
            on_progress = _stack_progress(bar, names)
            results = destroy_stacks(
                names,
                clients,
                stack,
                poll_s=poll_seconds,
                timeout_s=timeout_minutes * 60,
                progress=on_progress,
            )
    console.print(table("stacks", ["stack", "action"], [(r.name, r.action) for r in results]))
    console.print(f"kept: {RETAINED}. Delete them by hand when you no longer need the data.")


@app.command("submit-data-job")
def submit_data_job(
    inputs: list[str] = typer.Argument(
        ...,
        help="local files/directories (uploaded to s3://<data bucket>/raw/<name>/) or s3:// URIs "
        "already under s3://<data bucket>/raw/<name>/ (<name>: the config's run name)",
    ),
    config: str | None = CONFIG,
    output: str | None = typer.Option(None, "--output", "-o", help="default: s3://<data>/curated/<name>/"),
    wait: bool = typer.Option(False, "--wait", help="wait for the run to finish"),
    timeout_minutes: float | None = typer.Option(
        None,
        "--timeout-minutes",
        help="stop waiting after this long (default: aws.data_job.timeout_minutes + 15)",
    ),
) -> None:
    """Run the Spark curation job on AWS Glue."""
    from nexus_llm.deploy.data_job import data_job_timeout_s, wait_data_job
    from nexus_llm.deploy.data_job import submit_data_job as submit

    with _user_errors():
        cfg, clients, names = _setup(config)
        run = submit(cfg, names, clients, inputs, output, config)
        rows = [
            ("job", run["JobName"]),
            ("run id", run["JobRunId"]),
            ("output", run["Arguments"]["--nexus-output"]),
            ("inputs", ", ".join(run["Inputs"])),
        ]
        console.print(table("Glue run", ["field", "value"], rows))
        if wait:
            limit = _job_timeout(timeout_minutes, data_job_timeout_s(cfg))
            final = wait_data_job(clients, run["JobName"], run["JobRunId"], limit, on_state=_say)
            if final["JobRunState"] != "SUCCEEDED":
                _say(f"[bold red]run {final['JobRunState']}[/]: ", final.get("ErrorMessage", ""))
                raise typer.Exit(1)


@app.command("submit-train-job")
def submit_train_job(
    config: str = typer.Option(..., "--config", "-c", help="nexus.yaml: uploaded and given to the job"),
    overrides: list[str] | None = typer.Option(
        None,
        "--set",
        help="dotted override KEY=VALUE (repeatable), applied to the job request and inside the job; "
        "e.g. train.max_steps=100 or aws.training.instance_type=ml.g5.12xlarge",
    ),
    name: str | None = typer.Option(None, "--name", help="job name (default: <name>-<UTC time>)"),
    wait: bool = typer.Option(False, "--wait", help="wait for the job to finish"),
    timeout_minutes: float | None = typer.Option(
        None,
        "--timeout-minutes",
        help="stop waiting after this long (default: the job's max_wait_hours (spot) or max_runtime_hours + 30)",
    ),
) -> None:
    """Start a SageMaker training job (spot by default, resuming from the run's checkpoints)."""
    from nexus_llm.deploy.train_job import parse_overrides, train_job_timeout_s, wait_train_job
    from nexus_llm.deploy.train_job import submit_train_job as submit

    with _user_errors():
        _, clients, names = _setup(config)
        req = submit(names, clients, config, parse_overrides(overrides or []), name)
        resources, stop = req["ResourceConfig"], req["StoppingCondition"]
        rows = [
            ("name", req["TrainingJobName"]),
            ("image", req["AlgorithmSpecification"]["TrainingImage"]),
            ("instances", f"{resources['InstanceCount']} x {resources['InstanceType']}"),
            ("spot", req["EnableManagedSpotTraining"]),
            ("max runtime s", stop["MaxRuntimeInSeconds"]),
            ("checkpoints", req["CheckpointConfig"]["S3Uri"]),
            ("output", req["OutputDataConfig"]["S3OutputPath"]),
        ]
        console.print(table("SageMaker training job", ["field", "value"], rows))
        if wait:
            limit = _job_timeout(timeout_minutes, train_job_timeout_s(req))
            final = wait_train_job(clients, req["TrainingJobName"], limit, on_state=_say)
            if final["TrainingJobStatus"] != "Completed":
                _say(f"[bold red]job {final['TrainingJobStatus']}[/]: ", final.get("FailureReason", ""))
                raise typer.Exit(1)


@app.command()
def status(config: str | None = CONFIG) -> None:
    """Stacks, the serving endpoint, recent training jobs and data-job runs."""
    from nexus_llm.deploy.status import collect_status

    with _user_errors():
        _, clients, names = _setup(config)
        info = collect_status(names, clients)
    stacks = [(s.name, s.status) for s in info["stacks"]]
    console.print(table("stacks", ["stack", "status"], stacks))
    if info["endpoint"]:
        _say("endpoint: ", info["endpoint"])
    if info["training_jobs"]:
        console.print(table("training jobs", ["name", "status", "created"], info["training_jobs"]))
    if info["data_runs"]:
        console.print(table("data-job runs", ["run id", "state", "started"], info["data_runs"]))


@app.command()
def cost(
    config: str | None = CONFIG,
    price: list[str] | None = typer.Option(None, "--price", help="TYPE=USD_PER_HOUR for an instance type"),
    as_json: bool = typer.Option(False, "--json", help="print the estimate as JSON on stdout"),
    offline: bool = typer.Option(
        False, "--offline", help="use only the built-in us-east-1 price table (no AWS Price List API call)"
    ),
) -> None:
    """Estimate the monthly and per-job cost from the config, showing every price assumed.

    With AWS credentials, the instance, Fargate and Glue prices of aws.region come from the AWS Price
    List API; otherwise from a built-in us-east-1 table. The output says which."""
    from nexus_llm.config import load_config
    from nexus_llm.deploy.cost import estimate, parse_prices, region_prices, table_book

    with _user_errors():
        cfg = load_config(config)
        overrides = parse_prices(price or [])
        book = table_book(cfg.aws.region, "--offline") if offline else region_prices(cfg)
        est = estimate(cfg, overrides, book)
    if as_json:
        print(json.dumps(est, indent=2, default=vars))
        return
    _print_estimate(est)


def _print_estimate(est: dict[str, Any]) -> None:
    rows = [(ln.group, ln.item, ln.assumption, ln.unit_price, ln.monthly_usd) for ln in est["lines"]]
    rows.append(("total", "", "", "", est["monthly_total_usd"]))
    peak = est["at_max_tasks"]
    rows.append(("at max_tasks", peak.item, peak.assumption, peak.unit_price, peak.monthly_usd))
    columns = ["group", "item", "assumption", "price", "USD/month"]
    console.print(table(f"estimated monthly cost in {est['region']}, USD", columns, rows))
    _say("prices: ", est["price_source"])
    console.print(
        "The 'at max_tasks' line is not in the total: it is the serving compute if autoscaling "
        "held max_tasks all month (a rolling deploy at full scale briefly needs twice that)."
    )
    if est["excluded"]:
        console.print("Not included: " + escape("; ".join(est["excluded"])) + ".")
    jobs = est["per_job"]
    job_rows = [
        ("training", jobs["training"]["hours"], jobs["training"]["usd"]),
        ("data (Glue)", jobs["data"]["hours"], jobs["data"]["usd"]),
    ]
    console.print(table("per job, USD", ["job", "hours", "USD"], job_rows))
    over = est["monthly_total_usd"] > est["budget_usd"]
    console.print(
        f"budget: {est['budget_usd']:,.2f} USD/month"
        + (" [bold red](estimate exceeds it)[/]" if over else "")
    )
    console.print("Prices change over time; check the AWS pricing pages before you commit to a budget.")
