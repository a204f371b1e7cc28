"""What a run records: ``metrics.jsonl``, TensorBoard events, MLflow (``tracking.log_training``), ``loss.png``.

On resume from step S, records after S are dropped from ``metrics.jsonl`` (and from the sample
records) and TensorBoard purges its events after S: they belong to a timeline that the restart
discarded, and keeping them would show two different losses for the same step.
"""

from __future__ import annotations

import json
import os
from typing import Any

from nexus_llm.console import console
from nexus_llm.tracking import TrackingConfig, TrainingTracker

METRICS = "metrics.jsonl"
LOSS_PNG = "loss.png"


def truncate_jsonl(path: str, last_step: int) -> None:
    """Keep the records with ``step <= last_step`` (all gone when ``last_step`` is 0)."""
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as fh:
        kept = [line for line in fh if line.strip() and json.loads(line)["step"] <= last_step]
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.writelines(kept)
    os.replace(tmp, path)


def read_metrics(run_dir: str) -> list[dict[str, Any]]:
    path = os.path.join(run_dir, METRICS)
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


class RunLog:
    """Metrics sinks of the main process, plus one sample record per process when asked for."""

    def __init__(
        self, run_dir: str, resume_step: int, rank: int, main: bool, tensorboard: bool, record_samples: bool
    ):
        self.run_dir, self.main = run_dir, main
        os.makedirs(run_dir, exist_ok=True)
        self.samples_path = os.path.join(run_dir, f"samples-rank{rank}.jsonl") if record_samples else None
        if self.samples_path:
            truncate_jsonl(self.samples_path, resume_step)
        self.tb = None
        self.tracker: TrainingTracker | None = None
        if not main:
            return
        truncate_jsonl(os.path.join(run_dir, METRICS), resume_step)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(os.path.join(run_dir, "tensorboard"), purge_step=resume_step + 1)

    def start_tracking(self, tracking: TrackingConfig | None, run_name: str, params: dict[str, Any]) -> None:
        if self.main:
            self.tracker = TrainingTracker(tracking, run_name, params)

    def log(self, record: dict[str, Any]) -> None:
        if not self.main:
            return
        with open(os.path.join(self.run_dir, METRICS), "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        numbers = {
            k: v for k, v in record.items() if isinstance(v, int | float) and k != "step" and v is not None
        }
        if self.tb is not None:
            for key, value in numbers.items():
                self.tb.add_scalar(
                    f"train/{key}" if not key.startswith("val") else f"val/{key}", value, record["step"]
                )
        if self.tracker is not None:
            self.tracker.log(record["step"], numbers)

    def samples(self, step: int, epoch: int, indices: list[int]) -> None:
        if self.samples_path:
            with open(self.samples_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"step": step, "epoch": epoch, "indices": indices}) + "\n")

    def flush(self) -> None:
        if self.tb is not None:
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.tracker is not None:
            self.tracker.close()
        if self.main:
            plot_loss(self.run_dir)


def plot_loss(run_dir: str) -> str | None:
    """Training and validation loss against step, as ``loss.png``."""
    records = read_metrics(run_dir)
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    train = [(r["step"], r["loss"]) for r in records if r.get("loss") is not None]
    val = [(r["step"], r["val_loss"]) for r in records if r.get("val_loss") is not None]
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss")
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = os.path.join(run_dir, LOSS_PNG)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    console.print(f"loss curve: {path}")
    return path
