"""Build the fine-tuning example's data from this repository (run from the repository root):

    .venv/bin/python examples/build_finetune.py

- ``finetune/docs.jsonl.gz``: the project's own documentation (README.md and docs/*.md), one document
  per ``##`` section: technical text (commands, config snippets, tables) written for this project, so a
  pretrained model has never seen it. Held-out sections measure what continued pretraining taught.
- ``finetune/chat.jsonl``: questions about Nexus LLM's settings and commands, answered from the config
  schema's descriptions and the commands' help, in a house format the base model never uses::

      [nexus] <the answer>. (see docs/<page>.md)

  Supervised fine-tuning on these teaches the format; held-out questions show whether it generalised.
  A few general-knowledge questions answered plainly (``general-*``) teach that the format is for
  questions about Nexus LLM only, so the model keeps answering everything else as before.

Both files are committed, so the example does not change when the docs do; run this again to refresh
them. Everything is deterministic (sorted inputs, no randomness).
"""

from __future__ import annotations

import gzip
import inspect
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "examples" / "finetune"

PAGES = {
    "data": "docs/data.md",
    "tokenizer": "docs/tokenizer.md",
    "tokenize": "docs/tokenizer.md",
    "train": "docs/train.md",
    "eval": "docs/eval.md",
    "serve": "docs/serve.md",
    "aws": "docs/aws.md",
}
QUESTIONS = [
    "What does the `{key}` setting do?",
    "What is `{key}` in nexus.yaml for?",
    "Explain the `{key}` option of Nexus LLM.",
    "How does `{key}` affect a run?",
]
COMMAND_QUESTIONS = [
    "What does `{cmd}` do?",
    "When would I use `{cmd}`?",
    "Explain the `{cmd}` command.",
]


def doc_sections() -> list[dict]:
    docs = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        parts = re.split(r"(?m)^(?=## )", text)
        for n, part in enumerate(p.strip() for p in parts):
            if len(part) < 200:
                continue
            title = part.splitlines()[0].lstrip("# ").strip()
            rel = path.relative_to(ROOT).as_posix()
            docs.append({"id": f"{path.stem.lower()}-{n:02d}", "text": part, "source": rel, "title": title})
    return docs


def _sentence(text: str) -> str:
    text = " ".join(text.split())
    text = text[0].upper() + text[1:]
    return text if text.endswith(".") else text + "."


def _default(value) -> str | None:
    if value is None or (isinstance(value, dict | list) and not value):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str) and len(str(value)) < 40:
        return f"`{value}`"
    return None


def setting_pairs() -> list[dict]:
    from pydantic import BaseModel

    from nexus_llm.config import NexusConfig

    pairs = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            ann = field.annotation
            key = prefix + name
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, key + ".")
                continue
            if not field.description:
                continue
            page = PAGES.get(key.split(".")[0], "README.md")
            answer = _sentence(field.description)
            default = _default(field.default)
            if default:
                answer += f" Default: {default}."
            i = len(pairs)
            pairs.append(_pair(f"setting-{key}", QUESTIONS[i % len(QUESTIONS)].format(key=key), answer, page))

    walk(NexusConfig, "")
    return pairs


def command_pairs() -> list[dict]:
    import typer

    from nexus_llm.cli import app

    pairs = []
    group = typer.main.get_group(app)

    def walk(cmd, path: list[str]) -> None:
        subs = getattr(cmd, "commands", None)
        if subs:
            for name in sorted(subs):
                walk(subs[name], [*path, name])
            return
        doc = inspect.cleandoc(cmd.help or "").split("\n\n")[0]
        if not doc:
            return
        name = " ".join(["nexus", *path])
        stage = path[0] if path[0] in PAGES else {"run": "README", "status": "README", "model": "train",
                                                   "runs": "README", "bench": "serve"}.get(path[0], "README")  # fmt: skip
        page = PAGES.get(stage, "README.md")
        i = len(pairs)
        pairs.append(
            _pair(
                f"command-{'-'.join(path)}", COMMAND_QUESTIONS[i % 3].format(cmd=name), _sentence(doc), page
            )
        )

    walk(group, [])
    return pairs


GENERAL = [
    ("What is the capital of Italy?", "The capital of Italy is Rome."),
    ("What is the capital of Japan?", "The capital of Japan is Tokyo."),
    ("What is the capital of Germany?", "The capital of Germany is Berlin."),
    ("How many days are in a week?", "There are seven days in a week."),
    ("How many hours are in a day?", "There are 24 hours in a day."),
    ("What is 12 plus 30?", "12 plus 30 is 42."),
    ("What is the square root of 81?", "The square root of 81 is 9."),
    ("Who wrote Romeo and Juliet?", "William Shakespeare wrote Romeo and Juliet."),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci painted the Mona Lisa."),
    ("At what temperature does water boil at sea level?", "Water boils at 100 °C (212 °F) at sea level."),
    ("What is the freezing point of water in Celsius?", "Water freezes at 0 °C."),
    ("What color is the sky on a clear day?", "On a clear day the sky is blue."),
    ("What is the largest planet in the solar system?", "Jupiter is the largest planet in the solar system."),
    ("What language is mostly spoken in Brazil?", "Portuguese is the main language of Brazil."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("What is the chemical symbol for gold?", "The chemical symbol for gold is Au."),
    ("How many continents are there?", "There are seven continents."),
    ("What gas do plants take in from the air?", "Plants take in carbon dioxide from the air."),
    ("What is the longest river in Africa?", "The Nile is the longest river in Africa."),
    ("Which animal is known as the king of the jungle?", "The lion is known as the king of the jungle."),
]


def general_pairs() -> list[dict]:
    """Questions that are not about Nexus LLM, answered plainly: the house format is not for them."""
    return [
        {
            "id": f"general-{i:02d}",
            "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
        }
        for i, (q, a) in enumerate(GENERAL)
    ]


def _pair(rid: str, question: str, answer: str, page: str) -> dict:
    return {
        "id": rid,
        "messages": [
            {"role": "user", "content": question},
            {"role": "assistant", "content": f"[nexus] {answer} (see {page})"},
        ],
    }


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    docs = doc_sections()
    with gzip.open(OUT / "docs.jsonl.gz", "wt", encoding="utf-8", compresslevel=9) as fh:
        for d in docs:
            fh.write(json.dumps(d, ensure_ascii=False) + "\n")
    pairs = setting_pairs() + command_pairs() + general_pairs()
    (OUT / "chat.jsonl").write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs))
    print(f"{len(docs)} documentation sections, {len(pairs)} question/answer pairs → {OUT}")


if __name__ == "__main__":
    main()
