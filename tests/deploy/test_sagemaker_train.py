"""The SageMaker training-container contract, run locally with SM_* variables pointing at temp dirs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from nexus_llm.deploy.entrypoints import sagemaker_train as sagemaker
from nexus_llm.deploy.entrypoints.sagemaker_train import build_config, main, parse_value, torchrun_command
from nexus_llm.train.checkpoint import complete_checkpoints
from nexus_llm.train.loop import FAULT_KILL_ENV
from support.stories import story_texts, write_curated
from support.train import TINY_LLAMA, run_module


def _sm_env(tmp_path, channel, hyperparameters):
    (tmp_path / "config").mkdir(exist_ok=True)
    hp = tmp_path / "config" / "hyperparameters.json"
    hp.write_text(json.dumps(hyperparameters))
    return {
        "SM_MODEL_DIR": str(tmp_path / "model"),
        "SM_CHANNEL_TRAINING": str(channel),
        "SM_OUTPUT_DATA_DIR": str(tmp_path / "output" / "data"),
        "SM_OUTPUT_DIR": str(tmp_path / "output"),
        "NEXUS_SM_HYPERPARAMETERS": str(hp),
        "NEXUS_SM_CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
        "NEXUS_SM_WORK_DIR": str(tmp_path / "work"),
    }


def test_entrypoint_trains_from_curated_data_and_resumes_after_a_kill(tmp_path):
    """Every start re-tokenizes the curated channel (as after a spot restart): the checkpoint resumes."""
    channel = write_curated(tmp_path / "training", story_texts(80, seed=4))
    (channel / "nexus.yaml").write_text(yaml.safe_dump({
        "tokenizer": {"vocab_size": 320},
        "train": {"model_overrides": TINY_LLAMA, "seq_len": 32, "micro_batch_size": 4, "num_threads": 1,
                  "log_every": 1, "eval_every": 4, "save_every": 2, "tensorboard": False},
    }))  # fmt: skip
    hps = {"config": "nexus.yaml", "train.max_steps": "4", "train.learning_rate": "3e-3",
           "tokenize.val_fraction": "0.1", "sagemaker_program": "ignored"}  # fmt: skip
    env = _sm_env(tmp_path, channel, hps)
    killed = run_module(["nexus_llm.deploy.entrypoints.sagemaker_train"], env={**env, FAULT_KILL_ENV: "3"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert [s for s, _ in complete_checkpoints(str(tmp_path / "checkpoints"))] == [2]
    meta_path = tmp_path / "work" / "tokens" / "meta.json"
    first_written = meta_path.stat().st_mtime_ns
    res = run_module(["nexus_llm.deploy.entrypoints.sagemaker_train"], env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert meta_path.stat().st_mtime_ns > first_written  # tokenized again (the file was rewritten)
    model = tmp_path / "model"
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["step"] == 4 and manifest["resumed_from"].endswith("checkpoint-2")
    AutoModelForCausalLM.from_pretrained(model)
    AutoTokenizer.from_pretrained(model)
    assert [s for s, _ in complete_checkpoints(str(tmp_path / "checkpoints"))] == [2, 4]
    metrics = (tmp_path / "output" / "data" / "runs" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in metrics] == [1, 2, 3, 4]


def test_hyperparameter_values_are_typed_like_yaml():
    assert parse_value("100") == 100 and parse_value("true") is True and parse_value('"quoted"') == "quoted"
    cfg = build_config({"train.max_steps": "100", "train.betas": "[0.9, 0.99]", "train.lora.r": "8",
                        "train.init_from": "/models/base", "train.learning_rate": "1e-4"})  # fmt: skip
    assert cfg.train.max_steps == 100 and cfg.train.betas == (0.9, 0.99) and cfg.train.lora.r == 8
    assert cfg.train.learning_rate == 1e-4


def test_multi_gpu_jobs_relaunch_under_torchrun():
    cmd = torchrun_command(8, ["algo-1", "algo-2"], "algo-2")
    assert "--nproc-per-node=8" in cmd and "--nnodes=2" in cmd and "--node-rank=1" in cmd
    assert "--master-addr=algo-1" in cmd and cmd[-2:] == [
        "-m",
        "nexus_llm.deploy.entrypoints.sagemaker_train",
    ]


@pytest.mark.parametrize(
    ("channel", "message"),
    [
        (lambda root: root / "empty", "neither token shards"),  # neither tokens nor curated data
        (lambda root: write_curated(root / "training", ["", ""]), "no non-empty documents"),  # a ValueError
    ],
)
def test_user_errors_go_to_the_failure_file_without_a_traceback(tmp_path, monkeypatch, channel, message):
    (tmp_path / "empty").mkdir()
    for key, value in _sm_env(tmp_path, channel(tmp_path), {}).items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) as exit_info:  # not an exception: nothing prints a traceback
        main()
    assert exit_info.value.code == 2
    assert message in (tmp_path / "output" / "failure").read_text()


def test_multi_gpu_jobs_exec_torchrun_in_place(tmp_path, monkeypatch):
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    (tokens / "meta.json").write_text("{}")
    for key, value in _sm_env(tmp_path, tokens, {}).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SM_NUM_GPUS", "4")
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    calls = []

    def fake_exec(command, env):
        calls.append((command, env))
        raise SystemExit(0)

    monkeypatch.setattr(sagemaker, "relaunch", fake_exec)
    with pytest.raises(SystemExit):
        sagemaker.run()
    ((command, env),) = calls
    assert command == torchrun_command(4, ["localhost"], "localhost")
    assert env[sagemaker.TOKENS_ENV] == f"{tokens}{os.pathsep}{tokens / 'tokenizer'}"


RELAUNCHED = """
import os, pathlib, signal, sys, time
def saved(*_):
    pathlib.Path(sys.argv[1]).write_text(os.environ["NEXUS_SM_TOKENS"])
    sys.exit(143)
signal.signal(signal.SIGTERM, saved)
print(os.getpid(), flush=True)
time.sleep(60)
"""


def test_relaunch_keeps_the_pid_so_the_relaunched_program_gets_sigterm(tmp_path):
    """SageMaker signals PID 1 only: after relaunch, that PID is torchrun (here a stand-in)."""
    marker = tmp_path / "saved"
    parent = (
        "import os, sys\n"
        "from nexus_llm.deploy.entrypoints.sagemaker_train import relaunch\n"
        "print(os.getpid(), flush=True)\n"
        f"relaunch([sys.executable, '-c', {RELAUNCHED!r}, {str(marker)!r}], "
        "{**os.environ, 'NEXUS_SM_TOKENS': 'tokens:tokenizer'})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True)
    try:
        before, after = int(proc.stdout.readline()), int(proc.stdout.readline())
        assert before == after == proc.pid
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 143
    finally:
        proc.kill()
    assert marker.read_text() == "tokens:tokenizer"
