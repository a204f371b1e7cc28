"""``nexus aws render``: write every stack's template, plus ``render.json`` saying what was rendered.

Rendering needs no AWS credentials: the templates leave the account id to CloudFormation's
``${AWS::AccountId}`` pseudo parameter (see :mod:`nexus_llm.deploy.names`), so they are the same for
every account, and ``deploy`` sends exactly these templates.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from nexus_llm import storage
from nexus_llm.config import NexusConfig
from nexus_llm.deploy.names import STACK_ORDER, ResourceNames
from nexus_llm.deploy.stacks import build_templates

SUMMARY = "render.json"


def render_templates(cfg: NexusConfig, names: ResourceNames, out_dir: str) -> dict[str, Any]:
    """Write ``<concern>.json`` for each stack and ``render.json`` last (the completion marker)."""
    names = names.templated()
    storage.makedirs(out_dir)
    files = {}
    for concern, template in build_templates(cfg, names).items():
        body = template.to_json(indent=2) + "\n"
        path = storage.join(out_dir, f"{concern}.json")
        storage.write_text_atomic(path, body)
        files[concern] = {
            "file": f"{concern}.json",
            "stack": names.stack(concern),
            "resources": len(template.resources),
            "sha256": hashlib.sha256(body.encode()).hexdigest(),
        }
    summary = {
        "project": names.project,
        "region": names.region,
        "run_name": names.run_name,
        "bucket_suffix": names.suffix,
        # with ${AWS::AccountId} where CloudFormation puts the account id, unless a suffix is pinned
        "buckets": {k: names.bucket(k) for k in ("data", "models", "logs")},
        "deploy_order": list(STACK_ORDER),
        "stacks": files,
        "serving_capacity": cfg.aws.serving.capacity,
    }
    storage.write_text_atomic(storage.join(out_dir, SUMMARY), json.dumps(summary, indent=2) + "\n")
    return summary
