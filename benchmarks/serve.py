"""Serving throughput and latency on a real model: the guide's server, llama.cpp and ``nexus serve``.

    .venv/bin/python benchmarks/serve.py                   # SmolLM2-135M-Instruct, c = 1, 4, 16, 64
    .venv/bin/python benchmarks/serve.py --levels 1,16 --rounds 2
    .venv/bin/python benchmarks/serve.py --engines         # the engine choice: ours vs transformers' manager
    .venv/bin/python benchmarks/serve.py --kernels         # linear kernels and the fast runner, in-process

Servers, each alone in its own process on 127.0.0.1, started fresh for every measurement:

1. the guide's server, ``../shared/baselines/seed_server.py`` as shipped (``model.generate`` inside the
   async endpoint, one request at a time; fp32), on its ``/generate`` API (no streaming, so no TTFT);
   not run at concurrency 64 by default (one request at a time: 128 requests take minutes);
2. llama.cpp's ``llama-server`` on a BF16 GGUF (the same precision as ``nexus serve`` picks on a CPU
   with AVX512-BF16), written by llama.cpp's own ``convert_hf_to_gguf.py`` from the imported model;
3. ``llama-server`` on the Q4_1 GGUF the model was imported from (llama.cpp's quantized kernels), and on
   a Q8_0 GGUF written by the same converter (the peer of ``--quantize w8a8``: 8-bit weights, and
   activations rounded to 8 bits in blocks of 32);
4. ``nexus serve MODEL`` with default flags, and with ``--quantize w8a8``.

llama.cpp is built from the sources vendored in the ``llama-cpp-python`` sdist (``pip download
--no-binary``), ``cmake --build build --target llama-server`` (about 4 minutes on 2 cores), once, under
``$NEXUS_CACHE/llamacpp`` (default ``~/.cache/nexus_llm/llamacpp``); the conversion needs the ``gguf`` and
``sentencepiece`` packages (``pip install nexus-llm[dev]``). It runs with ``-t``/``-tb`` = the cores
``nexus serve`` uses, ``-np`` = the concurrency (one slot per client) and 256 context tokens per slot.

Load: ``nexus bench serve``'s closed-loop generator, the same deterministic 24-word prompts for every
server, ``max_tokens`` 64, temperature 0.8, top_p 0.95, ``ignore_eos`` where the server has it (llama.cpp,
nexus: every request generates 64 tokens), streamed ``/v1/completions`` for llama.cpp and nexus;
max(8, 2 x concurrency) requests per level after two warm-up requests; ``/health`` probed every 0.25 s.
Servers alternate: each level runs every server in turn, in an order rotated from level to level, and
``--rounds`` repeats the whole sweep (medians are reported).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT.parent / "shared" / "baselines" / "seed_server.py"
CORPUS = ROOT / "examples" / "corpus"
OUT = ROOT / ".bench"
GGUF_Q4 = ROOT / ".cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
LLAMA_CPP_PYTHON = "0.3.36"  # the llama-cpp-python sdist whose vendored llama.cpp is built
CACHE = Path(os.environ.get("NEXUS_CACHE", Path.home() / ".cache" / "nexus_llm")) / "llamacpp"


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
        try:
            return self._wait_healthy()
        except BaseException:  # __exit__ is not called when __enter__ raises: stop the process here
            self.__exit__()
            raise

    def _wait_healthy(self) -> Server:
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

    from nexus_llm.serve.engine.base import SamplingParams
    from nexus_llm.serve.engine.batching import BatchingEngine
    from nexus_llm.serve.engine.loading import default_threads, load_model

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


def kernels(model_dir: Path) -> str:
    """The in-process numbers behind the runner's weight choices (wall-clock ms, best of three, with the
    threads and dtype ``nexus serve`` picks on this machine).

    1. every weight matrix of :class:`~nexus_llm.serve.engine.llama.LlamaRunner` once (q/k/v and gate/up
       fused, as the runner holds them) at 1, 16 and 64 rows, through each path of ``Linear``: the dense
       weights (prepacked for oneDNN), int4 (the output layer stays dense, as in the runner), int8
       weight-only and w8a8;
    2. what each costs in accuracy where it is used, in generation: SmolLM2's log-loss on 400 tokens of
       this repository's README fed one token per decode step, and how often the next-token argmax
       equals float32's;
    3. one decode step of transformers' forward vs ``LlamaRunner`` (dense weights).
    """
    import warnings

    from nexus_llm.serve.engine.loading import configure_openmp, default_dtype, default_threads

    configure_openmp()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

    from nexus_llm.serve.engine import llama, native
    from nexus_llm.serve.engine.runner import Work

    warnings.filterwarnings("ignore")
    torch.set_num_threads(default_threads())
    dtype = default_dtype(False)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).eval()
    m32 = (
        model
        if dtype == torch.float32
        else AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    )

    def runner(m, quantize: str = "none"):
        r = llama.LlamaRunner(m, context_length=1024, kv_budget_bytes=1 << 30, quantize=quantize)
        for lin in llama.all_linears(r.lm_head, r.layers):
            lin.max_rows = 64 if lin.low_bits else 0  # every step through the copy under test
        return r

    def best_ms(fn, rounds: int = 3) -> float:
        fn()
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times) * 1000

    name = str(dtype).removeprefix("torch.")
    built = native.kernels()

    @contextlib.contextmanager
    def torch_kernels():
        """The runner as it is without the native kernels (no compiler, or NEXUS_NATIVE_KERNELS=0)."""
        saved, llama.kernels = llama.kernels, lambda: None
        try:
            yield
        finally:
            llama.kernels = saved

    # (label, quantize, path, native kernels on)
    paths = [(f"{name}, prepacked for oneDNN (dense)", "none", "dense", False),
             ("int4, torch's kernel (bf16 activations)", "int4", "low", False),
             ("int4, native (int8 block activations)", "int4", "low", True),
             ("int8 weight-only, torch's _weight_int8pack_mm (per channel)", "int8", "low", False),
             ("int8 weight-only, native (blocks of 32, int8 block activations)", "int8", "low", True),
             ("w8a8: int8 weights, per-token int8 activations (oneDNN)", "w8a8", "low", False)]  # fmt: skip
    if built is None:
        paths = [p for p in paths if not p[3]]
    lines = [
        f"threads {torch.get_num_threads()}, dense dtype {name}, native kernels: "
        + (built.__file__ if built else f"off ({native.unavailable_reason() or 'build failed'})"),
        "",
        "| weight matrices (all once) | 1 row (ms) | 16 rows (ms) | 64 rows (ms) |",
        "| --- | ---: | ---: | ---: |",
    ]
    with torch.inference_mode():
        for label, quantize, path, on in paths:
            with contextlib.nullcontext() if on else torch_kernels():
                r = runner(model, quantize)
            lins = llama.all_linears(r.lm_head, r.layers)
            if path == "low" and not any(lin.low_bits for lin in lins):
                lines.append(f"| {label} | not available in this torch build | | |")
                continue
            cols = []
            for rows in (1, 16, 64):
                xs = {k: torch.randn(rows, k, dtype=dtype) for k in {lin.in_features for lin in lins}}
                # (int4 leaves the output layer dense unless it is 4-bit already)
                calls = [
                    (lin.low if path == "low" and lin.low_bits else lin.dense, xs[lin.in_features])
                    for lin in lins
                ]
                cols.append(best_ms(lambda calls=calls: [f(x) for f, x in calls]))
            lines.append(f"| {label} | {cols[0]:.1f} | {cols[1]:.1f} | {cols[2]:.1f} |")
        ids = AutoTokenizer.from_pretrained(model_dir)((ROOT / "README.md").read_text())["input_ids"][:400]

        def decode_loss(r) -> tuple[float, torch.Tensor]:
            r.add(0, 512)
            rows = [r.forward([Work(0, ids[:1], 0, "last")])[0]]
            rows += [r.forward([Work(0, [t], i, "last")])[0] for i, t in enumerate(ids[1:-1], start=1)]
            lp = torch.cat(rows).float().log_softmax(-1)
            return float(-lp.gather(-1, torch.tensor(ids[1:])[:, None]).mean()), lp.argmax(-1)

        _, base = decode_loss(runner(m32))
        lines += ["", "| decode steps through | log-loss (nats/token) | next-token argmax = float32's |",
                  "| --- | ---: | ---: |"]  # fmt: skip
        for label, m, quantize, on in (
            ("float32", m32, "none", False), (f"{name} (nexus default dense)", model, "none", False),
            ("int4, torch's kernel", m32, "int4", False), ("int4, native", m32, "int4", True),
            ("int4 layers + 8-bit block output layer, native (`auto` on a 4-bit model)", m32, "auto", True),
            ("int8 weight-only, torch's kernel", m32, "int8", False), ("int8 weight-only, native", m32, "int8", True),
            ("w8a8", m32, "w8a8", False)):  # fmt: skip
            if on and built is None:
                continue
            with contextlib.nullcontext() if on else torch_kernels():
                r = runner(m, quantize)
            value, arg = decode_loss(r)
            lines.append(f"| {label} | {value:.3f} | {(arg == base).float().mean():.1%} |")
        lines += [
            "",
            f"| decode step, {name}, 60-token contexts | 1 row (ms) | 16 rows (ms) |",
            "| --- | ---: | ---: |",
        ]
        hf, ours = [], []
        r = runner(model)
        for rows in (1, 16):
            cache = DynamicCache(config=model.config)
            model(input_ids=torch.full((rows, 60), 5), cache=cache, use_cache=True, logits_to_keep=1)
            step = torch.full((rows, 1), 7)

            def hf_step(cache=cache, step=step):
                model(input_ids=step, cache=cache, use_cache=True, logits_to_keep=1)
                cache.crop(-1)  # back to the 60-token context

            hf.append(best_ms(hf_step))
            for k in range(rows):
                r.add(k, 128)
            r.forward([Work(k, [5] * 60, 0, "none") for k in range(rows)])
            ours.append(best_ms(lambda rows=rows: r.forward([Work(k, [7], 60) for k in range(rows)])))
            for k in range(rows):
                r.remove(k)
        lines.append(f"| transformers forward | {hf[0]:.1f} | {hf[1]:.1f} |")
        lines.append(f"| nexus LlamaRunner | {ours[0]:.1f} | {ours[1]:.1f} |")
    return "\n".join(lines)


def llama_server() -> Path:
    """llama.cpp's server binary, built once from the llama-cpp-python sdist's vendored sources."""
    import tarfile

    src = CACHE / f"llama_cpp_python-{LLAMA_CPP_PYTHON}" / "vendor" / "llama.cpp"
    binary = src / "build" / "bin" / "llama-server"
    if binary.is_file():
        return binary
    CACHE.mkdir(parents=True, exist_ok=True)
    sdist = CACHE / f"llama_cpp_python-{LLAMA_CPP_PYTHON}.tar.gz"
    if not sdist.is_file():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                        f"llama-cpp-python=={LLAMA_CPP_PYTHON}", "-d", str(CACHE)], check=True)  # fmt: skip
    with tarfile.open(sdist) as tar:
        tar.extractall(CACHE, filter="data")
    print(f"building llama-server in {src} (about 4 minutes on 2 cores) ...", flush=True)
    subprocess.run(["cmake", "-B", "build", "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF",
                    "-DLLAMA_BUILD_EXAMPLES=OFF", "-DGGML_NATIVE=ON", "-DCMAKE_BUILD_TYPE=Release"],
                   cwd=src, check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    subprocess.run(["cmake", "--build", "build", "--target", "llama-server", f"-j{os.cpu_count() or 2}"],
                   cwd=src, check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    return binary


def smollm2(out: Path) -> Path:
    """SmolLM2-135M-Instruct imported from its GGUF (``nexus model import``), once."""
    if (out / "config.json").is_file():
        return out
    from nexus_llm.models.importer import import_model

    import_model(str(GGUF_Q4), str(out))
    return out


def bf16_gguf(model_dir: Path, out: Path, outtype: str = "bf16") -> Path:
    """A BF16 (or ``outtype``: q8_0) GGUF of ``model_dir`` written by llama.cpp's own converter, once."""
    if out.is_file():
        return out
    src = llama_server().parents[2]
    tmp = out.with_suffix(".tmp")
    with open(OUT / f"convert-{outtype}.log", "w") as log:
        subprocess.run([sys.executable, str(src / "convert_hf_to_gguf.py"), str(model_dir), "--outtype", outtype,
                        "--outfile", str(tmp)], check=True, stdout=log, stderr=log)  # fmt: skip
    tmp.rename(out)
    return out


def servers(
    model: Path, threads: int, with_baseline: bool, poll0: bool = False
) -> list[tuple[str, str, Callable]]:
    """(name, api, command for a concurrency and port) of every server compared, the guide's first."""
    py = sys.executable
    out: list[tuple[str, str, Callable]] = []
    if with_baseline:
        out.append(("guide's server", "generate",
                    lambda c, port: ([py, str(BASELINE), "--port", str(port)], {"MODEL_PATH": str(model)})))  # fmt: skip
    binary = llama_server()
    bf16 = bf16_gguf(model, OUT / "smollm2-bf16.gguf")
    q8 = bf16_gguf(model, OUT / "smollm2-q8_0.gguf", "q8_0")
    variants = [("llama.cpp BF16", bf16, []), ("llama.cpp Q4_1", GGUF_Q4, []), ("llama.cpp Q8_0", q8, [])]
    if poll0:  # llama.cpp's threads busy-poll for work by default (--poll 50); 0 makes them wait passively
        variants.append(("llama.cpp BF16 --poll 0", bf16, ["--poll", "0"]))
    for name, gguf, extra in variants:
        out.append((name, "completions", lambda c, port, gguf=gguf, extra=extra: (
            [str(binary), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port), "-t", str(threads),
             "-tb", str(threads), "-np", str(c), "-c", str(256 * c), "--no-webui", *extra], {})))  # fmt: skip
    for name, flags in (("nexus serve", []), ("nexus serve --quantize w8a8", ["--quantize", "w8a8"])):
        out.append((name, "completions", lambda c, port, flags=flags: (
            [py, "-m", "nexus_llm.cli", "serve", str(model), "--port", str(port), *flags], {})))  # fmt: skip
    return out


def measure(url: str, api: str, c: int, args) -> dict:
    from nexus_llm.bench.loadgen import BenchSettings, run_bench

    def settings(n: int) -> BenchSettings:
        stream = api != "generate"
        return BenchSettings(url=url, api=api, concurrency=c, requests=n, prompt_words=24, max_tokens=64,
                             stream=stream, temperature=0.8, top_p=0.95, ignore_eos=stream, timeout_s=1800)  # fmt: skip

    run_bench(settings(2))  # warm-up
    return run_bench(settings(max(8, 2 * c)))


def run_real(args) -> dict:
    from nexus_llm.serve.engine.loading import default_threads

    model = smollm2(OUT / "smollm2")
    threads = default_threads()
    levels = [int(x) for x in args.levels.split(",")]
    table = servers(model, threads, not args.skip_baseline, args.llama_poll0)
    if args.only:
        wanted = {n.strip() for n in args.only.split(",")}
        table = [t for t in table if t[0] in wanted]
    results: dict[str, dict[int, list[dict]]] = {name: {c: [] for c in levels} for name, _, _ in table}
    for r in range(args.rounds):
        for i, c in enumerate(levels):
            order = table[(i + r) % len(table) :] + table[: (i + r) % len(table)]
            for name, api, command in order:
                if name == "guide's server" and c > args.baseline_max:
                    continue
                port = free_port()
                cmd, env = command(c, port)
                print(f"round {r + 1}, c={c}: {name}", flush=True)
                log = OUT / f"serve-{re.sub(r'[^A-Za-z0-9.]+', '-', name).strip('-')}.log"  # one per row
                with Server(name, cmd, port, env, log) as s:
                    result = measure(s.url, api, c, args)
                results[name][c].append(result)
                print(f"  {result['tokens_per_s']:8.1f} tok/s, errors {result['errors'] or 0}, "
                      f"/health max {result['health_s']['max'] * 1000:.0f} ms", flush=True)  # fmt: skip
    return {"levels": levels, "threads": threads, "rounds": args.rounds, "results": results,
            "llama_cpp": f"llama-cpp-python {LLAMA_CPP_PYTHON} sdist (vendored llama.cpp)"}  # fmt: skip


def report_real(data: dict) -> str:
    import statistics

    def med(runs: list[dict], *path: str) -> float | None:
        values = []
        for r in runs:
            v = r
            for key in path:
                v = v.get(key) if isinstance(v, dict) else None
            if v is not None:
                values.append(v)
        return statistics.median(values) if values else None

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v * 1000:,.0f}"

    lines = [
        "| server | conc. | tokens/s | TTFT p50 / p99 (ms) | inter-token p50 / p99 (ms) | /health p50 / max (ms) | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    tps: dict[str, dict[int, float]] = {}
    for name, by_level in data["results"].items():
        for c in data["levels"]:
            runs = by_level.get(c) or by_level.get(str(c)) or []
            if not runs:
                continue
            t = med(runs, "tokens_per_s")
            tps.setdefault(name, {})[c] = t
            errors = sum(sum(r["errors"].values()) for r in runs)
            lines.append(
                f"| {name} | {c} | {t:,.1f} | {ms(med(runs, 'ttft_s', 'p50'))} / {ms(med(runs, 'ttft_s', 'p99'))} | "
                f"{ms(med(runs, 'itl_s', 'p50'))} / {ms(med(runs, 'itl_s', 'p99'))} | "
                f"{ms(med(runs, 'health_s', 'p50'))} / {ms(max(r['health_s']['max'] for r in runs))} | {errors} |"
            )
    nexus, bf16, guide = (
        tps.get("nexus serve", {}),
        tps.get("llama.cpp BF16", {}),
        tps.get("guide's server", {}),
    )
    lines += ["", "| conc. | nexus / llama.cpp BF16 | nexus / llama.cpp Q4_1 | nexus / guide's server |",
              "| ---: | ---: | ---: | ---: |"]  # fmt: skip
    q4 = tps.get("llama.cpp Q4_1", {})

    def ratio(c: int, other: dict[int, float]) -> str:
        n = nexus.get(c)
        return f"{n / other[c]:.2f}x" if n and other.get(c) else "-"

    for c in data["levels"]:
        lines.append(f"| {c} | {ratio(c, bf16)} | {ratio(c, q4)} | {ratio(c, guide)} |")
    w8a8, q8 = tps.get("nexus serve --quantize w8a8", {}), tps.get("llama.cpp Q8_0", {})
    if w8a8:
        lines += ["", "| conc. | nexus --quantize w8a8 / llama.cpp BF16 | nexus --quantize w8a8 / llama.cpp Q8_0 |",
                  "| ---: | ---: | ---: |"]  # fmt: skip
        for c in data["levels"]:
            cells = [f"{w8a8[c] / o[c]:.2f}x" if w8a8.get(c) and o.get(c) else "-" for o in (bf16, q8)]
            lines.append(f"| {c} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--levels", default="1,4,16,64", help="concurrency levels")
    p.add_argument("--rounds", type=int, default=1, help="sweeps of all levels and servers (medians)")
    p.add_argument("--skip-baseline", action="store_true", help="leave out the guide's server")
    p.add_argument("--baseline-max", type=int, default=16, help="highest concurrency for the guide's server")
    p.add_argument(
        "--llama-poll0", action="store_true", help="add llama.cpp BF16 with --poll 0 (no busy-polling)"
    )
    p.add_argument("--only", help="comma-separated server names to run (e.g. 'nexus serve,llama.cpp BF16')")
    p.add_argument("--engines", action="store_true", help="only compare the engines in-process (demo model)")
    p.add_argument("--kernels", action="store_true", help="only the in-process kernel and runner timings")
    p.add_argument("--small", action="store_true", help="with --engines: fewer, shorter requests")
    args = p.parse_args()
    OUT.mkdir(exist_ok=True)
    if args.engines:
        rows, tokens = (8, 32) if args.small else (16, 64)
        print(f"{rows} requests x {tokens} tokens, submitted at once (medians of 3 rounds):")
        for name, r in compare_engines(build_model(OUT / "serve-model"), rows, tokens).items():
            print(f"| {name} | {r['tokens_per_s']:,.1f} | {r['tokens_per_cpu_s']:,.1f} |")
        return
    if args.kernels:
        print(kernels(smollm2(OUT / "smollm2")))
        return
    data = run_real(args)
    (OUT / "serve.json").write_text(json.dumps(data, indent=2) + "\n")
    print(report_real(data))


if __name__ == "__main__":
    main()
