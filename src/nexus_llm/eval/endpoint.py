"""``nexus eval --endpoint URL``: evaluate a served model, the way the guide's evaluation step intends.

The tasks run through lm-evaluation-harness's own ``local-completions`` model (``LocalCompletionsAPI``):
it sends each context + continuation as token ids to ``/v1/completions`` with ``echo``, ``logprobs: 1``
and ``max_tokens: 1``, and reads the continuation's log-likelihood from the prompt's logprobs. Any
OpenAI-compatible server that returns prompt logprobs works (``nexus serve``, vLLM); on ``nexus serve``
the scores equal in-process ``nexus eval`` on the same weights and precision (a test checks it within
1e-3).

Tokens: with ``MODEL`` given (a local model directory) its tokenizer encodes the requests; without it
the server's own tokenizer is used through ``/tokenize`` (lm-eval's remote tokenizer, one call per
text, slower). The served model's name comes from ``/v1/models``; a server with API keys needs
``NEXUS_API_KEY`` (or ``OPENAI_API_KEY``) in the environment.

What an endpoint cannot give: held-out perplexity and bits per byte need the weights (``nexus eval
MODEL``), so they are left empty; the sample generations are asked of the endpoint.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from typing import Any

from nexus_llm import __version__, storage
from nexus_llm.eval.config import EvalConfig
from nexus_llm.eval.errors import EvalError

MAX_BATCH = 16
"""Prompts per request: ``nexus serve`` accepts up to ``max_prompts`` (16 by default) in one completion."""


def _api_key() -> str | None:
    return os.environ.get("NEXUS_API_KEY") or os.environ.get("OPENAI_API_KEY") or None


def base_url(url: str) -> str:
    """The server root: ``http://host:port`` from that or from ``.../v1`` / ``.../v1/completions``."""
    url = url.rstrip("/")
    for suffix in ("/v1/completions", "/v1/chat/completions", "/v1"):
        url = url.removesuffix(suffix)
    if not url.startswith(("http://", "https://")):
        raise EvalError(f"--endpoint {url!r}: give the server's URL, e.g. http://127.0.0.1:8080")
    return url


def describe(url: str, api_key: str | None = None) -> dict[str, Any]:
    """The served model's name and context length (``/v1/models``, ``/tokenizer_info``)."""
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=30.0) as client:
            models = client.get("/v1/models")
            if models.status_code == 401:
                raise EvalError(f"{url} needs an API key: set NEXUS_API_KEY to one of the server's keys")
            models.raise_for_status()
            name = models.json()["data"][0]["id"]
            info = client.get("/tokenizer_info")
            context = info.json().get("model_max_length") if info.status_code == 200 else None
    except httpx.HTTPError as err:
        raise EvalError(f"cannot reach the endpoint {url}: {type(err).__name__}: {err}") from None
    except (KeyError, IndexError, ValueError) as err:
        raise EvalError(
            f"{url}/v1/models did not list a model ({err}): is this an OpenAI-compatible server?"
        ) from None
    return {
        "name": name,
        "context": context if isinstance(context, int) else None,
        "remote_tokenizer": info.status_code == 200,
    }


def endpoint_lm(url: str, cfg: EvalConfig, tokenizer: str | None = None, api_key: str | None = None):
    """lm-eval's ``LocalCompletionsAPI`` pointed at ``url`` (see the module docstring)."""
    from lm_eval.models.openai_completions import LocalCompletionsAPI

    served = describe(url, api_key)
    if tokenizer is None and not served["remote_tokenizer"]:
        raise EvalError(
            f"{url} has no /tokenizer_info, so its tokenizer cannot be used remotely: pass the model "
            "directory (nexus eval MODEL --endpoint URL) for its tokenizer"
        )
    kwargs: dict[str, Any] = {
        "base_url": f"{url}/v1/completions",
        "model": served["name"],
        "tokenizer_backend": "huggingface" if tokenizer else "remote",
        "batch_size": min(cfg.batch_size, MAX_BATCH),
        "max_length": served["context"] or 2048,
        "max_gen_toks": cfg.max_new_tokens,
        "seed": cfg.seed,
        "max_retries": 2,
        "timeout": 600,
    }
    if tokenizer:
        kwargs["tokenizer"] = tokenizer
    if api_key:
        kwargs["header"] = {"Authorization": f"Bearer {api_key}"}
        kwargs["auth_token"] = api_key
    return LocalCompletionsAPI(**kwargs), served


def run_endpoint_tasks(lm, cfg: EvalConfig) -> dict[str, Any]:
    """``cfg.tasks`` on an lm-eval model object (the harness module's task lookup and result format)."""
    from lm_eval import simple_evaluate

    from nexus_llm.eval import harness

    harness._quiet_harness()
    manager, specs = harness.prepare(cfg.tasks, cfg.task_dirs, cfg.task_data)
    loaded = [obj for spec in specs for obj in harness._load(manager, spec)]
    try:
        result = simple_evaluate(
            model=lm, tasks=loaded, task_manager=manager, num_fewshot=cfg.num_fewshot, limit=cfg.limit,
            bootstrap_iters=cfg.bootstrap_iters, log_samples=False, random_seed=cfg.seed,
            numpy_random_seed=cfg.seed, torch_random_seed=cfg.seed, fewshot_random_seed=cfg.seed,
        )  # fmt: skip
    except harness._task_errors() as err:
        raise EvalError(harness._task_failure_message(err, [s.name for s in specs])) from err
    return harness.normalize(result)


def endpoint_samples(
    url: str, model: str, cfg: EvalConfig, api_key: str | None = None
) -> list[dict[str, Any]]:
    """One completion per prompt, asked of the endpoint (greedy when ``cfg.temperature`` is 0)."""
    import httpx

    if not cfg.prompts:
        return []
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    body = {"model": model, "prompt": cfg.prompts, "max_tokens": cfg.max_new_tokens,
            "temperature": cfg.temperature, "top_p": cfg.top_p, "seed": cfg.seed}  # fmt: skip
    start = time.perf_counter()
    try:
        r = httpx.post(f"{url}/v1/completions", json=body, headers=headers, timeout=600.0)
        r.raise_for_status()
        choices = sorted(r.json()["choices"], key=lambda c: c["index"])
    except (httpx.HTTPError, KeyError, ValueError) as err:
        raise EvalError(f"sample generations from {url} failed: {err}") from None
    seconds = round(time.perf_counter() - start, 3)
    return [
        {"prompt": p, "completion": c["text"], "new_tokens": None, "batch_seconds": seconds}
        for p, c in zip(cfg.prompts, choices, strict=True)
    ]


def run_endpoint_eval(
    cfg: EvalConfig, endpoint: str, output_uri: str, tokenizer: str | None = None
) -> dict[str, Any]:
    """Evaluate the model served at ``endpoint`` into ``output_uri``; returns the manifest (written last)."""
    from nexus_llm.console import console
    from nexus_llm.eval.report import render_report
    from nexus_llm.eval.run import REPORT, RESULTS, create_output_dir

    started = time.perf_counter()
    url = base_url(endpoint)
    key = _api_key()
    if not cfg.tasks and not cfg.prompts:
        raise EvalError("nothing to evaluate at an endpoint: give --task (and/or --prompt)")
    create_output_dir(output_uri)
    lm, served = endpoint_lm(url, cfg, tokenizer, key)
    console.print(f"[bold]eval[/] endpoint {url}, model {served['name']}")
    results: dict[str, Any] = {"perplexity": None, "bits_per_byte": None, "heldout": None, "tasks": {}}
    if cfg.tasks:
        console.print(f"[bold]eval[/] lm-eval tasks (local-completions): {', '.join(cfg.tasks)}")
        results["tasks"] = run_endpoint_tasks(lm, cfg)
    results["samples"] = endpoint_samples(url, served["name"], cfg, key)
    settings = {**cfg.model_dump(), "perplexity": False, "endpoint": url, "tokenizer": tokenizer or "remote"}
    results.update(
        model=url,
        model_digest=None,
        device=f"endpoint ({served['name']})",
        training=None,
        endpoint={"url": url, "model": served["name"], "tokenizer": tokenizer or "remote"},
        settings=settings,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        nexus_version=__version__,
        seconds=time.perf_counter() - started,
    )
    storage.remove(storage.join(output_uri, storage.MANIFEST))
    storage.write_json_atomic(storage.join(output_uri, RESULTS), results)
    storage.write_text_atomic(storage.join(output_uri, REPORT), render_report(results, None))
    manifest = {
        "stage": "eval",
        "model": url,
        "model_digest": None,
        "endpoint": results["endpoint"],
        "data": None,
        "data_digest": None,
        "runs": None,
        "settings": settings,
        "outputs": [RESULTS, REPORT],
        "perplexity": None,
        "bits_per_byte": None,
        "tasks": sorted(results["tasks"]),
        "seconds": results["seconds"],
        "created": results["created"],
    }
    storage.write_manifest(output_uri, manifest)
    return manifest
