"""Create, update, delete and describe the stacks through CloudFormation, waiting with progress."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from nexus_llm.config import NexusConfig
from nexus_llm.deploy.clients import AwsClients, WaitTimeout, poll_until
from nexus_llm.deploy.names import STACK_ORDER, ResourceNames
from nexus_llm.deploy.stacks import build_templates

TEMPLATE_BODY_LIMIT = 51_200  # bytes CloudFormation accepts inline; ours stay far below it
IN_PROGRESS = "_IN_PROGRESS"
FAILED_STATES = {
    "CREATE_FAILED",
    "ROLLBACK_COMPLETE",
    "ROLLBACK_FAILED",
    "DELETE_FAILED",
    "UPDATE_ROLLBACK_COMPLETE",
    "UPDATE_ROLLBACK_FAILED",
    "UPDATE_FAILED",
    "IMPORT_ROLLBACK_COMPLETE",
}
RETAINED = "buckets data/models/logs, the KMS key and the ECR repositories (DeletionPolicy: Retain)"


class StackError(RuntimeError):
    """A stack operation failed; the message carries CloudFormation's reasons."""


@dataclass
class StackResult:
    concern: str
    name: str
    action: str  # created | updated | unchanged | deleted | absent
    status: str
    outputs: dict[str, str] = field(default_factory=dict)


Progress = Callable[[str, int, int], None]
"""Callback ``(concern, resources done, resources total)`` while a stack operation runs."""


def select(only: Iterable[str] | None) -> list[str]:
    chosen = list(only or STACK_ORDER)
    unknown = [c for c in chosen if c not in STACK_ORDER]
    if unknown:
        raise ValueError(f"unknown stack(s) {unknown}; choose from {', '.join(STACK_ORDER)}")
    return [c for c in STACK_ORDER if c in chosen]


def describe(clients: AwsClients, name: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    try:
        return clients.client("cloudformation").describe_stacks(StackName=name)["Stacks"][0]
    except ClientError as err:
        if "does not exist" in str(err):
            return None
        raise


def outputs_of(stack: dict[str, Any] | None) -> dict[str, str]:
    return {o["OutputKey"]: o["OutputValue"] for o in (stack or {}).get("Outputs", [])}


def deploy_stacks(
    cfg: NexusConfig,
    names: ResourceNames,
    clients: AwsClients,
    only: Iterable[str] | None = None,
    poll_s: float = 5.0,
    timeout_s: float = 3600,
    progress: Progress | None = None,
) -> list[StackResult]:
    """Create or update each stack in dependency order, waiting for each before the next."""
    templates = build_templates(cfg, names.templated())  # exactly what `nexus aws render` writes
    results = []
    for concern in select(only):
        body = templates[concern].to_json(indent=None)
        if len(body.encode()) > TEMPLATE_BODY_LIMIT:
            raise StackError(f"{concern} template is {len(body)} bytes, over CloudFormation's inline limit")
        total = len(templates[concern].resources)
        results.append(_deploy_one(clients, names, concern, body, total, poll_s, timeout_s, progress))
    return results


def _deploy_one(clients, names, concern, body, total, poll_s, timeout_s, progress) -> StackResult:
    from botocore.exceptions import ClientError

    cf = clients.client("cloudformation")
    name = names.stack(concern)
    args = {
        "StackName": name,
        "TemplateBody": body,
        "Capabilities": ["CAPABILITY_NAMED_IAM"],
        "Tags": [{"Key": "Project", "Value": names.project}, {"Key": "ManagedBy", "Value": "nexus-aws"}],
    }
    existing = describe(clients, name)
    if existing and existing["StackStatus"] == "ROLLBACK_COMPLETE":
        # a stack whose creation failed cannot be updated: delete it and create it again
        cf.delete_stack(StackName=name)
        _wait(clients, name, "delete", 0, poll_s, timeout_s, None, concern)
        existing = None
    if existing is None:
        cf.create_stack(**args, OnFailure="ROLLBACK")
        action = "created"
    elif _same_template(cf, name, body) and not existing["StackStatus"].endswith(IN_PROGRESS):
        return StackResult(concern, name, "unchanged", existing["StackStatus"], outputs_of(existing))
    else:
        try:
            cf.update_stack(**args)
            action = "updated"
        except ClientError as err:
            if "No updates are to be performed" not in str(err):
                raise
            stack = describe(clients, name)
            return StackResult(concern, name, "unchanged", stack["StackStatus"], outputs_of(stack))
    verb = "create" if action == "created" else "update"
    stack = _wait(clients, name, verb, total, poll_s, timeout_s, progress, concern)
    return StackResult(concern, name, action, stack["StackStatus"], outputs_of(stack))


def _same_template(cf: Any, name: str, body: str) -> bool:
    """Whether the deployed template equals ``body`` (compared as JSON, whatever its formatting)."""
    deployed = cf.get_template(StackName=name)["TemplateBody"]
    if isinstance(deployed, str):
        try:
            deployed = json.loads(deployed)
        except json.JSONDecodeError:
            return False
    return json.loads(json.dumps(deployed)) == json.loads(body)


def destroy_stacks(
    names: ResourceNames,
    clients: AwsClients,
    only: Iterable[str] | None = None,
    poll_s: float = 5.0,
    timeout_s: float = 3600,
    progress: Progress | None = None,
) -> list[StackResult]:
    """Delete stacks in reverse dependency order (importers before exporters)."""
    results = []
    for concern in reversed(select(only)):
        name = names.stack(concern)
        stack = describe(clients, name)
        if stack is None:
            results.append(StackResult(concern, name, "absent", "-"))
            continue
        total = len(_resources(clients, name))
        clients.client("cloudformation").delete_stack(StackName=name)
        _wait(clients, name, "delete", total, poll_s, timeout_s, progress, concern)
        results.append(StackResult(concern, name, "deleted", "DELETE_COMPLETE"))
    return results


def _wait(clients, name, verb, total, poll_s, timeout_s, progress, concern) -> dict[str, Any]:
    """Poll until the stack leaves ``*_IN_PROGRESS``; raise with the failure reasons if it failed."""
    gone = {"StackStatus": "DELETE_COMPLETE"}

    def state() -> dict[str, Any]:
        stack = describe(clients, name)
        if stack is None:
            if verb != "delete":
                raise StackError(f"stack {name} disappeared while waiting for {verb}")
            return gone
        return stack

    def show(stack: dict[str, Any]) -> None:
        if progress:
            done = total if stack is gone else _resources_done(clients, name, verb, total)
            progress(concern, done, total)

    try:
        stack = poll_until(
            state, lambda s: not s["StackStatus"].endswith(IN_PROGRESS), timeout_s, poll_s,
            f"stack {name} ({verb})", on_poll=show,
        )  # fmt: skip
    except WaitTimeout as err:
        raise StackError(str(err)) from None
    status = stack["StackStatus"]
    if status in FAILED_STATES or (verb == "delete" and status != "DELETE_COMPLETE"):
        raise StackError(f"stack {name}: {status}\n" + "\n".join(_failure_reasons(clients, name)))
    return stack


def _resources(clients: AwsClients, name: str) -> list[dict[str, Any]]:
    try:
        return clients.client("cloudformation").describe_stack_resources(StackName=name)["StackResources"]
    except Exception:  # the stack may vanish between calls while deleting
        return []


def _resources_done(clients: AwsClients, name: str, verb: str, total: int) -> int:
    """Resources created/updated so far; while deleting, how many of ``total`` are gone."""
    resources = _resources(clients, name)
    if verb == "delete":
        gone = ("DELETE_COMPLETE", "DELETE_SKIPPED")
        return max(total - sum(1 for r in resources if r.get("ResourceStatus") not in gone), 0)
    return sum(1 for r in resources if r.get("ResourceStatus", "").endswith("_COMPLETE"))


def _failure_reasons(clients: AwsClients, name: str, limit: int = 10) -> list[str]:
    try:
        events = clients.client("cloudformation").describe_stack_events(StackName=name)["StackEvents"]
    except Exception:
        return []
    failed = [e for e in events if e.get("ResourceStatus", "").endswith("FAILED")]
    return [
        f"  {e['LogicalResourceId']} ({e['ResourceType']}): {e.get('ResourceStatusReason', '')}"
        for e in failed[:limit]
    ]


def stack_statuses(names: ResourceNames, clients: AwsClients) -> list[StackResult]:
    out = []
    for concern in STACK_ORDER:
        stack = describe(clients, names.stack(concern))
        status = stack["StackStatus"] if stack else "NOT DEPLOYED"
        out.append(StackResult(concern, names.stack(concern), "", status, outputs_of(stack)))
    return out


def exported(clients: AwsClients) -> dict[str, str]:
    """All CloudFormation exports of the account and region (the role ARNs the jobs need)."""
    cf = clients.client("cloudformation")
    values: dict[str, str] = {}
    for page in cf.get_paginator("list_exports").paginate():
        values.update({e["Name"]: e["Value"] for e in page.get("Exports", [])})
    return values
