"""Decontamination: planted copies of task examples and of held-out documents are removed or flagged."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from nexus_llm.config import ConfigError, parse_config
from nexus_llm.data import decontaminate
from nexus_llm.data.config import DataConfig
from nexus_llm.data.prepare import run_prepare
from nexus_llm.tokenizer.shards import split_of
from support.corpora import example_texts
from support.curated import read

ROOT = Path(__file__).resolve().parents[2]
TASK = ROOT / "examples" / "tasks" / "paraphrase_local.yaml"


def _task_examples(n: int = 12) -> list[dict]:
    rng = random.Random(4)
    words = sorted({w.strip(".,;:!?").lower() for t in example_texts(50) for w in t.split() if w.isalpha()})
    return [
        {"idx": i, "question": " ".join(rng.choice(words) for _ in range(18)) + "?",
         "answer": " ".join(rng.choice(words) for _ in range(10)), "label": i % 2}
        for i in range(n)
    ]  # fmt: skip


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    """A corpus with planted copies of task examples and of held-out documents, and a task folder."""
    base = tmp_path_factory.mktemp("decon")
    tasks = base / "tasks"
    tasks.mkdir()
    examples = _task_examples()
    (tasks / "qa.jsonl").write_text("".join(json.dumps(e) + "\n" for e in examples))
    (tasks / "qa.yaml").write_text(
        "task: qa_local\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    validation: qa.jsonl\n"
        "output_type: multiple_choice\ndoc_to_text: !function utils.doc_to_text\n"
    )
    texts = [t for t in example_texts() if len(t.split()) > 200][:400]
    docs = [{"id": f"doc-{i}", "text": t} for i, t in enumerate(texts)]
    val = [d for d in docs if split_of(d["id"], 0.05, 0) == "val"]
    assert len(val) >= 5
    rng = random.Random(9)
    planted = {}
    train = [d for d in docs if split_of(d["id"], 0.05, 0) == "train"]
    for i, e in enumerate(examples[:6]):  # a task question (18 words) or answer (10 words) pasted into a doc
        host = train[40 + i]
        piece = e["question"] if i % 2 == 0 else e["answer"].upper() + "!"
        host["text"] += "\n\n" + piece
        planted[host["id"]] = "sources"
    for i, v in enumerate(val[:5]):  # 40 words of a held-out document inside a training document
        words = v["text"].split()
        start = rng.randint(0, len(words) - 41)
        host = train[100 + i]
        host["text"] += "\n\nAs quoted: " + " ".join(words[start : start + 40])
        planted[host["id"]] = "heldout_split"
    src = base / "corpus.jsonl"
    src.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return base, src, tasks, planted, examples, val


def _cfg(tasks: Path, **extra) -> DataConfig:
    data = {"decontaminate": {"sources": [str(tasks / "qa.yaml")], "val_fraction": 0.05, **extra}}
    data["dedup"] = {"near": {"enabled": False}}
    return DataConfig.model_validate(data)


def test_planted_copies_are_removed(scenario, tmp_path):
    _, src, tasks, planted, _, val = scenario
    m = run_prepare([str(src)], str(tmp_path / "out"), _cfg(tasks), workers=2)
    rejected = {r["id"]: r["reason"] for r in read(tmp_path / "out", "rejected")}
    for doc_id, kind in planted.items():
        assert rejected.get(doc_id) == f"decontaminate.{kind}", doc_id
    kept = {r["id"] for r in read(tmp_path / "out")}
    assert {v["id"] for v in val} <= kept  # the held-out documents themselves stay
    removed = {k: v for k, v in m["removed"].items() if k.startswith("decontaminate.")}
    assert removed == {"decontaminate.sources": 6, "decontaminate.heldout_split": 5}
    assert m["records_in"] == m["records_out"] + sum(m["removed"].values()) + m["quarantined"]
    report = decontaminate.overlap_report(str(tmp_path / "out"))
    assert report["ngram"] == 13 and report["documents"] == 11
    by_source = {s["source"]: s for s in report["sources"]}
    qa = by_source[str(tasks / "qa.yaml")]
    assert qa["texts"] == 24 and qa["checked"] == 24 and qa["texts_found"] == 6 and qa["documents"] == 6
    held = by_source["heldout_split"]
    assert held["texts"] == len(val) and held["texts_found"] == 5 and held["documents"] == 5


def test_flag_keeps_documents_and_marks_them(scenario, tmp_path):
    _, src, tasks, planted, _, _ = scenario
    m = run_prepare([str(src)], str(tmp_path / "out"), _cfg(tasks, action="flag"), workers=1)
    assert not any(k.startswith("decontaminate.") for k in m["removed"])
    flagged = {r["id"]: json.loads(r["meta"])["contaminated"] for r in read(tmp_path / "out") if r["meta"]}
    assert flagged == {doc_id: f"decontaminate.{kind}" for doc_id, kind in planted.items()}
    assert m["decontamination"]["documents"] == len(planted)


def test_common_ngrams_are_boilerplate_not_leaks(tmp_path):
    footer = "this message and any attachments are confidential and intended solely for the named recipient"
    texts = [
        f"Ticket {i}: " + " ".join(example_texts(40)[i].split()[:80]) + f"\n\n{footer}." for i in range(30)
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": f"t{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    (tmp_path / "eval.jsonl").write_text(json.dumps({"text": footer.upper()}) + "\n")
    cfg = DataConfig.model_validate({"decontaminate": {"sources": [str(tmp_path / "eval.jsonl")]}})
    m = run_prepare([str(src)], str(tmp_path / "out"), cfg, workers=1)
    assert not any(k.startswith("decontaminate") for k in m["removed"])
    assert m["decontamination"]["common_ngrams_ignored"] > 0
    few = DataConfig.model_validate(
        {"decontaminate": {"sources": [str(tmp_path / "eval.jsonl")], "max_train_docs": 100}}
    )
    m2 = run_prepare([str(src)], str(tmp_path / "out2"), few, workers=1)
    assert m2["removed"].get("decontaminate.sources") == 30


def test_missing_source_fails_before_any_work(scenario, tmp_path):
    _, src, tasks, _, _, _ = scenario
    out = tmp_path / "out"
    cfg = DataConfig.model_validate({"decontaminate": {"sources": [str(tmp_path / "nope.jsonl")]}})
    with pytest.raises(FileNotFoundError, match=r"data\.decontaminate\.sources"):
        run_prepare([str(src)], str(out), cfg, workers=1)
    assert not out.exists()
    hub = tmp_path / "hub.yaml"
    hub.write_text("task: hellaswag_copy\ndataset_path: hellaswag\n")
    with pytest.raises(ConfigError, match="dataset hub"):
        run_prepare(
            [str(src)], str(out), DataConfig.model_validate({"decontaminate": {"sources": [str(hub)]}})
        )
    assert not out.exists()
    broken = tmp_path / "broken"
    shutil.copytree(tasks, broken)
    (broken / "qa.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match=r"qa\.jsonl"):
        run_prepare(
            [str(src)],
            str(out),
            DataConfig.model_validate({"decontaminate": {"sources": [str(broken / "qa.yaml")]}}),
        )


def test_the_held_out_split_follows_tokenize():
    cfg = parse_config({"tokenize": {"val_fraction": 0.02, "split_seed": 3}})
    assert (cfg.data.decontaminate.val_fraction, cfg.data.decontaminate.split_seed) == (0.02, 3)
    with pytest.raises(ConfigError, match="taken from tokenize"):
        parse_config({"data": {"decontaminate": {"val_fraction": 0.5}}})
    assert not DataConfig().decontaminate.uses_split  # no tokenize section: no held-out split


def test_task_texts_include_every_string_field():
    names, texts, owner = decontaminate.read_texts(
        DataConfig.model_validate({"decontaminate": {"sources": [str(TASK)]}}).decontaminate
    )
    assert names == [str(TASK)] and len(texts) == 80 and set(owner) == {0}
