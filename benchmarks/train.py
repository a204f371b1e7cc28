"""Benchmark: the guide's training script against ``nexus train``: same model, data, precision, threads.

The baseline is the guide's own script, run as shipped: ``../shared/baselines/seed_train.py`` (its
section 4.2 ``train.py``: per-document tokenization with ``truncation=True, padding=True,
max_length=2048`` in 1,000-document ``map`` batches, ``DataCollatorForLanguageModeling``, the HF
``Trainer`` with 4 sequences per device batch and 4 accumulation steps). ``nexus train`` runs on the
same documents with the same model weights at the start, packing them into 2,048-token sequences, 4
per micro-batch and 4 accumulation steps: 16 sequences of 2,048 positions per optimizer step for both.

Pinned for both, and printed: the precision (``--precision``, default what ``nexus train`` would pick
here: bf16 on CPUs with AVX512-BF16 or AMX, else fp32; the guide's script takes the same flag), the
thread count (``--threads``: OMP/MKL threads of each process, and ``train.num_threads``), and the CPU
model and flags.

Modes:

- ``scratch`` (default): the ``demo`` preset (1.4M parameters) with a 4,096-token BPE trained here on
  the example corpus, initial weights saved once and loaded by both.
- ``smollm2``: SmolLM2-135M-Instruct imported from its GGUF (``nexus model import``), fine-tuned on the
  same corpus with its own tokenizer (``train.init_from``). Slow on a CPU: each step is 32,768 positions
  through a 135M-parameter model.

Measured: *real* tokens per second, the non-padding tokens, i.e. text the model learns from. The guide's
script reports its own figure (time from the start of its second step to the end of training; real
tokens estimated from its padding share); ``nexus train``'s is timed from outside, from the moment its
first step's log line arrives to its last one's, over the tokens of those steps (its packed sequences
have no padding), so that nothing the training loop reports about itself is trusted. The loop's own
tokens/s is shown beside it. Each recipe runs ``--rounds`` times, alternating; the best round counts.

MFU is computed here from the model's shape, twice: by 6·N (N: weights in matrix multiplies) and by
6·N + 12·L·H·Q·T (PaLM's count with attention, T = 2,048), each on real tokens, against the matmul peak
measured on this machine in the precision used with the same thread count
(``nexus_llm.train.mfu.measure_cpu_peak``).

    python benchmarks/train.py                     # scratch, 5 timed steps, 2 rounds
    python benchmarks/train.py --small             # 2 timed steps, 1 round, 600 documents
    python benchmarks/train.py --mode smollm2 --steps 2 --rounds 1
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
GUIDE = (ROOT.parent / "shared" / "baselines" / "seed_train.py").resolve()
GGUF = ROOT / ".cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"

SEQ_LEN = 2048  # the guide's max_length; nexus packs into windows of the same length
MICRO_BATCH, ACCUM = 4, 4  # the guide's per_device_train_batch_size and gradient_accumulation_steps
STEP_LINE = re.compile(r"^step\s+(\d+)/(\d+)\s")


def write_curated(out: Path, max_docs: int | None) -> int:
    """The example corpus as a curated Parquet dataset (id, text, source, meta), every document as is."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for path in sorted((ROOT / "examples" / "corpus").glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for i, line in enumerate(fh):
                rec = json.loads(line)
                rows.append(
                    {"id": rec.get("id") or f"{path.stem}-{i}", "text": rec["text"], "source": path.name}
                )
    if not rows:
        raise SystemExit(
            "examples/corpus/*.jsonl.gz not found: the benchmark needs the bundled example corpus"
        )
    if max_docs and len(rows) > max_docs:  # every k-th document, so that all sources stay represented
        rows = rows[:: len(rows) // max_docs][:max_docs]
    out.mkdir(parents=True, exist_ok=True)
    columns = {k: [r[k] for r in rows] for k in ("id", "text", "source")} | {"meta": ["{}"] * len(rows)}
    pq.write_table(pa.table(columns), out / "part-00000.parquet")
    (out / "manifest.json").write_text(json.dumps({"stage": "data", "records_out": len(rows)}))
    return len(rows)


def scratch_model(curated: Path, out: Path, seed: int) -> Path:
    """The demo preset with a tokenizer trained on the corpus, saved as a Hugging Face directory."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    from nexus_llm.tokenizer.bpe import run_tokenizer_train
    from nexus_llm.tokenizer.config import TokenizerConfig
    from nexus_llm.train.presets import llama_config

    run_tokenizer_train(TokenizerConfig(vocab_size=4096), str(curated), str(out / "tokenizer"))
    tok = AutoTokenizer.from_pretrained(out / "tokenizer")
    ids = {
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
    }
    torch.manual_seed(seed)
    model = LlamaForCausalLM(llama_config("demo", len(tok), SEQ_LEN, ids))
    model.save_pretrained(out / "model")
    tok.save_pretrained(out / "model")
    return out / "model"


def smollm2_model(out: Path) -> Path:
    if not GGUF.is_file():
        raise SystemExit(f"{GGUF} is missing: run `make models`")
    from nexus_llm.models.importer import import_model

    import_model(str(GGUF), str(out / "model"))
    return out / "model"


def child_env(threads: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update({
        "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    })  # fmt: skip
    return env


def cpu_seconds_of(fn):
    """Run ``fn`` and return (its result, CPU seconds of the child processes it waited for)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = fn()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return result, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def run_guide(model: Path, curated: Path, work: Path, steps: int, precision: str, threads: int) -> dict:
    """The guide's script as shipped; returns its own JSON report plus the CPU time it used."""
    cmd = [sys.executable, str(GUIDE), "--model", str(model), "--data", str(curated), "--out", str(work),
           "--max-steps", str(steps + 1), "--precision", precision]  # fmt: skip

    def go():
        return subprocess.run(cmd, capture_output=True, text=True, env=child_env(threads), cwd=work.parent)

    proc, cpu = cpu_seconds_of(go)
    if proc.returncode != 0:
        raise SystemExit(f"the guide's script failed:\n{proc.stderr[-4000:]}")
    report = json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])
    if report["precision"] != precision:
        raise SystemExit(f"the guide's script ran in {report['precision']}, not {precision}")
    seconds = report["seconds_after_first_step"]
    real = report["real_tokens_per_s"] * seconds
    return {"real_tokens_per_second": report["real_tokens_per_s"], "seconds": seconds, "real_tokens": real,
            "padding_fraction": report["padding_share"], "steps_timed": report["steps"] - 1,
            "process_cpu_seconds": cpu, "report": report}  # fmt: skip


def run_nexus(model: Path, tokens: Path, work: Path, steps: int, precision: str, threads: int) -> dict:
    """``nexus train`` (the CLI, in its own process), timed by the arrival of its per-step log lines."""
    train = {
        "tokens": str(tokens), "init_from": str(model), "seq_len": SEQ_LEN, "micro_batch_size": MICRO_BATCH,
        "grad_accum_steps": ACCUM, "max_steps": steps + 1, "precision": precision, "num_threads": threads,
        "warmup_steps": 0, "learning_rate": 5e-5, "log_every": 1, "eval_every": 10**6, "save_every": 10**6,
        "tensorboard": False, "output_dir": str(work / "model"), "checkpoint_dir": str(work / "checkpoints"),
        "run_dir": str(work / "runs"),
    }  # fmt: skip
    work.mkdir(parents=True, exist_ok=True)
    config = work / "nexus.yaml"
    config.write_text(yaml.safe_dump({"seed": 1234, "train": train}))
    arrivals: dict[int, float] = {}
    lines: list[str] = []

    def go():
        proc = subprocess.Popen([sys.executable, "-m", "nexus_llm.cli", "train", "-c", str(config)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                env=child_env(threads), cwd=work)  # fmt: skip
        for line in proc.stderr:
            lines.append(line)
            match = STEP_LINE.match(line.strip())
            if match:
                arrivals[int(match.group(1))] = time.perf_counter()
        return proc.wait()

    code, cpu = cpu_seconds_of(go)
    if code != 0:
        raise SystemExit("nexus train failed:\n" + "".join(lines[-60:]))
    if sorted(arrivals) != list(range(1, steps + 2)):
        raise SystemExit(f"expected a log line per step, got steps {sorted(arrivals)}")
    seconds = arrivals[steps + 1] - arrivals[1]
    real = steps * ACCUM * MICRO_BATCH * SEQ_LEN  # steps 2..N+1, packed: every position is a real token
    metrics = [json.loads(x) for x in (work / "runs" / "metrics.jsonl").read_text().splitlines()]
    self_reported = [m["tokens_per_second"] for m in metrics if m["step"] > 1]
    precision_line = next((x for x in lines if x.startswith("training ")), "")
    return {"real_tokens_per_second": real / seconds, "seconds": seconds, "real_tokens": real,
            "padding_fraction": 0.0, "steps_timed": steps, "process_cpu_seconds": cpu,
            "loop_reported_tokens_per_second": sum(self_reported) / len(self_reported),
            "loop_header": precision_line.strip()}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=["scratch", "smollm2"], default="scratch")
    parser.add_argument("--small", action="store_true", help="2 timed steps, 1 round, 600 documents")
    parser.add_argument(
        "--steps", type=int, default=None, help="timed optimizer steps per run (after 1 warm-up)"
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="alternate the recipes this often; best of each"
    )
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count(), help="threads of each training process"
    )
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    parser.add_argument("--seed", type=int, default=1234)
    opts = parser.parse_args()
    steps = opts.steps or (2 if opts.small else 5)
    rounds = opts.rounds or (1 if opts.small else 2)
    if not GUIDE.is_file():
        raise SystemExit(f"the guide's script is not at {GUIDE}")
    from nexus_llm.console import configure_output

    configure_output(verbose=False)  # the libraries' bars and logs off, as in `nexus` without -v
    import torch
    from transformers import AutoConfig

    from machine import describe, summary_line
    from nexus_llm.tokenizer.config import TokenizeConfig
    from nexus_llm.tokenizer.encode import run_tokenize
    from nexus_llm.train.hardware import resolve_precision
    from nexus_llm.train.mfu import matmul_weights, measure_cpu_peak, train_flops_per_token

    precision = resolve_precision(opts.precision, cuda=False)
    torch.set_num_threads(opts.threads)
    info = describe(precision=precision, threads=opts.threads, mode=opts.mode)
    print(summary_line(info), flush=True)
    (ROOT / ".bench").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ROOT / ".bench") as tmp:
        tmp = Path(tmp)
        docs = write_curated(tmp / "curated", 600 if opts.small else None)
        model = (
            scratch_model(tmp / "curated", tmp, opts.seed) if opts.mode == "scratch" else smollm2_model(tmp)
        )
        run_tokenize(TokenizeConfig(val_fraction=0.0), str(tmp / "curated"), str(model), str(tmp / "tokens"))
        config = AutoConfig.from_pretrained(model)
        guides, nexuses = [], []
        for r in range(rounds):  # alternate, so that a burst of load from elsewhere hits both
            print(f"round {r + 1}/{rounds}: guide ...", flush=True)
            guides.append(
                run_guide(model, tmp / "curated", tmp / f"guide-{r}", steps, precision, opts.threads)
            )
            print(f"round {r + 1}/{rounds}: nexus train ...", flush=True)
            nexuses.append(
                run_nexus(model, tmp / "tokens", tmp / f"nexus-{r}", steps, precision, opts.threads)
            )
    guide = max(guides, key=lambda x: x["real_tokens_per_second"])
    nexus = max(nexuses, key=lambda x: x["real_tokens_per_second"])
    peak = measure_cpu_peak(precision)  # this process: the same thread count as the runs
    flops_6n = 6 * matmul_weights(config)
    flops_attn = train_flops_per_token(config, SEQ_LEN)
    for result in (guide, nexus):
        result["mfu_6n"] = result["real_tokens_per_second"] * flops_6n / peak
        result["mfu_attention"] = result["real_tokens_per_second"] * flops_attn / peak
        result["real_tokens_per_cpu_second"] = result["real_tokens"] / max(
            result["process_cpu_seconds"], 1e-9
        )
    ratio = nexus["real_tokens_per_second"] / guide["real_tokens_per_second"]
    params = sum(
        p.numel() for p in __import__("transformers").AutoModelForCausalLM.from_config(config).parameters()
    )
    print(
        f"\nmode {opts.mode}: {params:,} parameters; {docs:,} documents; {steps} timed steps of "
        f"{ACCUM} × {MICRO_BATCH} × {SEQ_LEN}; precision {precision}; {opts.threads} threads per process; "
        f"{precision} matmul peak {peak / 1e9:,.1f} GFLOP/s (measured, {opts.threads} threads); "
        f"FLOPs per token {flops_6n / 1e6:,.2f} M (6N), {flops_attn / 1e6:,.2f} M (with attention)"
    )
    print(
        f"{'recipe':<30}{'real tokens/s':>15}{'padding':>10}{'MFU 6N':>9}{'MFU +attn':>11}{'loop says':>11}"
    )
    for name, r in (("guide (seed_train.py)", guide), ("nexus train (packed)", nexus)):
        loop = r.get("loop_reported_tokens_per_second")
        print(f"{name:<30}{r['real_tokens_per_second']:>15,.0f}{r['padding_fraction']:>10.1%}"
              f"{r['mfu_6n']:>9.1%}{r['mfu_attention']:>11.1%}{(f'{loop:,.0f}' if loop else '-'):>11}")  # fmt: skip
    print(f"ratio (nexus / guide): {ratio:.2f}x real tokens/s")
    print("(process CPU seconds include start-up, loading and tokenizing: "
          f"guide {guide['process_cpu_seconds']:,.0f} s, nexus {nexus['process_cpu_seconds']:,.0f} s)")  # fmt: skip
    out = ROOT / ".bench" / "train"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"results-{opts.mode}.json").write_text(json.dumps({
        "machine": info, "mode": opts.mode, "parameters": params, "documents": docs, "steps": steps,
        "rounds": rounds, "precision": precision, "threads": opts.threads, "peak_flops": peak,
        "flops_per_token_6n": flops_6n, "flops_per_token_attention": flops_attn,
        "guide": guides, "nexus": nexuses, "best": {"guide": guide, "nexus": nexus}, "ratio": ratio,
    }, indent=1, default=str))  # fmt: skip


if __name__ == "__main__":
    main()
