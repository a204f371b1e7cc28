"""Engine choice (``--engine auto|builtin|vllm``) and the vLLM adapter's translation.

vLLM is not installed here and there is no GPU, so the adapter runs against a stand-in ``vllm`` module
that behaves as the adapter's docstring says vLLM does: these tests check our side of the seam (deltas,
finish reasons, cancel = abort, the HTTP layer on top), not vLLM itself.
"""

from __future__ import annotations

import asyncio
import sys
import types
from types import SimpleNamespace

import httpx
import pytest

from nexus_llm.configbase import ConfigError
from nexus_llm.serve.config import ServeConfig
from nexus_llm.serve.engine.backends import EngineUnavailable, choose_engine, cuda_available, vllm_installed
from nexus_llm.serve.engine.base import SamplingParams
from nexus_llm.serve.http.app import create_app

from .conftest import serve_app, wait_healthy


def _yes():
    return True


def _no():
    return False


@pytest.mark.parametrize(
    ("requested", "vllm", "cuda", "chosen"),
    [
        ("auto", _no, _no, "builtin"),
        ("auto", _yes, _no, "builtin"),  # vLLM installed on a CPU machine: the built-in engine
        ("auto", _no, _yes, "builtin"),
        ("auto", _yes, _yes, "vllm"),
        ("builtin", _yes, _yes, "builtin"),
        ("vllm", _yes, _yes, "vllm"),
    ],
)
def test_engine_choice(requested, vllm, cuda, chosen):
    assert choose_engine(requested, has_vllm=vllm, has_cuda=cuda) == chosen


@pytest.mark.parametrize(("vllm", "cuda", "message"), [(_no, _yes, "not installed"), (_yes, _no, "CUDA GPU")])
def test_asking_for_vllm_where_it_cannot_run_is_a_user_error_with_a_fix(vllm, cuda, message):
    with pytest.raises(EngineUnavailable, match=message) as err:
        choose_engine("vllm", has_vllm=vllm, has_cuda=cuda)
    assert isinstance(err.value, ConfigError) and "--engine builtin" in str(err.value)


def test_auto_picks_the_builtin_engine_on_this_machine():
    if vllm_installed() and cuda_available():
        pytest.skip("vLLM and a GPU are both here")
    assert choose_engine("auto") == "builtin"


# ------------------------------------------------------------------ the adapter, on a stand-in vLLM
class _FakeAsyncEngine:
    """Yields cumulative outputs ``"w0 w1 ..."`` one token per step, like vLLM's default output kind."""

    def __init__(self, args) -> None:
        self.args, self.requests, self.aborted, self.closed = args, [], [], False
        self.model_config = SimpleNamespace(max_model_len=256, get_vocab_size=lambda: 320)

    async def generate(self, prompt, sampling, request_id):
        self.requests.append((prompt, sampling))
        text, ids = "", []
        try:
            for i in range(sampling.max_tokens):
                await asyncio.sleep(0.002)
                text, ids = text + f"w{i} ", [*ids, i]
                last = i == sampling.max_tokens - 1
                yield SimpleNamespace(
                    finished=last,
                    outputs=[
                        SimpleNamespace(text=text, token_ids=ids, finish_reason="length" if last else None)
                    ],
                )
        except (asyncio.CancelledError, GeneratorExit):
            self.aborted.append(request_id)
            raise

    def shutdown(self) -> None:
        self.closed = True


@pytest.fixture
def fake_vllm(monkeypatch):
    made = []

    def from_engine_args(args):
        made.append(_FakeAsyncEngine(args))
        return made[-1]

    module = types.ModuleType("vllm")
    module.AsyncEngineArgs = lambda **kw: kw
    module.AsyncLLMEngine = SimpleNamespace(from_engine_args=from_engine_args)
    module.SamplingParams = lambda **kw: SimpleNamespace(**kw)
    monkeypatch.setitem(sys.modules, "vllm", module)
    return made


def test_vllm_adapter_serves_the_openai_api_through_the_same_http_layer(fake_vllm, tiny_model_dir):
    from nexus_llm.serve.engine.vllm import VLLMEngine

    engine = VLLMEngine(str(tiny_model_dir), "tiny", max_batch_size=8)
    with serve_app(create_app(engine, ServeConfig())) as s, httpx.Client(base_url=s.url, timeout=30) as c:
        wait_healthy(s.url, 30)
        r = c.post("/v1/completions", json={"prompt": "Hello", "max_tokens": 3, "top_k": 0, "stop": ["zz"]})
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0] == {
            "index": 0,
            "text": "w0 w1 w2 ",
            "logprobs": None,
            "finish_reason": "length",
        }
        assert r.json()["usage"]["completion_tokens"] == 3
        stream = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}],
                                                       "max_tokens": 2, "stream": True})  # fmt: skip
        deltas = [line for line in stream.text.splitlines() if '"content":"w' in line]
        assert len(deltas) == 2 and stream.text.rstrip().endswith("data: [DONE]")
    (fake,) = fake_vllm
    assert fake.args["model"] == str(tiny_model_dir) and fake.args["max_num_seqs"] == 8
    prompt, sampling = fake.requests[0]
    assert prompt["prompt_token_ids"] == engine._encoder.encode("Hello")
    assert (sampling.top_k, sampling.stop, sampling.max_tokens) == (-1, ["zz"], 3)
    assert fake.closed  # shut down with the app
    assert engine.stats().finished == {"length": 2} and engine.stats().generated_tokens == 5


def test_vllm_adapter_cancel_aborts_the_request(fake_vllm, tiny_model_dir):
    from nexus_llm.serve.engine.vllm import VLLMEngine

    engine = VLLMEngine(str(tiny_model_dir), "tiny")
    engine.start()
    assert engine.wait_ready(30)

    async def main():
        handle = engine.submit([5, 6, 7], SamplingParams(max_tokens=1000))
        async for chunk in handle:
            if chunk.completion_tokens >= 2:
                handle.cancel()
        return handle.finished

    last = asyncio.run(main())
    assert last.finish_reason == "cancelled" and last.completion_tokens < 1000
    assert fake_vllm[0].aborted and engine.stats().running == 0
