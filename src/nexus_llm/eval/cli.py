"""``nexus eval MODEL -o EVALDIR`` and ``nexus eval compare A B``.

Both forms live in one Typer group. A group whose callback took MODEL would read ``compare`` as a model
path, so the group is a small click subclass instead: anything that is not a sub-command name is handed
to the default ``run`` command (``nexus eval MODEL`` = ``nexus eval run MODEL``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from typer.core import TyperGroup

from nexus_llm.cliopts import schema_option, set_option
from nexus_llm.configbase import ConfigError
from nexus_llm.console import console
from nexus_llm.errors import UserError
from nexus_llm.eval.config import EvalConfig

if TYPE_CHECKING:  # annotations only: typer vendors its own click, which need not be installed
    import click


class _DefaultRunGroup(TyperGroup):
    """Dispatch ``nexus eval MODEL ...`` to ``run``; ``compare`` (and ``run``) stay sub-commands."""

    default_command = "run"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)

    def get_usage(self, ctx: click.Context) -> str:
        path = ctx.command_path
        return f"Usage: {path} MODEL -o EVALDIR [OPTIONS]\n       {path} compare A B [OPTIONS]"


app = typer.Typer(
    cls=_DefaultRunGroup,
    no_args_is_help=True,
    help="Evaluate a model: held-out perplexity and bits per byte, lm-eval tasks, sample generations, "
    "and a report.\n\n`nexus eval MODEL -o EVALDIR` evaluates (the `run` command); "
    "`nexus eval compare A B` puts two evaluations side by side.",
)


def _opt(field: str, *flags: str):
    return schema_option(EvalConfig, field, "eval", *flags)


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Unreadable or unwritable paths and S3 access problems become an ``EvalError`` that says what to
    check (the CLI prints it and exits 2); anything else is a bug and keeps its traceback."""
    from nexus_llm.eval.errors import as_eval_error

    try:
        yield
    except UserError:
        raise
    except Exception as err:
        mapped = as_eval_error(err)
        if mapped is None:
            raise
        raise mapped from None


def _effective_config(config: Path | None, overrides: dict, sets: list[str] | None = None):
    """The ``eval:`` section of ``config`` (or the defaults) with ``--set`` and command-line values on top."""
    from nexus_llm.config import load_config
    from nexus_llm.configbase import with_overrides

    given = {k: v for k, v in overrides.items() if v != [] and v != {}}
    return with_overrides(load_config(config, sets).eval, "eval options", **given)


def _task_data(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, folder = pair.partition("=")
        if not sep or not name or not folder:
            raise ConfigError(f"--task-data {pair!r}: use TASK=FOLDER, e.g. --task-data mrpc=data/glue/mrpc")
        out[name] = folder
    return out


@app.command("run")
def evaluate(
    model: str | None = typer.Argument(
        None,
        help="Hugging Face model directory, local or s3:// (with --endpoint: optional, for its tokenizer)",
    ),
    output: str = typer.Option(..., "-o", "--output", help="evaluation directory to write (local or s3://)"),
    config: Path | None = typer.Option(None, "-c", "--config", help="nexus.yaml; its eval: section"),
    data: str | None = _opt("data"),
    split: str | None = _opt("split"),
    runs: str | None = _opt("runs"),
    perplexity: bool | None = _opt("perplexity", "--perplexity/--no-perplexity"),
    tasks: list[str] = typer.Option(
        [], "--task", "-t", help="lm-eval task: built-in name, task YAML, or name in --task-dir (repeat)"
    ),
    task_dirs: list[str] = typer.Option([], "--task-dir", help="folder of task YAMLs (repeat)"),
    task_data: list[str] = typer.Option(
        [], "--task-data", help="TASK=FOLDER: read a task's split files from a local folder (repeat)"
    ),
    limit: int | None = _opt("limit"),
    max_tokens: int | None = _opt("max_tokens"),
    context_length: int | None = _opt("context_length"),
    stride: int | None = _opt("stride"),
    first_token: str | None = _opt("first_token"),
    batch_size: int | None = _opt("batch_size"),
    num_fewshot: int | None = _opt("num_fewshot"),
    bootstrap_iters: int | None = _opt("bootstrap_iters"),
    prompts: list[str] = typer.Option([], "--prompt", "-p", help="prompt for a sample generation (repeat)"),
    max_new_tokens: int | None = _opt("max_new_tokens"),
    temperature: float | None = _opt("temperature"),
    device: str | None = _opt("device"),
    dtype: str | None = _opt("dtype"),
    seed: int | None = _opt("seed"),
    sets: list[str] | None = set_option(),
    endpoint: str | None = typer.Option(
        None,
        "--endpoint",
        help="score the model served at this URL (nexus serve, vLLM) through lm-eval's local-completions "
        "instead of loading weights; tasks and samples only (NEXUS_API_KEY for a server with keys)",
    ),
) -> None:
    """Evaluate MODEL (or the model served at --endpoint) into EVALDIR: results.json, report.html, manifest.json."""
    from nexus_llm.eval.run import run_eval

    overrides = {
        "data": data, "split": split, "runs": runs, "perplexity": perplexity, "tasks": tasks,
        "task_dirs": task_dirs, "limit": limit, "max_tokens": max_tokens, "context_length": context_length,
        "stride": stride, "first_token": first_token, "batch_size": batch_size, "num_fewshot": num_fewshot,
        "bootstrap_iters": bootstrap_iters, "prompts": prompts, "max_new_tokens": max_new_tokens,
        "temperature": temperature, "device": device, "dtype": dtype, "seed": seed,
    }  # fmt: skip
    with _user_errors():
        overrides["task_data"] = _task_data(task_data)
        cfg = _effective_config(config, overrides, sets)
        if endpoint is not None:
            from nexus_llm.eval.endpoint import run_endpoint_eval

            manifest = run_endpoint_eval(cfg, endpoint, output, tokenizer=model)
        elif model is None:
            raise ConfigError("give MODEL (a model directory) or --endpoint URL (a served model)")
        else:
            manifest = run_eval(cfg, model, output)
    _summary(manifest, output)


def _summary(manifest: dict, output: str) -> None:
    from nexus_llm.console import table
    from nexus_llm.eval.compare import load_results
    from nexus_llm.eval.report import fmt

    results = load_results(output)
    rows = [("perplexity", fmt(results["perplexity"])), ("bits per byte", fmt(results["bits_per_byte"]))]
    for task, entry in sorted(results["tasks"].items()):
        rows += [(f"{task} {m}", fmt(v)) for m, v in entry["metrics"].items()]
    rows.append(("seconds", f"{manifest['seconds']:.1f}"))
    console.print(table(f"eval → {output}", ["metric", "value"], rows))


@app.command("compare")
def compare_cmd(
    a: str = typer.Argument(..., help="evaluation directory (or results.json) A"),
    b: str = typer.Argument(..., help="evaluation directory (or results.json) B"),
    as_json: bool = typer.Option(False, "--json", help="print the rows as JSON on stdout"),
) -> None:
    """Two evaluations side by side: A, B, B − A, relative change, and which is better."""
    from nexus_llm.console import table
    from nexus_llm.eval.compare import compare, heldout_note, load_results
    from nexus_llm.eval.report import fmt

    with _user_errors():
        ra, rb = load_results(a), load_results(b)
    rows = compare(ra, rb)
    if as_json:
        print(json.dumps({"a": a, "b": b, "rows": rows}, indent=2))
        return
    shown = [
        (
            r["metric"],
            fmt(r["a"]),
            fmt(r["b"]),
            f"{r['diff']:+.4f}" if r["diff"] is not None else "–",
            f"{r['rel']:+.1%}" if r["rel"] is not None else "–",
            r["better"] or "–",
        )
        for r in rows
    ]
    console.print(table(f"A = {a}\nB = {b}", ["metric", "A", "B", "B − A", "change", "better"], shown))
    note = heldout_note(ra, rb)
    if note:
        console.print(f"[yellow]note[/]: {note}")
