"""Skip, force and until semantics of the runner, with the stages replaced by recorders (a seam test;
the real stages run end to end in test_run_e2e.py)."""

from __future__ import annotations

import dataclasses

import pytest

from nexus_llm import storage
from nexus_llm.config import parse_config
from nexus_llm.pipeline import runner
from nexus_llm.pipeline.stages import STAGES

FROM_SCRATCH = [s.name for s in STAGES if s.name != "base_model"]


def _recording(stage, calls, fail: dict):
    def run(cfg, layout):
        if fail.get(stage.name):
            raise RuntimeError("boom")
        calls.append(stage.name)
        manifest = {"stage": stage.name}
        storage.write_manifest(stage.output(layout), manifest)
        return manifest

    return dataclasses.replace(stage, run=run)


@pytest.fixture
def recorded(monkeypatch, corpus_slice, tmp_path):
    calls: list[str] = []
    fail: dict[str, bool] = {}
    fakes = tuple(_recording(s, calls, fail) for s in STAGES)
    real = runner.run_pipeline
    monkeypatch.setattr(runner, "run_pipeline", lambda cfg, *a, **kw: real(cfg, *a, stages=fakes, **kw))
    cfg = parse_config({"workspace": str(tmp_path / "ws"), "data": {"inputs": [str(corpus_slice)]}})
    return cfg, calls, fail


def statuses(results):
    """Statuses of the stages a from-scratch flow has (the base model import is not needed there)."""
    assert next(r.status for r in results if r.stage == "base_model") == "not needed"
    return [r.status for r in results if r.stage != "base_model"]


def test_second_run_skips_everything_and_until_stops_early(recorded):
    cfg, calls, _ = recorded
    assert statuses(runner.run_pipeline(cfg, until="tokenize")) == ["done"] * 3 + ["not run"] * 2
    assert statuses(runner.run_pipeline(cfg)) == ["skipped"] * 3 + ["done"] * 2
    assert statuses(runner.run_pipeline(cfg)) == ["skipped"] * 5
    assert calls == FROM_SCRATCH


def test_a_setting_change_reruns_that_stage_and_the_ones_after(recorded):
    cfg, calls, _ = recorded
    runner.run_pipeline(cfg)
    calls.clear()
    changed = cfg.model_copy(update={"tokenize": cfg.tokenize.model_copy(update={"val_fraction": 0.2})})
    assert statuses(runner.run_pipeline(changed)) == ["skipped", "skipped", "done", "done", "done"]
    assert calls == ["tokenize", "train", "eval"]


def test_force_redoes_a_stage_and_everything_after(recorded):
    cfg, calls, _ = recorded
    runner.run_pipeline(cfg)
    calls.clear()
    assert statuses(runner.run_pipeline(cfg, force="train")) == ["skipped"] * 3 + ["done"] * 2
    assert calls == ["train", "eval"]


def test_a_missing_manifest_reruns_the_stage(recorded, tmp_path):
    cfg, calls, _ = recorded
    runner.run_pipeline(cfg)
    calls.clear()
    storage.remove(str(tmp_path / "ws" / "tokenizer" / "manifest.json"))
    assert statuses(runner.run_pipeline(cfg)) == ["skipped", "done", "skipped", "skipped", "skipped"]


def test_input_content_change_reruns_from_data(recorded, corpus_slice):
    cfg, calls, _ = recorded
    runner.run_pipeline(cfg)
    calls.clear()
    corpus_slice.write_text(corpus_slice.read_text() + '{"id": "new", "text": "one more document"}\n')
    try:
        assert statuses(runner.run_pipeline(cfg)) == ["done"] * 5
    finally:
        corpus_slice.write_text("".join(corpus_slice.read_text().splitlines(keepends=True)[:-1]))


def test_failed_stage_is_reported_and_rerun(recorded):
    cfg, calls, fail = recorded
    fail["train"] = True
    with pytest.raises(RuntimeError, match="boom"):
        runner.run_pipeline(cfg)
    fail["train"] = False
    calls.clear()
    assert statuses(runner.run_pipeline(cfg)) == ["skipped"] * 3 + ["done"] * 2


def test_unknown_stage_names_are_rejected(recorded):
    cfg, *_ = recorded
    with pytest.raises(ValueError, match="choose one of"):
        runner.run_pipeline(cfg, force="training")


def test_before_and_after_pairs_each_chat_prompt_with_both_answers():
    from nexus_llm.pipeline.runner import before_and_after

    evaluation = {
        "chat_samples": [
            {"prompt": "q1", "completion": "after 1"},
            {"prompt": "q2", "completion": "after 2"},
        ],
        "baseline": {"chat_samples": [{"prompt": "q2", "completion": "before 2"}]},
    }
    assert before_and_after(evaluation) == [("q2", "before 2", "after 2")]
    assert before_and_after({"chat_samples": [{"prompt": "q", "completion": "a"}]}) == []
