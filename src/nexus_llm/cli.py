"""The ``nexus`` command: one Typer app whose sub-commands live beside each stage's code.

Stage modules (``nexus_llm/<stage>/cli.py``) define plain Typer command functions and import their
heavy dependencies (torch, pyspark, ...) inside those functions, so ``nexus --help`` stays fast.
"""

from __future__ import annotations

import errno
import sys

import typer
from rich.markup import escape

from nexus_llm import __version__
from nexus_llm.configbase import ConfigError
from nexus_llm.console import configure_output, console
from nexus_llm.data import cli as data_cli
from nexus_llm.deploy import cli as deploy_cli
from nexus_llm.eval import cli as eval_cli
from nexus_llm.models import cli as models_cli
from nexus_llm.pipeline import cli as pipeline_cli
from nexus_llm.serve import cli as serve_cli
from nexus_llm.tokenizer import cli as tokenizer_cli
from nexus_llm.train import cli as train_cli

app = typer.Typer(
    name="nexus",
    help="Nexus LLM: raw text → curated data → tokenizer → model → evaluation → served API.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
data_app = typer.Typer(help="Curate raw text and turn it into token shards.", no_args_is_help=True)
app.add_typer(data_app, name="data")

tokenizer_app = typer.Typer(help="Train and inspect tokenizers.", no_args_is_help=True)
app.add_typer(tokenizer_app, name="tokenizer")
bench_app = typer.Typer(help="Load-test and benchmark.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

data_app.command("prepare")(data_cli.prepare)
data_app.command("tokenize")(tokenizer_cli.tokenize)
tokenizer_app.command("train")(tokenizer_cli.train_tokenizer)
app.command("train")(train_cli.train)
app.add_typer(eval_cli.app, name="eval")
app.add_typer(models_cli.app, name="model")
app.command("serve")(serve_cli.serve)
bench_app.command("serve")(serve_cli.bench_serve)
app.command("run")(pipeline_cli.run)
app.command("status")(pipeline_cli.status)
runs_app = typer.Typer(
    help="Completed `nexus run` flows recorded in the tracking store (MLflow).", no_args_is_help=True
)
app.add_typer(runs_app, name="runs")
runs_app.command("list")(pipeline_cli.runs_list)
app.add_typer(deploy_cli.app, name="aws")


def _version(value: bool) -> None:
    if value:
        print(f"nexus {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Also show the libraries' progress bars, INFO logs and warnings."
    ),
) -> None:
    """Nexus LLM."""
    configure_output(verbose)


# Which extra provides a third-party module, for a helpful message when one is not installed.
EXTRAS = {
    "ftfy": "data", "scipy": "data", "py3langid": "data", "phonenumbers": "data",
    "pyspark": "spark", "py4j": "spark",
    "torch": "model", "transformers": "model", "tokenizers": "model", "safetensors": "model",
    "accelerate": "train", "peft": "train", "tensorboard": "train", "matplotlib": "train", "mlflow": "train",
    "lm_eval": "eval",
    "fastapi": "serve", "uvicorn": "serve", "httpx": "serve", "prometheus_client": "serve",
    "boto3": "aws", "botocore": "aws", "troposphere": "aws",
    "sqlalchemy": "registry", "alembic": "registry",
}  # fmt: skip


STORAGE_UNREACHABLE_EXIT_CODE = 3
"""Exit status when the object store could not be reached: nothing to fix in the command; run it again."""


def _fail(label: str, message: str, code: int) -> None:
    console.print(f"[bold red]{label}[/]: {escape(message)}", soft_wrap=True)  # messages are not markup
    sys.exit(code)


def main() -> None:
    """Console-script entry: user errors (a full disk included) print a clear message and exit 2,
    without a traceback; an object store that stops answering prints what happened and what to do,
    and exits 3."""
    try:
        app()
    except ModuleNotFoundError as err:
        extra = EXTRAS.get((err.name or "").split(".")[0])
        if extra is None:
            raise
        _fail(
            "missing dependency",
            f"this command needs {err.name!r}. Install it with: pip install 'nexus-llm[{extra}]' "
            "(or 'nexus-llm[all]')",
            2,
        )
    except ConfigError as err:
        _fail("config error", str(err), 2)
    except FileNotFoundError as err:
        _fail("not found", str(err), 2)
    except Exception as err:
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:  # a full disk, said plainly
            _fail("disk full", err.strerror if err.strerror and not err.filename else str(err), 2)
        from nexus_llm.storage import unreachable

        if (message := unreachable(err)) is None:
            raise
        _fail("storage error", message, STORAGE_UNREACHABLE_EXIT_CODE)


if __name__ == "__main__":
    main()
