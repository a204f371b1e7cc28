"""The evaluation stage as a library function: ``run_eval(config, model, output) -> manifest``.

The model is loaded once and shared by the perplexity pass, lm-eval (through ``HFLM``) and the sample
generations. Outputs: ``results.json`` and ``report.html``, then ``manifest.json`` last.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from nexus_llm import __version__, storage
from nexus_llm.console import console, progress
from nexus_llm.eval.config import EvalConfig
from nexus_llm.eval.errors import EvalError
from nexus_llm.eval.results import REPORT, RESULTS
from nexus_llm.workspace import beside_model


def context_token(tokenizer, first_token: str) -> tuple[str, int]:
    """The token a document is scored after (see ``perplexity`` module docstring)."""
    bos = tokenizer.bos_token_id
    if first_token == "auto":
        adds_bos = bos is not None and tokenizer("a")["input_ids"][:1] == [bos]
        first_token = "bos" if adds_bos else "eos"
    if first_token == "bos":
        if bos is None:
            raise EvalError("first_token is 'bos' but the tokenizer has no BOS token; use 'eos' or 'auto'.")
        return "bos", bos
    return "eos", tokenizer.eos_token_id


def heldout_scores(model, tokenizer, cfg: EvalConfig, data_uri: str) -> dict[str, Any]:
    """Perplexity and bits per byte of the held-out documents, with what was scored and how."""
    from nexus_llm.eval.data import load_heldout
    from nexus_llm.eval.perplexity import plan_windows, score_documents, with_context
    from nexus_llm.modelinfo import context_length

    model_ctx = context_length(model.config, tokenizer)
    ctx = cfg.context_length or model_ctx
    if ctx > model_ctx:
        raise EvalError(f"context_length {ctx} is longer than the model's {model_ctx} positions.")
    stride = cfg.stride or max(ctx // 2, 1)
    if stride >= ctx:
        raise EvalError(f"stride {stride} must be smaller than the context length {ctx}.")
    name, ctx_id = context_token(tokenizer, cfg.first_token)
    held = load_heldout(data_uri, tokenizer, cfg.split, cfg.limit, cfg.max_tokens)
    if not held.documents or held.bytes == 0:
        raise EvalError(f"{data_uri} holds no held-out text to score.")
    n_windows = sum(len(plan_windows(len(with_context(d, ctx_id)), ctx, stride)) for d in held.documents)
    start = time.perf_counter()
    with progress() as bar:
        task = bar.add_task("perplexity", total=n_windows)
        scores = score_documents(
            model,
            held.documents,
            ctx_id,
            ctx,
            stride,
            cfg.batch_size,
            tokenizer.pad_token_id,
            on_batch=lambda n: bar.advance(task, n),
        )
    seconds = time.perf_counter() - start
    return {
        "perplexity": scores.perplexity,
        "bits_per_byte": scores.bits_per_byte(held.bytes),
        "heldout": {
            "source": held.source,
            "kind": held.kind,
            "split": held.info.get("split"),
            "digest": held.digest,
            "complete": held.complete,
            "documents": len(held.documents),
            "tokens_predicted": scores.tokens,
            "bytes": held.bytes,
            "bytes_source": held.bytes_source,
            "nll_nats": scores.nll,
            "mean_document_perplexity": scores.mean_document_perplexity,
            "context_length": ctx,
            "stride": stride,
            "windows": n_windows,
            "first_token": name,
            "context_token_id": ctx_id,
            "seconds": seconds,
            "tokens_per_second": scores.tokens / max(seconds, 1e-9),
        },
    }


def create_output_dir(output_uri: str) -> None:
    """Create the output directory up front, so that a bad ``-o`` fails before the evaluation, not after."""
    try:
        storage.makedirs(output_uri)
    except OSError as err:
        raise EvalError(
            f"cannot create the output directory {output_uri!r}: {err}. "
            "-o names a directory to create or reuse, where you can write."
        ) from None


def _reusable(output_uri: str, digest: str, cfg: EvalConfig, data_uri: str | None) -> dict[str, Any] | None:
    """An earlier complete evaluation of the same model, data and settings in ``output_uri``, if any."""
    old = storage.read_manifest(output_uri)
    if (
        old
        and old.get("model_digest") == digest
        and old.get("data") == data_uri
        and old.get("settings") == cfg.model_dump(mode="json")
    ):
        return old
    return None


def training_overlap(data_uri: str | None) -> dict[str, Any] | None:
    """The decontamination report of the curated data the evaluated model trained on, when known: the
    held-out data's curated input (a token directory records it), or the curated directory itself."""
    from nexus_llm.data.decontaminate import overlap_report

    if not data_uri:
        return None
    try:
        meta = storage.read_json(storage.join(data_uri, "meta.json"))
        curated = (meta.get("input") or {}).get("uri")
    except FileNotFoundError:
        curated = data_uri
    if not curated:
        return None
    try:
        return overlap_report(curated)
    except (FileNotFoundError, ValueError):
        return None


def baseline_summary(baseline_uri: str) -> dict[str, Any]:
    """What a fine-tuned model's results keep of its base model's evaluation, for the comparison."""
    base = storage.read_json(storage.join(baseline_uri, RESULTS))
    return {
        "uri": baseline_uri,
        "model": base.get("model"),
        "perplexity": base.get("perplexity"),
        "bits_per_byte": base.get("bits_per_byte"),
        "heldout_digest": (base.get("heldout") or {}).get("digest"),
        "tasks": base.get("tasks") or {},
        "samples": base.get("samples") or [],
        "chat_samples": base.get("chat_samples") or [],
    }


def run_eval(
    cfg: EvalConfig,
    model_uri: str,
    output_uri: str,
    reuse: bool = False,
    baseline_uri: str | None = None,
) -> dict[str, Any]:
    """Evaluate ``model_uri`` into ``output_uri``; returns the manifest (written last).

    ``reuse``: keep an earlier complete evaluation of the same model (by content), data and settings.
    ``baseline_uri``: an evaluation of the model this one was fine-tuned from, shown beside it.
    """
    from nexus_llm.eval.generate import generate_chat_samples, generate_samples
    from nexus_llm.eval.harness import run_tasks
    from nexus_llm.eval.model import load_model, local_model_dir, model_digest
    from nexus_llm.eval.report import read_training_log, render_report, training_summary

    started = time.perf_counter()
    local = local_model_dir(model_uri)  # a wrong model path is reported before anything else
    data_uri = cfg.data or beside_model(model_uri, "tokens", "meta.json")
    if reuse:
        old = _reusable(output_uri, model_digest(local), cfg, data_uri)
        if old is not None:
            console.print(
                f"[bold]eval[/] {model_uri}: evaluated before with these settings, kept {output_uri}"
            )
            return old
    if cfg.perplexity and data_uri is None:
        raise EvalError(
            "no held-out data: pass --data with a token directory (`nexus data tokenize`) or curated "
            "Parquet data, or --no-perplexity to skip perplexity."
        )
    runs_uri = cfg.runs or beside_model(model_uri, "runs", "metrics.jsonl")
    create_output_dir(output_uri)
    console.print(f"[bold]eval[/] loading {model_uri}")
    model, tokenizer, device = load_model(local, model_uri, cfg.device, cfg.dtype)
    results: dict[str, Any] = {"perplexity": None, "bits_per_byte": None, "heldout": None}
    if cfg.perplexity:
        results.update(heldout_scores(model, tokenizer, cfg, data_uri))
    results["tasks"] = {}
    if cfg.tasks:
        console.print(f"[bold]eval[/] lm-eval tasks: {', '.join(cfg.tasks)}")
        results["tasks"] = run_tasks(model, tokenizer, cfg, limit=cfg.limit)
    results["samples"] = generate_samples(
        model, tokenizer, cfg.prompts, cfg.max_new_tokens, cfg.temperature, cfg.top_p, cfg.seed
    )
    results["chat_samples"] = generate_chat_samples(
        model, tokenizer, cfg.chat_prompts, cfg.max_new_tokens, cfg.temperature, cfg.top_p, cfg.seed
    )
    results["baseline"] = baseline_summary(baseline_uri) if baseline_uri else None
    results["training_overlap"] = training_overlap(data_uri)
    training_log = read_training_log(runs_uri) if runs_uri else None
    results.update(
        model=str(model_uri),
        model_digest=model_digest(local),
        device=device,
        training=training_summary(training_log),
        settings={**cfg.model_dump(), "data": data_uri, "runs": runs_uri},
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        nexus_version=__version__,
        seconds=time.perf_counter() - started,
    )
    # an older run's manifest goes first: a rerun that dies while writing must not look complete
    storage.remove(storage.join(output_uri, storage.MANIFEST))
    storage.write_json_atomic(storage.join(output_uri, RESULTS), results)
    storage.write_text_atomic(storage.join(output_uri, REPORT), render_report(results, training_log))
    manifest = {
        "stage": "eval",
        "model": str(model_uri),
        "model_digest": results["model_digest"],
        "data": data_uri,
        "data_digest": (results["heldout"] or {}).get("digest"),
        "runs": runs_uri,
        "settings": cfg.model_dump(mode="json"),
        "outputs": [RESULTS, REPORT],
        "perplexity": results["perplexity"],
        "bits_per_byte": results["bits_per_byte"],
        "baseline": {k: (results["baseline"] or {}).get(k) for k in ("uri", "perplexity", "bits_per_byte")}
        if baseline_uri
        else None,
        "tasks": sorted(results["tasks"]),
        "seconds": results["seconds"],
        "created": results["created"],
    }
    storage.write_manifest(output_uri, manifest)
    return manifest
