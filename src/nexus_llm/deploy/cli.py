"""``nexus aws ...``: render, deploy, destroy, submit jobs, status, cost."""

from __future__ import annotations

import typer

app = typer.Typer(help="Deploy to AWS: CloudFormation stacks, Glue/EMR data jobs, SageMaker training.")


@app.command()
def render() -> None:
    """Write the CloudFormation templates (not built yet)."""
    raise NotImplementedError("nexus aws render is not built yet")
