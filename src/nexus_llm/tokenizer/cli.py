"""``nexus tokenizer train`` and ``nexus data tokenize``."""

from __future__ import annotations

from pathlib import Path

import typer

from nexus_llm.cliopts import schema_option, set_option
from nexus_llm.configbase import with_overrides
from nexus_llm.console import console, progress, table
from nexus_llm.errors import UserError
from nexus_llm.tokenizer.config import TokenizeConfig, TokenizerConfig

CONFIG_OPT = typer.Option(None, "-c", "--config", help="nexus.yaml with tokenizer:/tokenize: sections.")


def train_tokenizer(
    data: str = typer.Argument(
        ..., help="Curated data directory (local or s3://) from `nexus data prepare`."
    ),
    output: str = typer.Option(..., "-o", "--output", help="Tokenizer directory to write (local or s3://)."),
    config: Path | None = CONFIG_OPT,
    vocab_size: int | None = schema_option(TokenizerConfig, "vocab_size", "tokenizer"),
    overrides: list[str] | None = set_option(),
) -> None:
    """Train a byte-level BPE tokenizer on curated data (loads with AutoTokenizer.from_pretrained)."""
    from nexus_llm.config import load_config
    from nexus_llm.tokenizer.bpe import run_tokenizer_train

    cfg = load_config(config, overrides).tokenizer
    cfg = with_overrides(cfg, "tokenizer", vocab_size=vocab_size)
    with console.status("training BPE tokenizer"):
        try:
            manifest = run_tokenizer_train(cfg, data, output)
        except ValueError as err:
            raise UserError(str(err)) from None
    specials = manifest["special_tokens"]
    console.print(
        table(
            f"tokenizer → {output}",
            ["", "value"],
            [
                ["vocabulary", manifest["vocab_size"]],
                ["documents trained on", manifest["trained_on"]["documents"]],
                ["bytes trained on", manifest["trained_on"]["bytes"]],
                *[[f"{k} token", f"{v[0]} = {v[1]}"] for k, v in specials.items()],
                ["seconds", manifest["seconds"]],
            ],
        )
    )


def tokenize(
    data: str = typer.Argument(
        ..., help="Curated data directory (local or s3://) from `nexus data prepare`."
    ),
    tokenizer: str = typer.Option(
        ..., "--tokenizer", help="Tokenizer directory from `nexus tokenizer train`."
    ),
    output: str = typer.Option(..., "-o", "--output", help="Token directory to write (local or s3://)."),
    config: Path | None = CONFIG_OPT,
    val_fraction: float | None = schema_option(TokenizeConfig, "val_fraction", "tokenize"),
    overrides: list[str] | None = set_option(),
) -> None:
    """Encode curated documents into packed token shards (EOS after each document) with meta.json."""
    from nexus_llm.config import load_config
    from nexus_llm.tokenizer.curated import count_rows, open_curated
    from nexus_llm.tokenizer.encode import run_tokenize

    cfg = load_config(config, overrides).tokenize
    cfg = with_overrides(cfg, "tokenize", val_fraction=val_fraction)
    total = count_rows(open_curated(data))
    with progress() as bar:
        task = bar.add_task("tokenizing", total=total)
        try:
            meta = run_tokenize(cfg, data, tokenizer, output, lambda n: bar.advance(task, n))
        except ValueError as err:
            raise UserError(str(err)) from None
    rows = [
        [split, s["documents"], s["tokens"], s["bytes"], len(s["files"])]
        for split, s in meta["splits"].items()
    ]
    console.print(
        table(
            f"tokens → {output} ({meta['dtype']})", ["split", "documents", "tokens", "bytes", "shards"], rows
        )
    )
    console.print(
        f"{meta['tokens_per_second']:,.0f} tokens/s, {meta['bytes_per_second'] / 1e6:,.2f} MB/s "
        f"in {meta['seconds']:.1f} s"
    )
