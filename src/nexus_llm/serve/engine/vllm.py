"""An optional backend: vLLM's async engine behind the :class:`~nexus_llm.serve.engine.base.Engine` seam.

Selected with ``nexus serve --engine vllm`` (or by ``auto`` when vLLM is installed and a CUDA GPU is
visible). vLLM does its own continuous batching, paged attention, stop strings and per-request seeds;
this adapter only translates: token ids and :class:`~nexus_llm.serve.engine.base.SamplingParams` in,
:class:`~nexus_llm.serve.engine.base.Chunk` deltas out, cancel = abort. Admission, limits, auth, metrics and
the OpenAI protocol stay in the HTTP layer, unchanged.

UNTESTED ON REAL vLLM: the machines this project is developed on have no GPU and no vLLM. The tests
drive this adapter through a stand-in module that behaves as documented below, which checks the
translation, not vLLM. What it assumes of vLLM (documented API of recent releases, V1 engine):

- ``from vllm import AsyncEngineArgs, AsyncLLMEngine, SamplingParams``;
  ``AsyncLLMEngine.from_engine_args(AsyncEngineArgs(model=..., ...))`` may be called outside an event
  loop (it starts its output handler on the first request, on that request's loop);
- ``engine.generate({"prompt_token_ids": ids}, sampling_params, request_id)`` is an async generator of
  ``RequestOutput`` whose ``outputs[0]`` has the *cumulative* ``text`` and ``token_ids`` (the default
  output kind) and ``finish_reason`` in ``stop``/``length``/``abort`` once ``finished``;
- cancelling the task that iterates ``generate`` aborts the request (vLLM catches the cancellation);
- ``top_k=-1`` disables top-k; ``engine.model_config.max_model_len`` is the context; ``engine.shutdown()``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from typing import Any

from nexus_llm.serve.engine.base import (
    Chunk,
    EngineCore,
    EngineOverloaded,
    EngineStats,
    FinishReason,
    RequestHandle,
    SamplingParams,
    check_prompt_length,
)
from nexus_llm.serve.engine.prompts import PromptEncoder

log = logging.getLogger("nexus_llm.serve.engine.base")

_FINISH: dict[str | None, FinishReason] = {"length": "length", "abort": "cancelled"}  # else "stop"


class _Handle(RequestHandle):
    """A handle whose ``cancel`` also cancels the task that reads vLLM's stream (which aborts it)."""

    task: asyncio.Task[None] | None = None

    def cancel(self) -> None:
        super().cancel()
        if self.task is not None:
            self.loop.call_soon_threadsafe(self.task.cancel)


class VLLMEngine(EngineCore):
    """vLLM's ``AsyncLLMEngine`` behind the engine seam (see the module docstring).

    Penalties and ``logit_bias`` are passed on to vLLM's ``SamplingParams`` (same names and meaning).
    Logprobs, ``echo``, ``response_format`` and LoRA adapters are not wired through this adapter (their
    vLLM APIs could not be tried here), so the HTTP layer answers 400 for them instead of ignoring them.
    """

    features = frozenset({"penalties", "logit_bias"})

    def __init__(
        self, model_dir: str, model_name: str, *, max_batch_size: int = 32, dtype: str = "auto",
        max_waiting: int = 10_000,
    ) -> None:  # fmt: skip
        super().__init__()
        self.model_name = model_name
        self.model_dir = model_dir
        self.max_batch_size = max_batch_size
        self.dtype = dtype
        self.max_waiting = max_waiting
        self._engine: Any = None
        self._context = 0
        self._vocab = 0
        self._handles: set[_Handle] = set()
        self._prompt_tokens = 0
        self._generated = 0
        self._finished: Counter[str] = Counter()
        self.generation_defaults: dict[str, Any] = {}

    # ------------------------------------------------------------------ control
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._load, name="nexus-vllm-load", daemon=True)
            self._thread.start()

    def _load(self) -> None:
        try:
            from transformers import AutoTokenizer
            from vllm import AsyncEngineArgs, AsyncLLMEngine

            args = AsyncEngineArgs(model=self.model_dir, dtype=self.dtype, max_num_seqs=self.max_batch_size)
            engine = AsyncLLMEngine.from_engine_args(args)
            tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
            config = engine.model_config
            self._context = int(config.max_model_len)
            self._vocab = int(config.get_vocab_size())
            self._encoder = PromptEncoder(tokenizer, tokenizer.bos_token_id, self._vocab)
            self.generation_defaults = _generation_defaults(self.model_dir)
            self._engine = engine
        except Exception as exc:
            self._error = f"model failed to load in vLLM: {exc}"
            log.exception("vLLM failed to load the model")
            return
        self._ready.set()
        log.info("vLLM engine ready: %s (context %d tokens)", self.model_name, self._context)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Let running requests finish (up to ``timeout``), cancel the rest, stop vLLM."""
        self._stopping = True
        deadline = time.monotonic() + timeout
        while self._handles and time.monotonic() < deadline:
            time.sleep(0.05)
        for handle in list(self._handles):
            handle.cancel()
        if self._engine is not None:
            self._engine.shutdown()

    @property
    def context_length(self) -> int:
        return self._context

    @property
    def vocab_size(self) -> int:
        return self._vocab

    def stats(self) -> EngineStats:
        return EngineStats(
            ready=self.is_ready(),
            running=len(self._handles),  # vLLM schedules them; its own queue is not visible here
            waiting=0,
            prompt_tokens=self._prompt_tokens,
            generated_tokens=self._generated,
            finished=dict(self._finished),
            error=self._error,
        )

    # ---------------------------------------------------------------- requests
    def submit(self, prompt_ids: list[int], params: SamplingParams) -> RequestHandle:
        self._check_ready()
        check_prompt_length(prompt_ids, self._context)
        if len(self._handles) >= self.max_waiting:
            raise EngineOverloaded(f"{len(self._handles)} requests already run in vLLM")
        handle = _Handle(len(prompt_ids))
        self._handles.add(handle)
        handle.task = handle.loop.create_task(self._stream(handle, list(prompt_ids), params))
        return handle

    async def _stream(self, handle: _Handle, ids: list[int], params: SamplingParams) -> None:
        """Read vLLM's cumulative outputs for one request and push them to ``handle`` as deltas."""
        from vllm import SamplingParams as VLLMSamplingParams

        sampling = VLLMSamplingParams(
            n=1, max_tokens=params.max_tokens, temperature=params.temperature, top_p=params.top_p,
            top_k=params.top_k if params.top_k > 0 else -1, seed=params.seed, stop=list(params.stop) or None,
            ignore_eos=params.ignore_eos, presence_penalty=params.presence_penalty,
            frequency_penalty=params.frequency_penalty, repetition_penalty=params.repetition_penalty,
            logit_bias=dict(params.logit_bias) or None,
        )  # fmt: skip
        sent, tokens, n_prompt = 0, 0, len(ids)
        last = Chunk("", 0, n_prompt, "error", "vLLM ended the stream without finishing the request")
        self._prompt_tokens += n_prompt
        try:
            async for out in self._engine.generate({"prompt_token_ids": ids}, sampling, handle.request_id):
                done = out.outputs[0]
                text, sent, tokens = done.text[sent:], len(done.text), len(done.token_ids)
                if out.finished:
                    last = Chunk(text, tokens, n_prompt, _FINISH.get(done.finish_reason, "stop"))
                    break
                if text:
                    handle.push(Chunk(text, tokens, n_prompt))
        except asyncio.CancelledError:  # handle.cancel(): vLLM aborted the request as the stream closed
            last = Chunk("", tokens, n_prompt, "cancelled")
        except Exception as exc:
            log.exception("vLLM request %s failed", handle.request_id)
            last = Chunk("", tokens, n_prompt, "error", f"generation failed: {type(exc).__name__}")
        finally:
            self._handles.discard(handle)
            self._generated += tokens
            self._finished[last.finish_reason] += 1
            handle.push(last)


def _generation_defaults(model_dir: str) -> dict[str, Any]:
    """The model's ``generation_config.json`` sampling defaults, as the built-in engine reads them."""
    from transformers import GenerationConfig

    from nexus_llm.serve.engine.loading import GENERATION_KEYS

    try:
        diff = GenerationConfig.from_pretrained(model_dir).to_diff_dict()
    except OSError:  # no generation_config.json
        return {}
    return {ours: diff[key] for key, ours in GENERATION_KEYS.items() if diff.get(key) is not None}
