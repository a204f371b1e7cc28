"""The SageMaker training-container contract, run locally with SM_* variables pointing at temp dirs."""

from __future__ import annotations

import json

import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from nexus_llm.train.checkpoint import complete_checkpoints
from nexus_llm.train.sagemaker import build_config, parse_value, torchrun_command
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


def test_entrypoint_trains_from_curated_data_with_string_hyperparameters(tmp_path):
    channel = write_curated(tmp_path / "training", story_texts(80, seed=4))
    (channel / "nexus.yaml").write_text(yaml.safe_dump({
        "tokenizer": {"vocab_size": 320},
        "train": {"model_overrides": TINY_LLAMA, "seq_len": 32, "micro_batch_size": 4, "num_threads": 1,
                  "log_every": 1, "eval_every": 4, "save_every": 2, "tensorboard": False},
    }))  # fmt: skip
    hps = {"config": "nexus.yaml", "train.max_steps": "4", "train.learning_rate": "3e-3",
           "tokenize.val_fraction": "0.1", "sagemaker_program": "ignored"}  # fmt: skip
    res = run_module(["nexus_llm.train.sagemaker"], env=_sm_env(tmp_path, channel, hps))
    assert res.returncode == 0, res.stderr[-3000:]
    model = tmp_path / "model"
    assert json.loads((model / "manifest.json").read_text())["step"] == 4
    AutoModelForCausalLM.from_pretrained(model)
    AutoTokenizer.from_pretrained(model)
    assert [s for s, _ in complete_checkpoints(str(tmp_path / "checkpoints"))] == [2, 4]
    metrics = (tmp_path / "output" / "data" / "runs" / "metrics.jsonl").read_text().splitlines()
    assert len(metrics) == 4


def test_entrypoint_reports_a_bad_channel_to_the_failure_file(tmp_path):
    (tmp_path / "empty").mkdir()
    res = run_module(["nexus_llm.train.sagemaker"], env=_sm_env(tmp_path, tmp_path / "empty", {}))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "neither token shards" in (tmp_path / "output" / "failure").read_text()


def test_hyperparameter_values_are_typed_like_yaml():
    assert parse_value("100") == 100 and parse_value("true") is True and parse_value('"quoted"') == "quoted"
    cfg = build_config({"train.max_steps": "100", "train.betas": "[0.9, 0.99]", "train.lora.r": "8",
                        "train.init_from": "/models/base", "train.learning_rate": "1e-4"})  # fmt: skip
    assert cfg.train.max_steps == 100 and cfg.train.betas == (0.9, 0.99) and cfg.train.lora.r == 8
    assert cfg.train.learning_rate == 1e-4


def test_multi_gpu_jobs_relaunch_under_torchrun():
    cmd = torchrun_command(8, ["algo-1", "algo-2"], "algo-2")
    assert "--nproc-per-node=8" in cmd and "--nnodes=2" in cmd and "--node-rank=1" in cmd
    assert "--master-addr=algo-1" in cmd and cmd[-2:] == ["-m", "nexus_llm.train.sagemaker"]
