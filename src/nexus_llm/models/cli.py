"""``nexus model import`` and ``nexus model info``."""

from __future__ import annotations

import json

import typer

from nexus_llm.console import console, table

app = typer.Typer(help="Bring a pretrained model in (GGUF, Hugging Face, s3://, model.tar.gz) and inspect it.",
                  no_args_is_help=True)  # fmt: skip

_INFO_ROWS = [
    ("architecture", "architecture"),
    ("parameters", "parameters"),
    ("layers", "layers"),
    ("hidden size", "hidden_size"),
    ("attention heads (KV)", None),
    ("context", "context_length"),
    ("dtype", "dtype"),
    ("vocabulary", "vocab_size"),
    ("tied embeddings", "tied_embeddings"),
    ("chat template", "chat_template"),
]


def _rows(info: dict) -> list[list]:
    rows = []
    for label, key in _INFO_ROWS:
        if key is None:
            value = f"{info.get('attention_heads')} ({info.get('kv_heads')})"
        else:
            value = info.get(key)
            if isinstance(value, bool):
                value = "yes" if value else "no"
        rows.append([label, value])
    return rows


@app.command("import")
def import_(
    source: str = typer.Argument(
        ..., help="A .gguf file, a Hugging Face model directory, an s3:// prefix or file, or a model.tar.gz."
    ),
    output: str = typer.Option(..., "-o", "--output", help="Model directory to write (local or s3://)."),
    dtype: str = typer.Option(
        "auto", help="Weights dtype: auto (the source's; bfloat16 for GGUF), bfloat16, float16 or float32."
    ),
) -> None:
    """Import a pretrained model into a Hugging Face directory that train, eval and serve all read."""
    from nexus_llm.models.importer import import_model

    manifest = import_model(source, output, dtype)
    rows = [*_rows(manifest["info"]), ["source digest", manifest["source"]["digest"][:23] + "…"],
                                      ["seconds", manifest["seconds"]], ["directory", output]]  # fmt: skip
    console.print(table("model imported", ["", "value"], rows))


@app.command("info")
def info(
    model: str = typer.Argument(..., help="A model directory (local or s3://)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout instead of a table."),
) -> None:
    """Architecture, parameters, context, dtype, vocabulary and chat template of a model directory."""
    from nexus_llm.models.info import model_info
    from nexus_llm.models.loading import resolve_model

    details = model_info(resolve_model(model))
    if as_json:
        print(json.dumps(details, indent=2))
    else:
        console.print(table(model, ["", "value"], _rows(details)))
