"""Serving throughput and latency: the guide's server vs ``nexus serve`` on the same model and prompts.

    .venv/bin/python benchmarks/serve.py [--small] [--model DIR]
    .venv/bin/python benchmarks/serve.py --engines    # the engine choice: ours vs transformers' manager

The baseline is ``../shared/baselines/seed_server.py`` (the guide's FastAPI app: ``model.generate``
inside the async endpoint, one request at a time), run as shipped, and once more with
``OMP_NUM_THREADS=1`` so that the thread setting ``nexus serve`` chooses is not mistaken for the gain
of batching. Each server runs alone, as its own process on 127.0.0.1, and gets the same
deterministic prompts on its ``/generate`` endpoint (the guide's API, which both serve) at
concurrency 1, 4 and 16, from ``nexus bench serve``'s load generator; ``/health`` is probed every
0.25 s throughout. ``nexus serve`` is also measured on streamed ``/v1/completions`` for time to first
token. Generated tokens per second counts the tokens each server reports.

The model is a demo-size Llama (hidden 256, 4 layers, 8k vocabulary, random weights: speed does not
depend on the weights) with a byte-level BPE tokenizer trained on the example corpus; it is built
once under ``.bench/serve-model``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT.parent / "shared" / "baselines" / "seed_server.py"
CORPUS = ROOT / "examples" / "corpus"
OUT = ROOT / ".bench"


def build_model(out: Path) -> Path:
    """The demo-size random Llama and a tokenizer trained on the example corpus (cached)."""
    if (out / "config.json").is_file():
        return out
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    texts = []
    for path in sorted(CORPUS.glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            texts.extend(json.loads(line)["text"] for line in fh)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    special = ["<|pad|>", "<|bos|>", "<|eos|>"]
    trainer = trainers.BpeTrainer(vocab_size=8192, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    bpe.train_from_iterator(texts, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=special[1], eos_token=special[2],
                                  pad_token=special[0])  # fmt: skip
    tok.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|eos|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
    )
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=256, intermediate_size=688, num_hidden_layers=4,
        num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )  # fmt: skip
    model = LlamaForCausalLM(cfg)
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )
    tmp = out.with_name(out.name + ".tmp")
    tok.save_pretrained(tmp)
    model.save_pretrained(tmp)
    tmp.rename(out)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server process on 127.0.0.1, stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, name: str, cmd: list[str], port: int, env: dict[str, str], log: Path) -> None:
        self.name, self.url = name, f"http://127.0.0.1:{port}"
        self.log = open(log, "w")  # noqa: SIM115 - closed in __exit__
        self.proc = subprocess.Popen(
            cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=self.log
        )

    def __enter__(self) -> Server:
        import httpx

        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited during start-up; see {self.log.name}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not become healthy")

    def __exit__(self, *exc) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def compare_engines(model_dir: Path, rows: int, tokens: int, rounds: int = 3) -> dict[str, dict[str, float]]:
    """The engine decision, measured: ``BatchingEngine`` vs transformers' ``ContinuousBatchingManager``.

    Same process, same loaded model, same torch threads; ``rows`` requests of ``tokens`` sampled tokens
    (temperature 0.8, top_p 0.95, no early EOS) submitted at once; rounds alternate, medians reported.
    CPU seconds cover every thread of the process.
    """
    import asyncio
    import statistics

    from transformers import GenerationConfig
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    from nexus_llm.serve.batching import BatchingEngine
    from nexus_llm.serve.engine import SamplingParams
    from nexus_llm.serve.loading import default_threads, load_model

    lm = load_model(str(model_dir), threads=default_threads())
    prompts = [
        lm.tokenizer(f"Chapter {i}. It was a truth universally acknowledged").input_ids for i in range(rows)
    ]
    engine = BatchingEngine(lambda: lm, "bench", max_batch_size=rows)
    engine.start()
    engine.wait_ready()
    params = SamplingParams(max_tokens=tokens, temperature=0.8, top_p=0.95, ignore_eos=True)

    async def ours_async() -> int:
        async def one(ids):
            handle = engine.submit(ids, params)
            async for _ in handle:
                pass
            return handle.finished.completion_tokens

        return sum(await asyncio.gather(*(one(p) for p in prompts)))

    gen = GenerationConfig(max_new_tokens=tokens, do_sample=True, temperature=0.8, top_p=0.95, eos_token_id=-1,
                           pad_token_id=lm.pad_id)  # fmt: skip
    cb_config = ContinuousBatchingConfig(
        num_blocks=64, max_batch_tokens=1024
    )  # auto-sizing takes ~all RAM on CPU
    manager = lm.model.init_continuous_batching(generation_config=gen, continuous_batching_config=cb_config)
    manager.start()

    def theirs() -> int:
        manager.add_requests(prompts, max_new_tokens=tokens)
        done = total = 0
        while done < rows:
            out = manager.get_result(timeout=600)
            if out is not None and out.is_finished():
                done, total = done + 1, total + len(out.generated_tokens)
        return total

    runs: dict[str, list[tuple[float, float]]] = {
        "nexus BatchingEngine": [],
        "transformers ContinuousBatchingManager": [],
    }
    fns = {
        "nexus BatchingEngine": lambda: asyncio.run(ours_async()),
        "transformers ContinuousBatchingManager": theirs,
    }
    for fn in fns.values():  # warm-up
        fn()
    for _ in range(rounds):
        for name, fn in fns.items():
            wall, cpu = time.perf_counter(), time.process_time()
            n = fn()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            runs[name].append((n / wall, n / cpu))
    manager.stop(block=True, timeout=10)
    engine.shutdown()
    return {
        name: {
            "tokens_per_s": statistics.median(r[0] for r in rs),
            "tokens_per_cpu_s": statistics.median(r[1] for r in rs),
        }
        for name, rs in runs.items()
    }


def run_levels(url: str, api: str, levels: list[int], args, stream: bool = False) -> dict[int, dict]:
    from nexus_llm.serve.bench import BenchSettings, run_bench

    out = {}
    for c in levels:
        s = BenchSettings(url=url, api=api, concurrency=c, requests=max(args.min_requests, args.per_level * c),
                          prompt_words=args.prompt_words, max_tokens=args.max_tokens, stream=stream,
                          temperature=0.8, top_p=0.95, timeout_s=1800)  # fmt: skip
        r = run_bench(s)
        out[c] = r
        ttft = f", TTFT p50 {r['ttft_s']['p50'] * 1000:.0f} ms" if r["ttft_s"] else ""
        print(f"  c={c:>2}: {r['tokens_per_s']:7.1f} tok/s, p50 {r['latency_s']['p50']:.2f} s{ttft}, "
              f"/health max {r['health_s']['max'] * 1000:.0f} ms, errors {r['errors'] or 0}", flush=True)  # fmt: skip
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--small", action="store_true", help="fewer, shorter requests (a quick look)")
    p.add_argument("--model", type=Path, help="model directory [default: build the demo-size model]")
    p.add_argument("--levels", default="1,4,16", help="concurrency levels")
    p.add_argument("--skip-baseline", action="store_true")
    p.add_argument(
        "--engines", action="store_true", help="only compare the engines in-process (see compare_engines)"
    )
    args = p.parse_args()
    args.max_tokens, args.per_level, args.min_requests = (32, 1, 4) if args.small else (64, 2, 4)
    args.prompt_words = 24
    levels = [int(x) for x in args.levels.split(",")]
    OUT.mkdir(exist_ok=True)
    model = args.model or build_model(OUT / "serve-model")
    if args.engines:
        rows, tokens = (8, 32) if args.small else (16, 64)
        print(f"{rows} requests x {tokens} tokens, submitted at once (medians of 3 rounds):")
        for name, r in compare_engines(model, rows, tokens).items():
            print(f"| {name} | {r['tokens_per_s']:,.1f} | {r['tokens_per_cpu_s']:,.1f} |")
        return
    py = sys.executable
    results: dict[str, dict] = {}
    runs = [] if args.skip_baseline else [
        ("baseline", [py, str(BASELINE), "--port", "{port}"], {"MODEL_PATH": str(model)}),
        ("baseline, 1 thread", [py, str(BASELINE), "--port", "{port}"],
         {"MODEL_PATH": str(model), "OMP_NUM_THREADS": "1"}),
    ]  # fmt: skip
    runs.append(("nexus", [py, "-m", "nexus_llm.cli", "serve", str(model), "--port", "{port}"], {}))
    for name, cmd, env in runs:
        port = free_port()
        cmd = [c.replace("{port}", str(port)) for c in cmd]
        print(f"{name}: {' '.join(cmd[1:3])} ...", flush=True)
        with Server(name, cmd, port, env, OUT / f"serve-{name.split(',')[0]}.log") as server:
            results[name] = run_levels(server.url, "generate", levels, args)
            if name == "nexus":
                print("nexus, streamed /v1/completions:", flush=True)
                results["nexus stream"] = run_levels(server.url, "completions", levels, args, stream=True)
    (OUT / "serve.json").write_text(json.dumps(results, indent=2) + "\n")
    print(report(results, levels, args))


def report(results: dict[str, dict], levels: list[int], args) -> str:
    def ms(d, key):
        return "-" if not d else f"{d[key] * 1000:,.0f}"

    lines = [
        f"max_tokens {args.max_tokens}, prompts of {args.prompt_words} words, temperature 0.8, top_p 0.95",
        "",
        "| server | conc. | tokens/s | latency p50 / p90 / p99 (ms) | TTFT p50 / p99 (ms) | /health p50 / max (ms) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, by_level in results.items():
        for c in levels:
            r = by_level[c]
            lat, ttft, health = r["latency_s"], r["ttft_s"], r["health_s"]
            lines.append(
                f"| {name} | {c} | {r['tokens_per_s']:,.1f} | {ms(lat, 'p50')} / {ms(lat, 'p90')} / "
                f"{ms(lat, 'p99')} | {ms(ttft, 'p50')} / {ms(ttft, 'p99')} | {ms(health, 'p50')} / "
                f"{ms(health, 'max')} |"
            )
    if "baseline" in results:
        lines += [
            "",
            "| conc. | nexus / baseline tokens/s | nexus / baseline (1 thread) tokens/s |",
            "| ---: | ---: | ---: |",
        ]
        for c in levels:
            n = results["nexus"][c]["tokens_per_s"]
            b, b1 = results["baseline"][c]["tokens_per_s"], results["baseline, 1 thread"][c]["tokens_per_s"]
            lines.append(f"| {c} | {n / b:.1f}x | {n / b1:.1f}x |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
