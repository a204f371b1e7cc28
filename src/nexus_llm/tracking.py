"""Experiment tracking (MLflow): one ``tracking:`` section and one place that talks to MLflow.

Two things are tracked, both in the same store and experiment:

- **training runs** (``tracking.log_training``): the parameters and every logged step's metrics of
  ``nexus train``, live, so long runs can be followed in MLflow's UI;
- **completed flows** (``tracking.record_runs``): each ``nexus run`` that finishes, with its config,
  each stage's key figures, the evaluation results, and where the model, report and workspace are (the
  model stays in the workspace: its location is a tag, nothing large is copied). ``nexus runs list``
  reads them back.

The store is ``tracking.uri``, else ``MLFLOW_TRACKING_URI``, else a local SQLite file
(``~/.nexus/mlflow.db``, which needs the full ``mlflow`` package: the ``registry`` extra). The training
image carries ``mlflow-skinny``, enough to log to a tracking server (``http://...``) or a ``file:`` store.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from pydantic import Field

from nexus_llm.configbase import StrictModel

DEFAULT_DB = Path.home() / ".nexus" / "mlflow.db"


class TrackingConfig(StrictModel):
    """The ``tracking:`` section of ``nexus.yaml``."""

    uri: str | None = Field(
        None, description="MLflow tracking URI; null = MLFLOW_TRACKING_URI, else sqlite:///~/.nexus/mlflow.db"
    )
    experiment: str = Field("nexus", description="MLflow experiment of training runs and completed flows")
    record_runs: bool = Field(True, description="record every completed `nexus run` (see `nexus runs list`)")
    log_training: bool = Field(False, description="log `nexus train` parameters and step metrics live")


def tracking_uri(cfg: TrackingConfig) -> str:
    if cfg.uri:
        return cfg.uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    DEFAULT_DB.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{DEFAULT_DB}"


def _quiet() -> None:
    for name in ("alembic", "mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _client(cfg: TrackingConfig):
    _quiet()
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri(cfg))


def _experiment_id(client, name: str) -> str:
    exp = client.get_experiment_by_name(name)
    return exp.experiment_id if exp else client.create_experiment(name)


class TrainingTracker:
    """Live MLflow logging of one training run (``log`` per record); a no-op when not configured."""

    def __init__(self, cfg: TrackingConfig | None, run_name: str, params: dict[str, Any]):
        self._client = self._run_id = None
        if cfg is None or not cfg.log_training:
            return
        self._client = _client(cfg)
        run = self._client.create_run(_experiment_id(self._client, cfg.experiment), run_name=run_name,
                                      tags={"nexus.kind": "training"})  # fmt: skip
        self._run_id = run.info.run_id
        for key, value in params.items():
            self._client.log_param(self._run_id, key[:250], str(value)[:250])

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if self._client is not None:
            for key, value in metrics.items():
                self._client.log_metric(self._run_id, key, float(value), step=step)

    def close(self) -> None:
        if self._client is not None:
            self._client.set_terminated(self._run_id)


def _flatten(prefix: str, obj: Any, out: dict[str, str]) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = json.dumps(obj) if isinstance(obj, list | tuple) else str(obj)


def record_run(
    cfg: TrackingConfig, name: str, config: dict[str, Any], workspace: str, eval_key: str,
    figures: dict[str, dict[str, Any]], results: dict[str, Any] | None,
) -> str | None:  # fmt: skip
    """Record a completed flow; returns its MLflow run id (None when this exact run is already recorded)."""
    client = _client(cfg)
    exp = _experiment_id(client, cfg.experiment)
    existing = client.search_runs([exp], f"tags.`nexus.eval_key` = '{eval_key}'", max_results=1)
    if existing:
        return None
    run = client.create_run(exp, run_name=name, tags={
        "nexus.kind": "flow",
        "nexus.eval_key": eval_key,
        "nexus.workspace": workspace,
        "nexus.model": f"{workspace.rstrip('/')}/model",
        "nexus.report": f"{workspace.rstrip('/')}/eval/report.html",
    })  # fmt: skip
    params: dict[str, str] = {}
    stages = ("data", "tokenizer", "tokenize", "train", "eval")
    _flatten("", {k: v for k, v in config.items() if k in stages}, params)
    for key, value in list(params.items())[:400]:  # MLflow caps params per run; the config is an artifact
        client.log_param(run.info.run_id, key[:250], value[:6000])
    for stage, values in figures.items():
        for key, value in values.items():
            if isinstance(value, int | float):
                metric = f"{stage}.{key}".replace(" ", "_").replace("/", "_per_")
                client.log_metric(run.info.run_id, metric, float(value))
    client.log_dict(run.info.run_id, config, "nexus.yaml.json")
    if results:
        client.log_dict(run.info.run_id, results, "eval_results.json")
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def list_runs(cfg: TrackingConfig, limit: int = 50) -> list[dict[str, Any]]:
    """Recorded flows, newest first."""
    client = _client(cfg)
    exp = client.get_experiment_by_name(cfg.experiment)
    if exp is None:
        return []
    runs = client.search_runs(
        [exp.experiment_id], "tags.`nexus.kind` = 'flow'", order_by=["attributes.start_time DESC"],
        max_results=limit,
    )  # fmt: skip
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
