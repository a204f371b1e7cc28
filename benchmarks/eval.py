"""Held-out perplexity: the guide's recipe (HF ``evaluate``'s perplexity metric) vs ``nexus eval``.

    .venv/bin/python benchmarks/eval.py [--small]

The guide calls ``evaluate.load("perplexity").compute(model_id=..., predictions=texts)``. ``evaluate``
fetches that metric's script from the Hugging Face Hub, which this offline machine cannot reach, so
``guide_perplexity`` below re-implements the published script step for step with ``transformers``: the
model and tokenizer are loaded inside every call, texts are right-padded in batches of 16 in input
order, a BOS token is prepended, the loss is averaged per text, and the result is the unweighted mean
of per-text perplexities. ``nexus eval`` runs end to end on the same texts (as curated Parquet) with the
same model: load once, length-sorted batches, token-weighted perplexity, bits per byte, report.

Both run in this process on the same CPU threads. The model is a small Llama trained here for a few
seconds on the example corpus, so that perplexity varies from text to text the way it does for a real
model (a random model scores every text near its vocabulary size, and weighting would not matter).
Texts are paragraphs of the example corpus that fit the model's context, so the two recipes see the
same tokens (the guide truncates longer texts silently).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "examples" / "corpus"
CONTEXT = 256


def paragraphs(limit: int) -> list[str]:
    """Paragraphs of the example corpus, 1 to ~200 words, interleaved across its books."""
    books = []
    for path in sorted(CORPUS.glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            paras = [p.strip() for line in fh for p in json.loads(line)["text"].split("\n\n")]
        books.append([p for p in paras if 20 <= len(p) <= 900])
    mixed = [p for group in zip(*books, strict=False) for p in group]
    return mixed[:limit]


def build_model(out: Path, texts: list[str], steps: int) -> None:
    """A byte-level BPE tokenizer and a 2-layer Llama trained briefly on ``texts``, saved for HF."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024,
        special_tokens=["<|pad|>", "<|bos|>", "<|eos|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(texts, trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<|bos|>", eos_token="<|eos|>", pad_token="<|pad|>"
    )
    tok.save_pretrained(out)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=CONTEXT, bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )  # fmt: skip
    model = LlamaForCausalLM(cfg)
    stream = torch.tensor([i for t in texts for i in [*tok(t).input_ids, tok.eos_token_id]])
    seq, batch = 128, 16
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        starts = torch.randint(0, len(stream) - seq - 1, (batch,))
        ids = torch.stack([stream[s : s + seq] for s in starts])
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    if steps:
        print(f"  trained {steps} steps, final training loss {loss.item():.3f}", file=sys.stderr)
    model.save_pretrained(out)


def guide_perplexity(
    predictions: list[str], model_id: str, batch_size: int = 16, add_start_token: bool = True
):
    """HF evaluate's ``perplexity`` metric (``metrics/perplexity/perplexity.py``), re-implemented."""
    import numpy as np
    import torch
    from torch.nn import CrossEntropyLoss
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_id)  # loaded on every call, as in the metric
    tokenizer = AutoTokenizer.from_pretrained(model_id)
    if tokenizer.pad_token is None and batch_size > 1:
        tokenizer.add_special_tokens({"pad_token": next(iter(tokenizer.special_tokens_map.values()))})
    encodings = tokenizer(
        predictions, add_special_tokens=False, padding=True, return_tensors="pt", return_attention_mask=True
    )
    encoded_texts, attn_masks = encodings["input_ids"], encodings["attention_mask"]
    ppls = []
    loss_fct = CrossEntropyLoss(reduction="none")
    for start in range(0, len(encoded_texts), batch_size):
        end = min(start + batch_size, len(encoded_texts))
        encoded_batch, attn_mask = encoded_texts[start:end], attn_masks[start:end]
        if add_start_token:
            bos = torch.tensor([[tokenizer.bos_token_id]] * encoded_batch.size(dim=0))
            encoded_batch = torch.cat([bos, encoded_batch], dim=1)
            attn_mask = torch.cat([torch.ones(bos.size(), dtype=torch.int64), attn_mask], dim=1)
        labels = encoded_batch
        with torch.no_grad():
            out_logits = model(encoded_batch, attention_mask=attn_mask).logits
        shift_logits = out_logits[..., :-1, :].contiguous()
        shift_labels = labels[..., 1:].contiguous()
        shift_attention_mask_batch = attn_mask[..., 1:].contiguous()
        perplexity_batch = torch.exp(
            (loss_fct(shift_logits.transpose(1, 2), shift_labels) * shift_attention_mask_batch).sum(1)
            / shift_attention_mask_batch.sum(1)
        )
        ppls += perplexity_batch.tolist()
    return {"perplexities": ppls, "mean_perplexity": float(np.mean(ppls))}


def write_curated(texts: list[str], out: Path) -> Path:
    """The texts as curated data (what `nexus data prepare` writes), outside the timed region."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table({"id": [str(i) for i in range(len(texts))], "text": texts}), out / "part-00000.parquet"
    )
    return out


def nexus_eval(model_dir: Path, data: Path, out: Path) -> dict:
    """``nexus eval`` end to end through its library function (load, read, score, report, manifest)."""
    from nexus_llm.eval.config import EvalConfig
    from nexus_llm.eval.run import run_eval

    run_eval(EvalConfig(data=str(data), prompts=[], device="cpu"), str(model_dir), str(out))
    return json.loads((out / "results.json").read_text())


def fitting(texts: list[str], model_dir: Path) -> list[str]:
    """Texts whose tokens fit the context with room for the start and end tokens."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    return [t for t, ids in zip(texts, tok(texts).input_ids, strict=True) if len(ids) <= CONTEXT - 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="fewer texts and training steps (a quick check)")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each recipe; the fastest counts")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    args = parser.parse_args()
    n_texts, steps = (150, 60) if args.small else (800, 200)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)  # on a shared machine, 1 thread each avoids spin-wait contention

    import nexus_llm.eval.run  # noqa: F401  (imports are set-up, not evaluation)

    with tempfile.TemporaryDirectory(prefix="nexus-bench-eval-") as tmp:
        work = Path(tmp)
        texts = paragraphs(n_texts)
        print(f"building a small model on {len(texts)} corpus paragraphs ...", file=sys.stderr)
        build_model(work / "model", texts, steps)
        texts = fitting(texts, work / "model")
        data = write_curated(texts, work / "curated")
        t_guide = t_nexus = math.inf
        for i in range(args.repeat):  # alternate, so that a busy moment on a shared machine hits both
            t0 = time.perf_counter()
            guide = guide_perplexity(texts, str(work / "model"))
            t_guide = min(t_guide, time.perf_counter() - t0)
            t0 = time.perf_counter()
            ours = nexus_eval(work / "model", data, work / f"eval-{i}")
            t_nexus = min(t_nexus, time.perf_counter() - t0)
        from transformers import AutoModelForCausalLM

        t0 = time.perf_counter()
        AutoModelForCausalLM.from_pretrained(work / "model")
        t_load = time.perf_counter() - t0
    held = ours["heldout"]
    weighted, unweighted = ours["perplexity"], held["mean_document_perplexity"]
    print(f"texts: {len(texts)} paragraphs of examples/corpus, {held['tokens_predicted']:,} tokens, "
          f"{held['bytes']:,} bytes; torch threads: {torch.get_num_threads()}")  # fmt: skip
    print(
        f"guide recipe (evaluate perplexity, re-implemented): {t_guide:8.2f} s  mean per-text perplexity {guide['mean_perplexity']:.3f}"
    )
    print(
        f"nexus eval (end to end, report included):           {t_nexus:8.2f} s  token-weighted perplexity {weighted:.3f}, {ours['bits_per_byte']:.4f} bits/byte"
    )
    print(
        f"speed-up (guide / nexus): {t_guide / t_nexus:.2f}x   (one model load costs {t_load:.2f} s; the guide pays it on every call)"
    )
    print(f"same tokens, two averages: unweighted mean of per-text perplexities {unweighted:.3f} vs token-weighted "
          f"{weighted:.3f} ({(unweighted - weighted) / weighted:+.1%})")  # fmt: skip
    gap = (guide["mean_perplexity"] - weighted) / weighted
    print(
        f"guide figure vs nexus figure: {gap:+.1%} (weighting, plus BOS-vs-EOS context and the unscored EOS)"
    )
    if not math.isfinite(weighted):
        sys.exit("nexus perplexity is not finite")


if __name__ == "__main__":
    main()
