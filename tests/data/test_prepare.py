"""``nexus data prepare`` end to end on the local engine: quality, accounting, determinism, resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nexus_llm import storage
from nexus_llm.data.config import DataConfig
from nexus_llm.data.prepare import run_prepare
from support import planted
from support.curated import read

from .conftest import full_config


def test_planted_problems_are_resolved_and_originals_kept(prepared):
    corpus, out, _ = prepared
    score = planted.score(corpus, [r["id"] for r in read(out)])
    assert score["exact_pairs"] > 50 and score["near_pairs"] > 30 and score["junk"] > 50
    assert score["exact_resolved"] >= 0.95
    assert score["near_resolved"] >= 0.90
    assert score["junk_removed"] >= 0.90
    assert score["originals_kept"] >= 0.93


def test_manifest_reconciles_and_every_malformed_line_is_quarantined(prepared):
    corpus, out, m = prepared
    assert m["records_in"] == len(corpus.lines)
    assert m["records_in"] == m["records_out"] + sum(m["removed"].values()) + m["quarantined"]
    assert m["records_out"] == len(read(out))
    assert sum(m["removed"].values()) == len(read(out, "rejected"))
    quarantined = read(out, "quarantine")
    assert len(quarantined) == m["quarantined"] == corpus.malformed > 0
    assert {q["error"].split(":")[0] for q in quarantined} == {
        "invalid_json", "invalid_utf8", "missing_text", "text_not_string",
    }  # fmt: skip
    source = read(out)[0]["source"]
    assert all(q["file"] == source and q["line"] > 0 and q["raw"] for q in quarantined)
    for key in ("engine", "settings", "files", "seconds", "inputs"):
        assert key in m


def test_rejected_rows_name_the_filter_or_the_survivor(prepared):
    corpus, out, _ = prepared
    kept = {r["id"] for r in read(out)}
    rejected = read(out, "rejected")
    assert all(r["reason"] for r in rejected)
    dups = [r for r in rejected if r["reason"] in ("exact_duplicate", "near_duplicate")]
    # a survivor is kept, unless decontamination removed it later (its copies are gone with it)
    reason_of = {r["id"]: r["reason"] for r in rejected}
    assert dups and all(
        r["duplicate_of"] in kept or reason_of[r["duplicate_of"]].startswith("decontaminate.") for r in dups
    )
    for r in dups:
        if r["id"] in corpus.ref and corpus.ref[r["id"]] in kept:
            assert r["duplicate_of"] == corpus.ref[r["id"]]
    filtered = [r for r in rejected if r["reason"] not in ("exact_duplicate", "near_duplicate")]
    assert all(r["duplicate_of"] is None and "." in r["reason"] for r in filtered)


def test_output_columns_and_repaired_text(prepared):
    corpus, out, _ = prepared
    rows = read(out)
    assert set(rows[0]) == {"id", "text", "source", "meta"}
    mojibake = [r for r in rows if corpus.category.get(r["id"]) == "mojibake"]
    assert all("Ã" not in r["text"] for r in mojibake)


def test_kept_ids_do_not_depend_on_workers_or_split_size(prepared, tmp_path):
    _, out, _ = prepared
    path = Path(read(out)[0]["source"])
    cfg = full_config(shard_size_mb=0.2)
    m = run_prepare([str(path)], str(tmp_path / "one"), cfg, workers=1)
    assert m["splits"] > 3
    assert [r["id"] for r in read(tmp_path / "one")] == [r["id"] for r in read(out)]
    assert sorted((r["id"], r["reason"]) for r in read(tmp_path / "one", "rejected")) == sorted(
        (r["id"], r["reason"]) for r in read(out, "rejected")
    )
    sizes = [os.path.getsize(tmp_path / "one" / f) for f in m["files"]["part"]]
    assert max(sizes) < 0.2 * (1 << 20)


def test_rerun_is_a_no_op_and_a_settings_change_redoes_the_work(prepared, tmp_path):
    _, out, _ = prepared
    src = read(out)[0]["source"]
    first = run_prepare([src], str(tmp_path / "o"), DataConfig(), workers=2)
    again = run_prepare([src], str(tmp_path / "o"), DataConfig(), workers=2)
    assert again.get("up_to_date") and again["digest"] == first["digest"]
    changed = DataConfig.model_validate({"filters": {"length": {"min_chars": 500}}})
    third = run_prepare([src], str(tmp_path / "o"), changed, workers=2)
    assert not third.get("up_to_date") and third["records_out"] < first["records_out"]
    assert not (tmp_path / "o" / "_work").exists()


def _run_cli(inp: Path, out: Path, config: Path) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "nexus_llm.cli",
        "data",
        "prepare",
        str(inp),
        "-o",
        str(out),
        "-c",
        str(config),
    ]
    return subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _snapshot(out: Path) -> dict[str, bytes]:
    m = storage.read_manifest(str(out))
    names = [f for kind in ("part", "rejected", "quarantine") for f in m["files"][kind]]
    return {name: (out / name).read_bytes() for name in names}


@pytest.fixture(scope="module")
def clean_cli_run(prepared, tmp_path_factory):
    """A clean CLI run with small splits, and its source and config."""
    _, out, _ = prepared
    src = Path(read(out)[0]["source"])
    base = tmp_path_factory.mktemp("clean-cli")
    config = base / "nexus.yaml"
    config.write_text("data:\n  shard_size_mb: 0.25\n")
    assert _run_cli(src, base / "out", config=config).wait(timeout=300) == 0
    return src, config, base / "out"


@pytest.mark.parametrize("kill_after", ["splits/00001/done.json", "final/00000/done.json"])
def test_kill_9_then_rerun_gives_the_output_of_a_clean_run(clean_cli_run, tmp_path, kill_after):
    src, config, clean = clean_cli_run
    victim = tmp_path / "victim"
    proc = _run_cli(src, victim, config=config)
    marker = victim / "_work" / kill_after
    deadline = time.monotonic() + 120
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (victim / "manifest.json").exists()
    resumed = _run_cli(src, victim, config=config)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode()[-2000:]
    assert storage.read_manifest(str(victim))["splits_resumed"] >= 1
    assert _snapshot(victim) == _snapshot(clean)
