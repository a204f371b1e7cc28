"""Benchmark: the guide's training recipe against ``nexus train``, same data, same model, same machine.

Both train the ``demo`` Llama preset (same initial weights, same optimizer settings, fp32 on a CPU
without native bf16) on the same curated documents, built deterministically from the bundled example
corpus (``examples/corpus/*.jsonl.gz``), with the same tokenizer:

  1. the guide: per-document tokenization with ``padding=True, max_length=2048`` (no truncation, so
     every document is padded to the longest of its 1,000-document ``map`` batch), the transformers
     ``Trainer`` with ``DataCollatorForLanguageModeling(mlm=False)``, its settings adapted to CPU
     (no fp16, no DeepSpeed, 4 sequences per batch);
  2. ``nexus data tokenize`` + ``nexus train``: packed 2,048-token sequences, no padding.

Reported per recipe: *real* tokens per second (the figure that matters), real tokens per CPU-second
of the process (insensitive to other processes' load on a shared machine, most of all with
``--threads 1``), the padding share of the tokens computed, MFU, and how many of the corpus's tokens
the recipe trains on. Each recipe runs ``--rounds`` times, alternating, and its best round is reported.

The figure that matters is *real* tokens per second: tokens that are not padding, i.e. text the model
learns from. Step time is measured inside the training loop of each (first step excluded as warm-up),
so process start-up and data preparation are not counted for either. MFU is reported against the
measured CPU matmul peak, counting model FLOPs on real tokens only (FLOPs spent on padding are waste).

    python benchmarks/train.py            # 15 timed steps each, 2 rounds, all 2,553 documents
    python benchmarks/train.py --small    # 6 timed steps each on 600 documents, for a quick check
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SEQ_LEN = 2048  # the guide's max_length; nexus packs into windows of the same length
MICRO_BATCH = 4
LR = 3e-3


def write_curated(out: Path, max_docs: int | None) -> int:
    """The example corpus as curated Parquet (documents as they are: id, text, source, meta)."""
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
    table = pa.table(
        {k: [r[k] for r in rows] for k in ("id", "text", "source")} | {"meta": ["{}"] * len(rows)}
    )
    pq.write_table(table, out / "part-00000.parquet")
    (out / "manifest.json").write_text(json.dumps({"records_out": len(rows)}))
    return len(rows)


def model_config(tokenizer_dir: Path):
    from transformers import AutoTokenizer

    from nexus_llm.train.presets import llama_config

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    ids = {
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
    }
    return llama_config("demo", len(tok), SEQ_LEN, ids)


def run_guide(curated: Path, tokenizer_dir: Path, steps: int, seed: int) -> dict:
    """The guide's recipe: padded per-document batches through the transformers Trainer."""
    import datasets
    import torch
    from transformers import (
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        LlamaForCausalLM,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    ds = datasets.load_dataset("parquet", data_files=str(curated / "part-*.parquet"), split="train")
    ds = ds.map(
        lambda b: tok(b["text"], padding=True, max_length=SEQ_LEN),  # as the guide: no truncation
        batched=True,
        remove_columns=ds.column_names,
    )
    corpus_used = sum(sum(m) for m in ds["attention_mask"])  # truncation drops the rest of long documents
    real = {"tokens": 0, "total": 0, "steps": 0}
    base = DataCollatorForLanguageModeling(tok, mlm=False)

    def collate(features):
        batch = base(features)
        if real["steps"] >= 1:  # the first step is warm-up, as for nexus
            real["tokens"] += int(batch["attention_mask"].sum())
            real["total"] += batch["attention_mask"].numel()
        return batch

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.seconds = self.cpu_seconds = 0.0
            self.started = (0.0, 0.0)

        def on_step_begin(self, args, state, control, **kw):
            self.started = (time.perf_counter(), time.process_time())

        def on_step_end(self, args, state, control, **kw):
            if real["steps"] >= 1:
                self.seconds += time.perf_counter() - self.started[0]
                self.cpu_seconds += time.process_time() - self.started[1]
            real["steps"] += 1

    torch.manual_seed(seed)
    model = LlamaForCausalLM(model_config(tokenizer_dir))
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=MICRO_BATCH, max_steps=steps + 1, learning_rate=LR,
            warmup_steps=2, weight_decay=0.1, logging_steps=10**6, save_strategy="no", report_to=[],
            use_cpu=True, dataloader_num_workers=0, seed=seed,
        )  # fmt: skip
        trainer = Trainer(model=model, args=args, train_dataset=ds, data_collator=collate, callbacks=[timer])
        trainer.train()
    return {
        "real_tokens": real["tokens"],
        "padding_fraction": 1 - real["tokens"] / max(real["total"], 1),
        "seconds": timer.seconds,
        "real_tokens_per_second": real["tokens"] / timer.seconds,
        "real_tokens_per_cpu_second": real["tokens"] / timer.cpu_seconds,
        "corpus_tokens_trainable": corpus_used,
    }


def run_nexus(tokens_dir: Path, work: Path, steps: int, seed: int) -> dict:
    from nexus_llm.config import parse_config
    from nexus_llm.train import loop

    section = {
        "tokens": str(tokens_dir), "preset": "demo", "seq_len": SEQ_LEN, "micro_batch_size": MICRO_BATCH,
        "max_steps": steps + 1, "learning_rate": LR, "warmup_steps": 2, "log_every": 1,
        "eval_every": 10**6, "save_every": 10**6, "tensorboard": False,
    }  # fmt: skip
    cfg = parse_config({"train": section}).train
    times: list[tuple[float, float]] = []
    original = loop.train_step

    def timed_step(*args, **kwargs):  # the same span the guide's step callbacks measure (and data loading)
        wall, cpu = time.perf_counter(), time.process_time()
        result = original(*args, **kwargs)
        times.append((time.perf_counter() - wall, time.process_time() - cpu))
        return result

    loop.train_step = timed_step
    try:
        loop.run_train(cfg, cfg.paths(str(work)), seed)
    finally:
        loop.train_step = original
    tokens = SEQ_LEN * MICRO_BATCH * (len(times) - 1)  # the first step is warm-up
    seconds = sum(t[0] for t in times[1:])
    cpu_seconds = sum(t[1] for t in times[1:])
    meta = json.loads((tokens_dir / "meta.json").read_text())
    return {"real_tokens": tokens, "padding_fraction": 0.0, "seconds": seconds,
            "real_tokens_per_second": tokens / seconds, "real_tokens_per_cpu_second": tokens / cpu_seconds,
            "corpus_tokens_trainable": meta["splits"]["train"]["tokens"]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", action="store_true", help="6 timed steps and 600 documents")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per recipe")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument(
        "--rounds", type=int, default=2, help="alternate the recipes this often; best of each"
    )
    opts = parser.parse_args()
    steps = opts.steps or (6 if opts.small else 15)

    import torch

    if opts.threads:
        torch.set_num_threads(opts.threads)
    from nexus_llm.tokenizer.bpe import run_tokenizer_train
    from nexus_llm.tokenizer.config import TokenizeConfig, TokenizerConfig
    from nexus_llm.tokenizer.encode import run_tokenize
    from nexus_llm.train.mfu import cpu_peak_flops, train_flops_per_token

    bench = ROOT / ".bench" / "train"
    with tempfile.TemporaryDirectory(dir=ROOT / ".bench" if (ROOT / ".bench").exists() else None) as tmp:
        tmp = Path(tmp)
        docs = write_curated(tmp / "curated", 600 if opts.small else None)
        run_tokenizer_train(TokenizerConfig(vocab_size=4096), str(tmp / "curated"), str(tmp / "tokenizer"))
        run_tokenize(
            TokenizeConfig(val_fraction=0.0),
            str(tmp / "curated"),
            str(tmp / "tokenizer"),
            str(tmp / "tokens"),
        )
        guides, nexuses = [], []
        for r in range(opts.rounds):  # alternate, so that a burst of load from elsewhere hits both
            guides.append(run_guide(tmp / "curated", tmp / "tokenizer", steps, opts.seed))
            nexuses.append(run_nexus(tmp / "tokens", tmp / f"nexus-{r}", steps, opts.seed))
        guide = max(guides, key=lambda x: x["real_tokens_per_second"])
        nexus = max(nexuses, key=lambda x: x["real_tokens_per_second"])
        flops = train_flops_per_token(model_config(tmp / "tokenizer"), SEQ_LEN)
    peak = cpu_peak_flops("fp32")
    for result in (guide, nexus):
        result["mfu"] = result["real_tokens_per_second"] * flops / peak
    ratio = nexus["real_tokens_per_second"] / guide["real_tokens_per_second"]
    cpu_ratio = nexus["real_tokens_per_cpu_second"] / guide["real_tokens_per_cpu_second"]
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch threads {torch.get_num_threads()}; {docs} documents; {steps} timed steps of "
          f"{MICRO_BATCH} × {SEQ_LEN}; model demo preset; fp32 peak {peak / 1e9:.1f} GFLOP/s (measured)")  # fmt: skip
    total = nexus["corpus_tokens_trainable"]
    print(
        f"{'recipe':<28}{'real tokens/s':>15}{'per CPU-s':>11}{'padding':>10}{'MFU':>8}{'corpus tokens trainable':>26}"
    )
    for name, r in (("guide (padding, Trainer)", guide), ("nexus train (packed)", nexus)):
        used = r["corpus_tokens_trainable"]
        print(f"{name:<28}{r['real_tokens_per_second']:>15,.0f}{r['real_tokens_per_cpu_second']:>11,.0f}"
              f"{r['padding_fraction']:>10.1%}{r['mfu']:>8.1%}"
              f"{used:>18,} ({used / total:.0%})")  # fmt: skip
    print(f"ratio (nexus / guide): {ratio:.2f}x real tokens/s, {cpu_ratio:.2f}x real tokens per CPU-second")
    bench.mkdir(parents=True, exist_ok=True)
    (bench / "results.json").write_text(json.dumps({"guide": guide, "nexus": nexus, "ratio": ratio, "cpu_ratio": cpu_ratio,
                                                    "steps": steps, "documents": docs, "peak_flops": peak}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
