"""The ``nexus`` command: one Typer app whose sub-commands live beside each stage's code.

Stage modules (``nexus_llm/<stage>/cli.py``) define plain Typer command functions and import their
heavy dependencies (torch, pyspark, ...) inside those functions, so ``nexus --help`` stays fast.
"""

from __future__ import annotations

import typer
from rich.markup import escape
from typer.core import TyperGroup

from nexus_llm import __version__
from nexus_llm.bench import cli as bench_cli
from nexus_llm.console import configure_output, console
from nexus_llm.data import cli as data_cli
from nexus_llm.deploy import cli as deploy_cli
from nexus_llm.errors import exit_for
from nexus_llm.eval import cli as eval_cli
from nexus_llm.models import cli as models_cli
from nexus_llm.pipeline import cli as pipeline_cli
from nexus_llm.serve import cli as serve_cli
from nexus_llm.tokenizer import cli as tokenizer_cli
from nexus_llm.train import cli as train_cli


class NexusGroup(TyperGroup):
    """The root command group: the one place where an error a command raised becomes a message and an
    exit status (``errors.exit_for``), for the console script and for ``CliRunner`` alike."""

    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort):
            raise
        except Exception as err:
            if (shown := exit_for(err)) is None:
                raise
            label, message, code = shown
            console.print(
                f"[bold red]{label}[/]: {escape(message)}", soft_wrap=True
            )  # messages are not markup
            raise typer.Exit(code) from None


app = typer.Typer(
    cls=NexusGroup,
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
bench_app.command("serve")(bench_cli.bench_serve)
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


def main() -> None:
    """Console-script entry (``nexus``); errors are mapped to messages and exit codes in ``NexusGroup``."""
    app()


if __name__ == "__main__":
    main()
