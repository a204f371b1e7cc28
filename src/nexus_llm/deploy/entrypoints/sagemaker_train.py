"""SageMaker training-container entrypoint: ``python -m nexus_llm.deploy.entrypoints.sagemaker_train``.

The contract (what ``nexus aws submit-train-job`` relies on; see docs/train.md):

- ``SM_CHANNEL_TRAINING``: a token directory (has ``meta.json``) or curated data (``manifest.json`` and
  ``part-*.parquet``, tokenized here first, with the ``tokenizer`` channel's tokenizer or a new one).
- ``SM_CHANNEL_TOKENIZER`` (optional): a tokenizer directory for curated input.
- ``$SM_INPUT_CONFIG_DIR/hyperparameters.json`` (default ``/opt/ml/input/config``; the file path itself
  can be given by ``NEXUS_SM_HYPERPARAMETERS``): all values are strings. ``config`` names a nexus.yaml
  (absolute, or relative to the ``config`` channel, the ``training`` channel or the working directory);
  every other key is a dotted override such as ``"train.max_steps": "100"``. ``sagemaker_*`` keys are
  SageMaker's own and ignored.
- ``SM_MODEL_DIR``: the exported model (SageMaker uploads it as model.tar.gz).
- Checkpoints: ``NEXUS_SM_CHECKPOINT_DIR`` or ``/opt/ml/checkpoints`` (SageMaker syncs it with
  ``CheckpointConfig.S3Uri``; a restarted or spot-interrupted job resumes from it). ``train.checkpoint_dir``
  in the hyperparameters (e.g. an ``s3://`` URI) wins over both.
- Metrics and TensorBoard: ``$SM_OUTPUT_DATA_DIR/runs``. On failure the reason goes to
  ``$SM_OUTPUT_DIR/failure``, which SageMaker shows as the job's FailureReason.
- With ``SM_NUM_GPUS`` > 1 (or several ``SM_HOSTS``) the entrypoint replaces itself with torchrun
  (``exec``), so that torchrun is PID 1 and gets SageMaker's SIGTERM (see :func:`relaunch`).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import yaml

from nexus_llm import storage
from nexus_llm.config import NexusConfig, load_config
from nexus_llm.configbase import ConfigError
from nexus_llm.console import console

TOKENS_ENV = "NEXUS_SM_TOKENS"
"""Set by the launching process so that torchrun workers train on the tokens it prepared."""


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def read_hyperparameters() -> dict[str, str]:
    default = os.path.join(_env("SM_INPUT_CONFIG_DIR", "/opt/ml/input/config"), "hyperparameters.json")
    path = Path(_env("NEXUS_SM_HYPERPARAMETERS", default))
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON: {err}") from None


def parse_value(text: Any) -> Any:
    """A hyperparameter string as YAML would read it; the SageMaker SDK's JSON-quoted strings too."""
    if not isinstance(text, str):
        return text
    try:
        value = json.loads(text)
        if isinstance(value, str):
            text = value
        else:
            return value
    except json.JSONDecodeError:
        pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _find_config(name: str) -> Path:
    candidates = [Path(name)] if os.path.isabs(name) else [
        Path(os.environ[var]) / name for var in ("SM_CHANNEL_CONFIG", "SM_CHANNEL_TRAINING") if os.environ.get(var)
    ] + [Path.cwd() / name]  # fmt: skip
    for path in candidates:
        if path.is_file():
            return path
    raise ConfigError(f"hyperparameter config={name!r}: not found in {', '.join(str(c) for c in candidates)}")


def build_config(hyperparameters: dict[str, str]) -> NexusConfig:
    """nexus.yaml (when ``config`` is given) with the dotted hyperparameters applied, validated
    (``config.load_config``, the resolver every command uses)."""
    path = None
    if "config" in hyperparameters:
        path = _find_config(str(parse_value(hyperparameters["config"])))
    values = {
        key: parse_value(value)
        for key, value in sorted(hyperparameters.items())
        if key != "config" and not key.startswith("sagemaker_")
    }
    return load_config(path, values=values, values_origin="hyperparameters.json")


def prepare_tokens(cfg: NexusConfig, channel: str, work_dir: str) -> tuple[str, str]:
    """(token directory, tokenizer directory) for the training channel, tokenizing curated data here."""
    from nexus_llm.tokenizer.shards import META

    if storage.exists(storage.join(channel, META)):
        return channel, cfg.train.tokenizer or storage.join(channel, "tokenizer")
    if not storage.exists(storage.join(channel, storage.MANIFEST)):
        raise ConfigError(
            f"SM_CHANNEL_TRAINING={channel} holds neither token shards (meta.json) nor curated data "
            "(manifest.json + part-*.parquet)"
        )
    from nexus_llm.tokenizer.bpe import run_tokenizer_train
    from nexus_llm.tokenizer.encode import run_tokenize

    tokenizer = os.environ.get("SM_CHANNEL_TOKENIZER")
    if not tokenizer:
        tokenizer = os.path.join(work_dir, "tokenizer")
        console.print(f"training a tokenizer on {channel}")
        run_tokenizer_train(cfg.tokenizer, channel, tokenizer)
    tokens = os.path.join(work_dir, "tokens")
    console.print(f"tokenizing {channel}")
    run_tokenize(cfg.tokenize, channel, tokenizer, tokens)
    return tokens, tokenizer


def torchrun_command(num_gpus: int, hosts: list[str], current: str, port: int = 29500) -> list[str]:
    """The command that re-launches this entrypoint with one process per GPU on every host."""
    return [
        sys.executable, "-m", "torch.distributed.run",
        f"--nproc-per-node={num_gpus}", f"--nnodes={len(hosts)}", f"--node-rank={hosts.index(current)}",
        f"--master-addr={hosts[0]}", f"--master-port={port}",
        "-m", "nexus_llm.deploy.entrypoints.sagemaker_train",
    ]  # fmt: skip


def relaunch(command: list[str], env: dict[str, str]) -> NoReturn:
    """Replace this process with ``command`` (torchrun), keeping its PID.

    SageMaker stops a job (spot interruption, StopTrainingJob) by sending SIGTERM to the container's
    PID 1 only: this entrypoint. A torchrun started as a child would never hear of it, and its workers
    would be killed without saving. After ``exec`` torchrun *is* PID 1: it forwards the SIGTERM to every
    worker, each saves a checkpoint and exits, and the job's exit status is torchrun's.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(command[0], command, env)


def run() -> int:
    from nexus_llm.train.loop import INTERRUPTED_EXIT_CODE, run_train

    cfg = build_config(read_hyperparameters())
    work_dir = _env("NEXUS_SM_WORK_DIR", "/tmp/nexus-sagemaker")
    if os.environ.get(TOKENS_ENV):
        tokens, tokenizer = os.environ[TOKENS_ENV].split(os.pathsep, 1)
    else:
        channel = os.environ.get("SM_CHANNEL_TRAINING")
        if not channel:
            raise ConfigError("SM_CHANNEL_TRAINING is not set: give the job a 'training' input channel")
        tokens, tokenizer = prepare_tokens(cfg, channel, work_dir)
    gpus = int(_env("SM_NUM_GPUS", "0"))
    hosts = json.loads(_env("SM_HOSTS", "[]")) or ["localhost"]
    if "LOCAL_RANK" not in os.environ and (gpus > 1 or len(hosts) > 1):
        env = {**os.environ, TOKENS_ENV: f"{tokens}{os.pathsep}{tokenizer}"}
        relaunch(torchrun_command(max(gpus, 1), hosts, _env("SM_CURRENT_HOST", hosts[0])), env)
    train = cfg.train.model_copy(
        update={
            "tokens": tokens,
            "tokenizer": tokenizer,
            "output_dir": _env("SM_MODEL_DIR", "/opt/ml/model"),
            "checkpoint_dir": cfg.train.checkpoint_dir
            or _env("NEXUS_SM_CHECKPOINT_DIR", "/opt/ml/checkpoints"),
            "run_dir": os.path.join(_env("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data"), "runs"),
        }
    )
    seed = train.seed if train.seed is not None else cfg.seed
    summary = run_train(train, train.paths(work_dir), seed, cfg.name, cfg.tracking)
    return INTERRUPTED_EXIT_CODE if summary.get("interrupted") else 0


def main() -> None:
    try:
        code = run()
    except (ValueError, FileNotFoundError) as err:  # user errors (ConfigError is a ValueError too)
        console.print(f"[bold red]error[/]: {err}")
        failure = os.path.join(_env("SM_OUTPUT_DIR", "/opt/ml/output"), "failure")
        try:
            os.makedirs(os.path.dirname(failure), exist_ok=True)
            Path(failure).write_text(str(err)[:1000], encoding="utf-8")
        except OSError:
            pass
        code = 2
    sys.exit(code)


if __name__ == "__main__":
    main()
