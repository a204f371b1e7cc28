"""The model registry: every completed ``nexus run`` recorded in MLflow, so runs can be compared.

The tracking store is ``registry.tracking_uri`` in nexus.yaml, else ``MLFLOW_TRACKING_URI``, else a
local SQLite file (``~/.nexus/mlflow.db``). A run records the config, each stage's key figures, the
evaluation results, and where the model, the report and the workspace are; the model itself stays in
the workspace (its location is a tag), so nothing large is copied.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from nexus_llm.configbase import StrictModel

DEFAULT_DB = Path.home() / ".nexus" / "mlflow.db"


class RegistryConfig(StrictModel):
    enabled: bool = True
    tracking_uri: str | None = None
    experiment: str = "nexus-runs"


def tracking_uri(cfg: RegistryConfig) -> str:
    if cfg.tracking_uri:
        return cfg.tracking_uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    DEFAULT_DB.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{DEFAULT_DB}"


def _client(cfg: RegistryConfig):
    import logging

    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri(cfg))


def _experiment_id(client, name: str) -> str:
    exp = client.get_experiment_by_name(name)
    return exp.experiment_id if exp else client.create_experiment(name)


def _flatten(prefix: str, obj: Any, out: dict[str, str]) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = json.dumps(obj) if isinstance(obj, list | tuple) else str(obj)


def record_run(
    cfg: RegistryConfig, name: str, config: dict[str, Any], workspace: str, eval_key: str,
    figures: dict[str, dict[str, Any]], results: dict[str, Any] | None,
) -> str | None:  # fmt: skip
    """Log a completed run; returns its MLflow run id (None when this exact run is already recorded)."""
    client = _client(cfg)
    exp = _experiment_id(client, cfg.experiment)
    existing = client.search_runs([exp], f"tags.`nexus.eval_key` = '{eval_key}'", max_results=1)
    if existing:
        return None
    run = client.create_run(exp, run_name=name, tags={
        "nexus.eval_key": eval_key,
        "nexus.workspace": workspace,
        "nexus.model": f"{workspace.rstrip('/')}/model",
        "nexus.report": f"{workspace.rstrip('/')}/eval/report.html",
    })  # fmt: skip
    params: dict[str, str] = {}
    _flatten(
        "",
        {k: v for k, v in config.items() if k in ("data", "tokenizer", "tokenize", "train", "eval")},
        params,
    )
    for key, value in list(params.items())[
        :400
    ]:  # MLflow caps params per run; the full config is an artifact
        client.log_param(run.info.run_id, key[:250], value[:6000])
    for stage, values in figures.items():
        for key, value in values.items():
            if isinstance(value, int | float):
                client.log_metric(
                    run.info.run_id, f"{stage}.{key}".replace(" ", "_").replace("/", "_per_"), float(value)
                )
    client.log_dict(run.info.run_id, config, "nexus.yaml.json")
    if results:
        client.log_dict(run.info.run_id, results, "eval_results.json")
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def list_runs(cfg: RegistryConfig, limit: int = 50) -> list[dict[str, Any]]:
    client = _client(cfg)
    exp = client.get_experiment_by_name(cfg.experiment)
    if exp is None:
        return []
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=limit)
    return [
        {
            "run_id": r.info.run_id,
            "name": r.info.run_name,
            "started": r.info.start_time,
            "metrics": dict(r.data.metrics),
            "model": r.data.tags.get("nexus.model"),
            "workspace": r.data.tags.get("nexus.workspace"),
        }
        for r in runs
    ]
