"""CloudFormation templates, one per concern, built with troposphere from ``nexus.yaml``."""

from __future__ import annotations

from troposphere import Template

from nexus_llm.config import NexusConfig
from nexus_llm.deploy.names import STACK_ORDER, ResourceNames
from nexus_llm.deploy.stacks import budget, iam, monitoring, network, serving, storage

BUILDERS = {
    "storage": storage.build,
    "network": network.build,
    "iam": iam.build,
    "serving": serving.build,
    "monitoring": monitoring.build,
    "budget": budget.build,
}
"""One builder per stack, in :data:`STACK_ORDER` (a test checks that the two agree)."""


def build_templates(cfg: NexusConfig, names: ResourceNames) -> dict[str, Template]:
    """Every stack's template, in deploy order."""
    return {concern: BUILDERS[concern](cfg, names) for concern in STACK_ORDER}
