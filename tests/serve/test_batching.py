"""The batching engine without HTTP: batched output equals one-at-a-time output, rows join and leave."""

from __future__ import annotations

import asyncio

import pytest
import torch

from nexus_llm.serve.engine.base import EngineNotReady, SamplingParams

GREEDY = SamplingParams(max_tokens=24, temperature=0.0, ignore_eos=True)
PROMPTS = ["The quick brown fox", "Hello", "A language model predicts the next token", "Servers answer"]


async def _run(engine, prompt: str, params: SamplingParams = GREEDY, started: asyncio.Event | None = None):
    handle = engine.submit(engine.encode(prompt), params)
    text = ""
    async for chunk in handle:
        text += chunk.text
        if started is not None:
            started.set()
    return text, handle.finished


def _reference(engine, prompt: str, n: int) -> str:
    """transformers' own greedy generate on the prompt alone."""
    lm = engine._lm
    ids = engine.encode(prompt)
    with torch.inference_mode():
        out = lm.model.generate(
            torch.tensor([ids]), max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=lm.pad_id
        )
    return lm.tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True)


def test_concurrent_requests_share_decode_steps_and_match_generate(tiny_engine):
    async def main():
        steps = tiny_engine.stats().steps
        results = await asyncio.gather(*(_run(tiny_engine, p) for p in PROMPTS))
        return results, tiny_engine.stats().steps - steps

    results, steps = asyncio.run(main())
    for prompt, (text, last) in zip(PROMPTS, results, strict=True):
        assert last.finish_reason == "length" and last.completion_tokens == 24
        assert text == _reference(tiny_engine, prompt, 24)
    # one-at-a-time would take 4 * 23 decode steps; a shared batch needs about 23 (+ re-joins)
    assert steps < 2 * 23


def test_requests_that_join_a_running_batch_match_generate(tiny_engine):
    long = SamplingParams(max_tokens=60, temperature=0.0, ignore_eos=True)

    async def main():
        started = asyncio.Event()
        first = asyncio.ensure_future(_run(tiny_engine, PROMPTS[2], long, started))
        await started.wait()  # the first request is decoding: the next ones join mid-flight
        later = await asyncio.gather(*(_run(tiny_engine, p) for p in PROMPTS[:2]))
        return await first, later

    (first_text, _), later = asyncio.run(main())
    assert first_text == _reference(tiny_engine, PROMPTS[2], 60)
    for prompt, (text, _) in zip(PROMPTS[:2], later, strict=True):
        assert text == _reference(tiny_engine, prompt, 24)


def test_same_seed_same_text_different_seed_different_text(tiny_engine):
    def params(seed):
        return SamplingParams(max_tokens=20, temperature=1.0, seed=seed, ignore_eos=True)

    async def main():
        return await asyncio.gather(
            _run(tiny_engine, "Hello", params(7)), _run(tiny_engine, "Hello", params(7)),
            _run(tiny_engine, "Hello", params(8)), _run(tiny_engine, "Other words", params(9)),
        )  # fmt: skip

    (a, _), (b, _), (c, _), _ = asyncio.run(main())
    assert a == b and a != c


def test_stop_string_ends_generation_before_it(tiny_engine):
    full = _reference(tiny_engine, PROMPTS[0], 24)
    stop = full[6:9]
    cut = full[: full.index(stop)]

    async def main():
        return await _run(
            tiny_engine, PROMPTS[0], SamplingParams(max_tokens=24, temperature=0.0, stop=(stop,))
        )

    text, last = asyncio.run(main())
    assert text == cut and last.finish_reason == "stop" and last.completion_tokens < 24


def test_cancel_frees_the_row_at_the_next_step(tiny_engine):
    async def main():
        handle = tiny_engine.submit(
            tiny_engine.encode("Hello"), SamplingParams(max_tokens=200, ignore_eos=True)
        )
        seen = []
        async for chunk in handle:
            seen.append(chunk)
            if len(seen) == 2:
                handle.cancel()
        return handle

    handle = asyncio.run(main())
    assert handle.finished.finish_reason == "cancelled"
    assert handle.finished.completion_tokens < 200
    record = next(r for r in tiny_engine.recent if r.request_id == handle.request_id)
    assert record.finish_reason == "cancelled"


def test_generation_stops_at_the_context_length(tiny_engine):
    ctx = tiny_engine.context_length
    ids = [5] * (ctx - 3)

    async def main():
        handle = tiny_engine.submit(ids, SamplingParams(max_tokens=100, ignore_eos=True))
        async for _ in handle:
            pass
        return handle.finished

    last = asyncio.run(main())
    assert last.finish_reason == "length" and last.completion_tokens == 3


def test_prompt_that_fills_the_context_is_refused(tiny_engine):
    async def main():
        tiny_engine.submit([5] * tiny_engine.context_length, GREEDY)

    with pytest.raises(ValueError, match="prompt must have"):
        asyncio.run(main())


def test_engine_refuses_work_until_loaded_and_reports_a_failed_load():
    from nexus_llm.serve.engine.batching import BatchingEngine

    def broken():
        raise OSError("disk on fire")

    engine = BatchingEngine(broken, "broken")
    with pytest.raises(EngineNotReady):
        engine.encode("x")
    engine.start()
    assert engine.wait_ready(10) is False
    assert "disk on fire" in engine.stats().error and not engine.is_ready()


def test_a_failing_step_fails_its_batch_and_the_engine_keeps_serving(tiny_engine, monkeypatch):
    runner = tiny_engine._lm.runner
    real = runner.forward
    calls = {"n": 0}

    def flaky(*args, **kw):  # the third step runs out of memory, say
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated failure")
        return real(*args, **kw)

    monkeypatch.setattr(runner, "forward", flaky)

    async def main():
        failed = await _run(tiny_engine, "Hello", SamplingParams(max_tokens=20, ignore_eos=True))
        after = await _run(tiny_engine, "Hello", SamplingParams(max_tokens=5, ignore_eos=True))
        return failed, after

    (_, failed), (_, after) = asyncio.run(main())
    assert failed.finish_reason == "error" and "RuntimeError" in failed.error
    assert after.finish_reason == "length" and tiny_engine.is_ready()
