"""``nexus train`` end to end: learning, metrics, export, exact resume after SIGKILL, SIGTERM, torchrun."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from nexus_llm.config import parse_config
from nexus_llm.tracking import TrackingConfig
from nexus_llm.train.checkpoint import COMPLETE, complete_checkpoints
from nexus_llm.train.loop import FAULT_KILL_ENV, INTERRUPTED_EXIT_CODE, run_train
from support.train import make_tokens, run_module, train_section, write_config


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    return make_tokens(tmp_path_factory.mktemp("train-tokens"))


def _cfg_paths(section):
    cfg = parse_config({"train": section}).train
    return cfg, cfg.paths("unused-workspace")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _metrics(out):
    return [json.loads(line) for line in (out / "runs" / "metrics.jsonl").read_text().splitlines()]


def _samples(out, rank=0):
    path = out / "runs" / f"samples-rank{rank}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_validation_loss_falls_and_the_export_generates_with_plain_transformers(
    tokens, tmp_path, monkeypatch
):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # the file store needs no database set-up
    tracking = TrackingConfig(uri=(tmp_path / "mlruns").as_uri(), experiment="t", log_training=True)
    section = train_section(tokens, tmp_path, max_steps=30, eval_every=10, tensorboard=True)
    summary = run_train(*_cfg_paths(section), seed=7, tracking=tracking)
    records = _metrics(tmp_path)
    assert [r["step"] for r in records] == list(range(1, 31))
    for r in records:
        assert {"step", "loss", "lr", "tokens_per_second", "mfu", "epoch"} <= set(r)
        assert r["tokens_per_second"] > 0 and 0 < r["mfu"] < 1
    val = [r["val_loss"] for r in records if "val_loss" in r]
    assert len(val) == 3 and val[-1] < val[0] - 0.5
    assert (tmp_path / "runs" / "loss.png").stat().st_size > 1000
    assert list((tmp_path / "runs" / "tensorboard").glob("events.out.tfevents.*"))
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking.uri)
    (run,) = client.search_runs([client.get_experiment_by_name("t").experiment_id])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [10, 20, 30]
    model_dir = tmp_path / "model"
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["step"] == 30 and manifest["tokens"]["tokenizer_sha256"]
    assert (model_dir / "generation_config.json").exists() and (model_dir / "model.safetensors").exists()
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    ids = tok("the cat sat", return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=8, do_sample=False)
    assert out.shape[1] == ids.shape[1] + 8
    assert summary["interrupted"] is False and summary["last"]["val_loss"] == val[-1]


def test_sigkill_after_a_checkpoint_resumes_to_the_same_loss_seeing_each_sequence_once(tmp_path):
    tokens = make_tokens(tmp_path / "data", docs=60)
    # 2.4 epochs of 24 steps; killed at 44, resumed from 40, so the resumed part crosses an epoch boundary
    section = dict(
        max_steps=None, epochs=2.4, save_every=10, eval_every=20, record_samples=True, micro_batch_size=8
    )
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    run_train(*_cfg_paths(train_section(tokens, whole, **section)), seed=7)
    cfg_killed = write_config(tmp_path / "killed.yaml", train_section(tokens, killed, **section))
    res = run_module(["nexus_llm.train", "-c", str(cfg_killed)], env={FAULT_KILL_ENV: "44"})
    assert res.returncode == -signal.SIGKILL, res.stderr[-3000:]
    assert [s for s, _ in complete_checkpoints(str(killed / "checkpoints"))] == [30, 40]
    assert max(r["step"] for r in _metrics(killed)) == 44  # logged past the checkpoint before dying
    summary = run_train(*_cfg_paths(train_section(tokens, killed, **section)), seed=7)
    assert summary["resumed_from"].endswith("checkpoint-40")
    a, b = _metrics(whole), _metrics(killed)
    assert [r["step"] for r in b] == [r["step"] for r in a]  # steps 41-44 of the dead run were replaced
    assert abs(a[-1]["loss"] - b[-1]["loss"]) < 1e-4
    assert abs(a[-1]["val_loss"] - b[-1]["val_loss"]) < 1e-4
    samples = _samples(killed)
    assert samples == _samples(whole)
    by_epoch = {}
    for rec in samples:
        by_epoch.setdefault(rec["epoch"], []).extend(rec["indices"])
    num_sequences = len(by_epoch[0])
    assert sorted(by_epoch[0]) == sorted(by_epoch[1]) == list(range(num_sequences))
    assert len(by_epoch[2]) == len(set(by_epoch[2])) < num_sequences


def test_sigterm_saves_a_complete_checkpoint_and_exits_cleanly(tokens, tmp_path):
    cfg = write_config(
        tmp_path / "c.yaml", train_section(tokens, tmp_path, max_steps=100_000, save_every=100_000)
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "nexus_llm.train", "-c", str(cfg)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    metrics = tmp_path / "runs" / "metrics.jsonl"
    deadline = time.time() + 120
    while not (metrics.exists() and metrics.read_text().count("\n") >= 3) and time.time() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == INTERRUPTED_EXIT_CODE, err[-3000:]
    assert "Traceback" not in err and "Run the same command again to resume" in err
    (step, uri), = complete_checkpoints(str(tmp_path / "checkpoints"))  # fmt: skip
    state = json.loads((tmp_path / "checkpoints" / f"checkpoint-{step}" / "trainer_state.json").read_text())
    assert state["step"] == step >= 3 and os.path.exists(os.path.join(uri, COMPLETE))
    assert not (tmp_path / "model" / "manifest.json").exists()


def test_incomplete_checkpoints_are_ignored_and_changed_data_is_refused(tokens, tmp_path):
    cfg = parse_config({"train": train_section(tokens, tmp_path, max_steps=4, save_every=2)}).train
    run_train(cfg, cfg.paths(str(tmp_path)), seed=7)
    ckpts = tmp_path / "checkpoints"
    shutil.copytree(ckpts / "checkpoint-4", ckpts / "checkpoint-9")
    (ckpts / "checkpoint-9" / COMPLETE).unlink()  # as if killed while saving
    longer = parse_config({"train": train_section(tokens, tmp_path, max_steps=6, save_every=2)}).train
    summary = run_train(longer, longer.paths(str(tmp_path)), seed=7)
    assert summary["resumed_from"].endswith("checkpoint-4") and summary["step"] == 6
    other = parse_config({"train": train_section(tokens, tmp_path, max_steps=8, seq_len=16)}).train
    with pytest.raises(ValueError, match=r"different .*seq_len.*new train.checkpoint_dir"):
        run_train(other, other.paths(str(tmp_path)), seed=7)


def test_two_process_torchrun_matches_one_process_with_accumulation(tokens, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    base = dict(max_steps=6, eval_every=6, save_every=3, record_samples=True)
    cfg2 = write_config(tmp_path / "two.yaml", train_section(tokens, two, **base))
    run_train(*_cfg_paths(train_section(tokens, one, grad_accum_steps=2, **base)), seed=7)
    res = run_module(["torch.distributed.run", "--nproc-per-node=2", "--master-addr=127.0.0.1",
                      f"--master-port={_free_port()}", "-m", "nexus_llm.train", "-c", str(cfg2)], timeout=300)  # fmt: skip
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    assert "on 2 × cpu" in res.stderr
    r0, r1 = _samples(two, 0), _samples(two, 1)
    for a, b, single in zip(r0, r1, _samples(one), strict=True):
        assert not set(a["indices"]) & set(b["indices"])
        assert sorted(a["indices"] + b["indices"]) == sorted(single["indices"])
    a, b = _metrics(one), _metrics(two)
    assert abs(a[-1]["loss"] - b[-1]["loss"]) < 1e-4 and abs(a[-1]["val_loss"] - b[-1]["val_loss"]) < 1e-4
    assert (two / "model" / "manifest.json").exists()


def test_runs_with_different_precisions_follow_each_other_in_one_process(tokens, tmp_path, monkeypatch):
    """accelerate's state is process-wide; each run owns it and resets it, so fp32 then bf16 (and back)
    train in one process (a notebook, a sweep). The CPU's bf16 flag is forced both ways for ``auto``."""
    from nexus_llm.train import hardware

    monkeypatch.setattr(hardware, "cpu_flags", lambda: {"avx2"})
    runs = [("fp32", "auto"), ("bf16", "auto"), ("fp32", "fp32")]
    precisions = []
    for i, (forced, requested) in enumerate(runs):
        if forced == "bf16":
            monkeypatch.setattr(hardware, "cpu_flags", lambda: {"avx2", "avx512_bf16"})
        else:
            monkeypatch.setattr(hardware, "cpu_flags", lambda: {"avx2"})
        section = train_section(tokens, tmp_path / str(i), max_steps=3, save_every=3, eval_every=3,
                                precision=requested)  # fmt: skip
        summary = run_train(*_cfg_paths(section), seed=1)
        precisions.append(summary["precision"])
        assert summary["step"] == 3 and summary["last"]["loss"] > 0
    assert precisions == ["fp32", "bf16", "fp32"]
