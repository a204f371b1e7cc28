"""``run_train``: token shards → trained, exported model; resumable, interruptible, distributed.

Built on accelerate rather than the transformers ``Trainer``: the Trainer resumes by iterating over
(or silently skipping without) the batches already seen, averages the loss per micro-batch, and has
no SIGTERM handling. Here the data position is two integers (see :mod:`.data`), the loss is
token-exact (:mod:`.steps`), and accelerate still does what it is good at: DDP/DeepSpeed/FSDP
wrapping, mixed precision and sharded state saving.
"""

from __future__ import annotations

import hashlib
import math
import os
import signal
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from nexus_llm import storage
from nexus_llm.configbase import ConfigError
from nexus_llm.console import console
from nexus_llm.models.loading import resolve_model
from nexus_llm.tokenizer import shards
from nexus_llm.tracking import TrackingConfig
from nexus_llm.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from nexus_llm.train.config import TrainConfig, TrainPaths
from nexus_llm.train.data import ChatRows, DataPosition, EpochOrder, PackedTokens, TrainingData, slots
from nexus_llm.train.distributed import build_accelerator, check_runtime, reset_accelerator_state
from nexus_llm.train.export import check_output_dir, export_model
from nexus_llm.train.hardware import resolve_precision
from nexus_llm.train.mfu import device_peak_flops, train_flops_per_token
from nexus_llm.train.model import (
    base_config,
    build_model,
    make_optimizer,
    parameter_count,
    trainable_fraction,
)
from nexus_llm.train.runlog import RunLog
from nexus_llm.train.steps import evaluate, train_step

FAULT_KILL_ENV = "NEXUS_FAULT_KILL_AT_STEP"
"""Fault injection for tests and drills: SIGKILL this process right after the given step."""

INTERRUPTED_EXIT_CODE = 143


@dataclass
class TrainState:
    step: int = 0
    position: DataPosition = field(default_factory=DataPosition)
    tokens_seen: int = 0
    identity: dict[str, Any] = field(default_factory=dict)


class StopSignal:
    """SIGTERM/SIGINT set a flag; training stops at the next step boundary, after a checkpoint."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}

    def _handle(self, signum, _frame) -> None:
        if self.signum is not None:  # a second signal: stop now
            self.restore()
            signal.raise_signal(signum)
        self.signum = signum

    def agreed(self, accelerator) -> bool:
        """True on every rank when any rank was signalled (ranks must stop at the same step)."""
        if accelerator.num_processes == 1:
            return self.signum is not None
        import torch

        flag = torch.tensor([1.0 if self.signum is not None else 0.0], device=accelerator.device)
        return bool(accelerator.reduce(flag, "sum").item() > 0)

    def restore(self) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)


@dataclass
class Window:
    """Loss and throughput since the last log line (timing excludes evaluation and checkpoints)."""

    start: float = field(default_factory=time.perf_counter)
    loss_sum: float = 0.0
    tokens: int = 0  # real (non-padding) tokens processed, for throughput
    targets: int = 0  # tokens that carried loss (every token of text; assistant tokens of chat)

    def record(
        self,
        accelerator,
        state: TrainState,
        lr: float,
        flops_per_token: float,
        peak: float | None,
        num_sequences: int,
    ) -> dict[str, Any]:
        import torch

        elapsed = time.perf_counter() - self.start
        loss_sum = torch.tensor([self.loss_sum], dtype=torch.float64, device=accelerator.device)
        if accelerator.num_processes > 1:
            loss_sum = accelerator.reduce(loss_sum, "sum")
        tps = self.tokens / max(elapsed, 1e-9)
        mfu = tps * flops_per_token / (peak * accelerator.num_processes) if peak else None
        return {
            "step": state.step,
            "epoch": round(state.position.epoch + state.position.consumed / num_sequences, 4),
            "loss": float(loss_sum.item()) / max(self.targets, 1),
            "lr": lr,
            "tokens_per_second": round(tps, 1),
            "mfu": round(mfu, 5) if mfu is not None else None,
            "tokens_seen": state.tokens_seen,
        }


def _dataset(
    tokens_dir: str, split: str, cfg: TrainConfig, meta: dict[str, Any], chat_repeat: int | None = None
):
    """The split's text windows and, when the tokens hold chat data, its packed chat rows."""
    text = PackedTokens(tokens_dir, split, cfg.seq_len, meta)
    chat = ChatRows(tokens_dir, split, cfg.seq_len, meta) if meta.get("chat") else None
    return TrainingData(text, chat, cfg.chat_repeat if chat_repeat is None else chat_repeat)


def _describe(data: TrainingData) -> str:
    parts = [f"{data.n_text:,} text sequences"] if data.n_text else []
    if data.n_chat:
        truncated = data.chat.truncated if data.chat else 0
        parts.append(f"{data.n_chat:,} chat rows × {data.chat_repeat}"
                     + (f" ({truncated} conversations cut to fit)" if truncated else ""))  # fmt: skip
    return " + ".join(parts)


def _staging_root(paths: TrainPaths) -> str:
    """Node-local scratch space for remote inputs and outputs, stable across restarts of one job."""
    key = hashlib.sha256(f"{paths.checkpoint_dir}|{paths.run_dir}".encode()).hexdigest()[:12]
    root = os.path.join(os.environ.get("NEXUS_STAGING_DIR", tempfile.gettempdir()), f"nexus-train-{key}")
    os.makedirs(root, exist_ok=True)
    return root


def _local_copy(accelerator, uri: str, local: str) -> str:
    """``uri`` itself when local; else a node-local copy made by the node's first process."""
    if not storage.is_remote(uri):
        return uri
    if accelerator.is_local_main_process:
        storage.download_dir(uri, local)
    accelerator.wait_for_everyone()
    return local


def _identity(cfg: TrainConfig, meta: dict[str, Any], seed: int, num_sequences: int) -> dict[str, Any]:
    """What a checkpoint must agree with to be resumed: the data and the model shape.

    The tokens are identified by their content (:func:`shards.content_digest`), not by the bytes of
    ``meta.json``, which hold run timings: tokenizing the same data again (a SageMaker job does on every
    restart, and each host of a multi-host job does on its own) must not make a checkpoint unresumable.
    """
    return {
        "tokens_content_sha256": shards.content_digest(meta),
        "seq_len": cfg.seq_len,
        "seed": seed,
        "num_sequences": num_sequences,
        "model": {
            "preset": cfg.preset,
            "overrides": cfg.model_overrides,
            "init_from": cfg.init_from,
            "lora": cfg.lora.model_dump() if cfg.lora else None,
        },
    }


def _resume(
    accelerator, checkpoint_dir: str, staging: str, identity: dict[str, Any]
) -> tuple[TrainState, str | None]:
    found = latest_checkpoint(checkpoint_dir)
    if found is None:
        return TrainState(identity=identity), None
    _step, uri = found
    saved = load_checkpoint(accelerator, uri, staging)
    if saved["identity"] != identity:
        changed = sorted(k for k in identity if saved["identity"].get(k) != identity[k])
        raise ConfigError(
            f"{uri} was made with different {', '.join(changed)}: it cannot be resumed with this config. "
            "Use a new train.checkpoint_dir (or delete the old checkpoints) to start over."
        )
    state = TrainState(saved["step"], DataPosition(**saved["position"]), saved["tokens_seen"], identity)
    return state, uri


def _fault_injection(step: int) -> None:
    if os.environ.get(FAULT_KILL_ENV) == str(step):
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class Session:
    """Everything one training run holds (built by :func:`_setup`)."""

    cfg: TrainConfig
    paths: TrainPaths
    accelerator: Any
    model: Any
    optimizer: Any
    scheduler: Any
    train: TrainingData
    val: TrainingData
    order: EpochOrder
    total_steps: int
    global_batch: int
    precision: str
    staging: str
    run_local: str
    meta: dict[str, Any]


def _setup(cfg: TrainConfig, paths: TrainPaths, seed: int) -> Session:
    import torch
    from transformers import get_scheduler

    cuda = torch.cuda.is_available()
    precision = resolve_precision(cfg.precision, cuda)
    check_runtime(cfg, cuda)
    check_output_dir(paths.output_dir)  # before hours of training, not at the export
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    accelerator = build_accelerator(cfg, precision)
    staging = _staging_root(paths)
    tokens_dir = _local_copy(accelerator, paths.tokens, os.path.join(staging, "tokens"))
    meta = shards.read_meta(tokens_dir)
    train = _dataset(tokens_dir, "train", cfg, meta)
    if len(train) == 0:
        raise ConfigError(
            f"{paths.tokens} has {train.text.total_tokens if train.text else 0} training tokens and no chat "
            f"data, too few for one sequence of train.seq_len={cfg.seq_len}; lower seq_len or add data"
        )
    model = build_model(cfg, meta, seed)
    optimizer = make_optimizer(model, cfg)
    order = EpochOrder(len(train), seed)
    global_batch = cfg.micro_batch_size * cfg.grad_accum_steps * accelerator.num_processes
    total_steps = cfg.max_steps or math.ceil(cfg.epochs * order.steps_per_epoch(global_batch))
    scheduler = get_scheduler(
        "cosine_with_min_lr",
        optimizer,
        num_warmup_steps=min(cfg.warmup_steps, total_steps),
        num_training_steps=total_steps,
        scheduler_specific_kwargs={"min_lr_rate": cfg.min_lr_ratio},
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(
        scheduler
    )  # stepped by us: accelerate's wrapper would step it per process
    if cfg.compile:
        model = torch.compile(model)
    run_local = _local_copy(accelerator, paths.run_dir, os.path.join(staging, "runs"))
    val = _dataset(tokens_dir, "val", cfg, meta, chat_repeat=1)
    return Session(
        cfg,
        paths,
        accelerator,
        model,
        optimizer,
        scheduler,
        train,
        val,
        order,
        total_steps,
        global_batch,
        precision,
        staging,
        run_local,
        meta,
    )


def _save(s: Session, state: TrainState) -> str:
    payload = {**asdict(state), "time": time.time()}
    uri = save_checkpoint(
        s.accelerator, s.paths.checkpoint_dir, state.step, payload, s.staging, s.cfg.save_total_limit
    )
    if s.accelerator.is_main_process and s.run_local != s.paths.run_dir:
        storage.upload_dir(s.run_local, s.paths.run_dir)
    return uri


def _say(accelerator, message: str) -> None:
    if accelerator.is_main_process:
        console.print(message)


def _advance(s: Session, state: TrainState, window: Window, log: RunLog) -> float | None:
    """One optimizer step on the next sequences; updates the state and window, returns the grad norm."""
    cfg, acc = s.cfg, s.accelerator
    chosen, position = s.order.next_step(state.position, s.global_batch)
    deepspeed = cfg.distributed.strategy == "deepspeed"
    loss_sum, grad_norm = train_step(acc, s.model, s.optimizer, s.scheduler, s.train, chosen,
                                     cfg.grad_accum_steps, cfg.grad_clip, gas_scaled=deepspeed)  # fmt: skip
    state.step, state.position = state.step + 1, position
    real = s.train.real_tokens(chosen)
    state.tokens_seen += real
    window.loss_sum += loss_sum
    window.tokens += real
    window.targets += s.train.target_count(chosen)
    mine = slots(chosen, cfg.grad_accum_steps, acc.num_processes, acc.process_index)
    log.samples(state.step, position.epoch, [int(i) for part in mine for i in part])
    return grad_norm


def run_train(
    cfg: TrainConfig,
    paths: TrainPaths,
    seed: int,
    name: str = "nexus",
    tracking: TrackingConfig | None = None,
) -> dict[str, Any]:
    """Train (resuming from the latest complete checkpoint) and export; see the module docstring.

    Returns a summary; ``interrupted`` is True when a SIGTERM/SIGINT stopped the run after saving.
    The accelerate state of the run is reset when it ends, so another run in this process may use other
    settings (precision, strategy).
    """
    try:
        return _run(cfg, paths, seed, name, tracking)
    finally:
        reset_accelerator_state()


def _run(
    cfg: TrainConfig, paths: TrainPaths, seed: int, name: str, tracking: TrackingConfig | None
) -> dict[str, Any]:
    started = time.perf_counter()
    s = _setup(cfg, paths, seed)
    acc, model = s.accelerator, s.model
    state, resumed_from = _resume(
        acc, paths.checkpoint_dir, s.staging, _identity(cfg, s.meta, seed, len(s.train))
    )
    log = RunLog(
        s.run_local, state.step, acc.process_index, acc.is_main_process, cfg.tensorboard, cfg.record_samples
    )
    unwrapped = acc.unwrap_model(model)
    flops_per_token = train_flops_per_token(
        base_config(unwrapped), cfg.seq_len, trainable_fraction(unwrapped)
    )
    peak, peak_source = device_peak_flops(acc.device, s.precision)
    log.start_tracking(tracking, name, {**cfg.model_dump(), "precision": s.precision})
    _say(
        acc,
        f"training {parameter_count(unwrapped):,} parameters on {acc.num_processes} "
        f"× {acc.device} ({s.precision}); {_describe(s.train)} of {cfg.seq_len} tokens; "
        f"{s.total_steps} steps of {s.global_batch} sequences"
        + (f"; resumed from {resumed_from}" if resumed_from else ""),
    )
    stop = StopSignal()
    window, last_record, stopping = Window(), {}, False
    try:
        while state.step < s.total_steps and not stopping:
            grad_norm = _advance(s, state, window, log)
            last = state.step == s.total_steps
            evaluate_now = state.step % cfg.eval_every == 0 or last
            if state.step % cfg.log_every == 0 or evaluate_now:
                record = window.record(
                    acc, state, s.scheduler.get_last_lr()[0], flops_per_token, peak, len(s.train)
                )
                record["grad_norm"] = grad_norm
                if evaluate_now:
                    record["val_loss"] = evaluate(acc, model, s.val, cfg.micro_batch_size, cfg.eval_batches)
                log.log(record)
                last_record, window = record, Window()
                _say(acc, _format(record, s.total_steps))
            stopping = stop.agreed(acc) and not last  # a signal during the last step: finish and export
            if state.step % cfg.save_every == 0 or stopping or last:
                paused = time.perf_counter()
                uri = _save(s, state)
                window.start += time.perf_counter() - paused  # throughput counts training time only
                if stopping:
                    _say(acc, f"[yellow]stopped by signal at step {state.step}; checkpoint {uri} is complete. "
                         "Run the same command again to resume.[/]")  # fmt: skip
            _fault_injection(state.step)
    finally:
        stop.restore()
        log.close()
    summary = {
        "stage": "train",
        "name": name,
        "interrupted": stopping,
        "step": state.step,
        "total_steps": s.total_steps,
        "resumed_from": resumed_from,
        "tokens_seen": state.tokens_seen,
        "precision": s.precision,
        "world_size": acc.num_processes,
        "flops_per_token": flops_per_token,
        "peak_flops": peak,
        "peak_source": peak_source,
        "last": last_record,
        "seconds": round(time.perf_counter() - started, 2),
        "parameters": parameter_count(unwrapped),
    }
    if not stopping:
        summary = _finish(s, summary)
    elif acc.is_main_process and s.run_local != paths.run_dir:
        storage.upload_dir(s.run_local, paths.run_dir)
    return summary


def _finish(s: Session, summary: dict[str, Any]) -> dict[str, Any]:
    """Export the model with a manifest that records inputs and settings; publish the run directory."""
    manifest = {
        **summary,
        "tokens": {
            "uri": s.paths.tokens,
            "content_sha256": shards.content_digest(s.meta),
            "tokenizer_sha256": (s.meta.get("tokenizer") or {}).get("sha256"),
        },
        "settings": s.cfg.model_dump(),
        "run_dir": s.paths.run_dir,
    }
    manifest = export_model(
        s.accelerator, s.model, s.paths.tokenizer, s.paths.output_dir, manifest,
        base_dir=resolve_model(s.cfg.init_from) if s.cfg.init_from else None,
    )  # fmt: skip
    if s.accelerator.is_main_process and s.run_local != s.paths.run_dir:
        storage.upload_dir(s.run_local, s.paths.run_dir)
    return manifest


def _format(record: dict[str, Any], total: int) -> str:
    parts = [f"step {record['step']:>6}/{total}", f"loss {record['loss']:.4f}"]
    if record.get("val_loss") is not None:
        parts.append(f"val {record['val_loss']:.4f}")
    parts += [f"lr {record['lr']:.2e}", f"{record['tokens_per_second']:,.0f} tok/s"]
    if record.get("mfu") is not None:
        parts.append(f"mfu {100 * record['mfu']:.1f}%")
    return "  ".join(parts)
