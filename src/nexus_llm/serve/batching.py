"""The built-in engine: continuous batching of concurrent requests in one worker thread.

Why not transformers' ``ContinuousBatchingManager``: it was evaluated first (docs/serve.md has the
figures). It works on CPU, but its sampling settings are global to the manager (``do_sample``, and the
seed), so per-request ``seed`` and greedy requests cannot share a batch with sampled ones, and its
paged-attention bookkeeping cost more CPU per generated token than this plain padded batch on the
small models this project trains. Its API is also still moving between 5.x releases.

How it works: requests wait in a deque; each loop turn the worker either prefills newly arrived
requests (as one left-padded batch, then joins them to the running batch) or runs one decode step
for every running row. Finished and cancelled rows leave the batch at once, so a slot frees as soon
as a request ends and a waiting request joins at the next step. The model only ever runs in this
thread, never on the event loop; chunks go back to each request's event loop in one
``call_soon_threadsafe`` per step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

import torch

from nexus_llm.serve import kvbatch
from nexus_llm.serve.detok import TextStream
from nexus_llm.serve.engine import (
    Chunk,
    EngineCore,
    EngineOverloaded,
    EngineStats,
    FinishReason,
    RequestHandle,
    SamplingParams,
    check_prompt_length,
)
from nexus_llm.serve.loading import LoadedModel
from nexus_llm.serve.prompts import PromptEncoder
from nexus_llm.serve.sampling import RowSampler

log = logging.getLogger("nexus_llm.serve.engine")


@dataclass
class _Sequence:
    handle: RequestHandle
    prompt: list[int]
    params: SamplingParams
    text: TextStream
    generator: torch.Generator
    generated: int = 0


@dataclass(frozen=True)
class FinishedRecord:
    """What happened to a finished request (kept for the last few hundred, for tests and debugging)."""

    request_id: str
    finish_reason: FinishReason
    completion_tokens: int


class BatchingEngine(EngineCore):
    """Continuous batching over a Hugging Face causal LM (see the module docstring)."""

    def __init__(
        self,
        load: Callable[[], LoadedModel],
        model_name: str,
        *,
        max_batch_size: int = 32,
        max_waiting: int = 10_000,
        max_prefill_tokens: int = 8192,
    ) -> None:
        super().__init__()
        self.model_name = model_name
        self.max_batch_size = max_batch_size
        self.max_waiting = max_waiting
        self.max_prefill_tokens = max_prefill_tokens
        self._load = load
        self._lm: LoadedModel | None = None
        self._incoming: deque[_Sequence] = deque()
        self._wake = threading.Event()
        # running batch: rows[i] is batch row i
        self._rows: list[_Sequence] = []
        self._batch: kvbatch.PaddedBatch | None = None
        self._sampler = RowSampler()
        self._last = torch.empty(0, dtype=torch.long)
        # counters
        self._steps = 0
        self._prompt_tokens = 0
        self._generated = 0
        self._finished: Counter[str] = Counter()
        self.recent: deque[FinishedRecord] = deque(maxlen=512)

    # ------------------------------------------------------------------ control
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="nexus-engine", daemon=True)
            self._thread.start()

    def shutdown(self, timeout: float = 10.0) -> None:
        """Finish running and waiting requests (up to ``timeout``), then stop the worker."""
        self._stopping = True
        self._wake.set()
        if self._thread is None:
            return
        self._thread.join(timeout)
        if self._thread.is_alive():
            for seq in [*self._rows, *list(self._incoming)]:
                seq.handle.cancel()
            self._wake.set()
            self._thread.join(5.0)

    @property
    def context_length(self) -> int:
        return self._lm.context_length if self._lm else 0

    @property
    def vocab_size(self) -> int:
        return self._lm.vocab_size if self._lm else 0

    @property
    def error(self) -> str | None:
        return self._error

    def is_ready(self) -> bool:
        alive = self._thread is not None and self._thread.is_alive()
        return alive and super().is_ready()

    def stats(self) -> EngineStats:
        return EngineStats(
            ready=self.is_ready(),
            running=len(self._rows),
            waiting=len(self._incoming),
            steps=self._steps,
            prompt_tokens=self._prompt_tokens,
            generated_tokens=self._generated,
            finished=dict(self._finished),
            error=self._error,
        )

    # ---------------------------------------------------------------- requests
    def submit(self, prompt_ids: list[int], params: SamplingParams) -> RequestHandle:
        lm = self._require()
        check_prompt_length(prompt_ids, lm.context_length)
        if len(self._incoming) >= self.max_waiting:
            raise EngineOverloaded(f"{len(self._incoming)} requests already wait for the engine")
        handle = RequestHandle(len(prompt_ids))
        seq = _Sequence(
            handle=handle,
            prompt=list(prompt_ids),
            params=params,
            text=TextStream(lm.tokenizer, params.stop),
            generator=RowSampler.make_generator(params.seed),
        )
        self._incoming.append(seq)
        self._wake.set()
        return handle

    def _require(self) -> LoadedModel:
        self._check_ready()
        assert self._lm is not None  # set before _ready
        return self._lm

    # ------------------------------------------------------------------ worker
    def _run(self) -> None:
        try:
            lm = self._load()
            kvbatch.check_supported(lm.model)
            self._lm, self._encoder = lm, PromptEncoder(lm.tokenizer, lm.bos_id)
        except Exception as exc:
            self._error = f"model failed to load: {exc}"
            log.exception("model failed to load")
            return
        self._ready.set()
        log.info("engine ready: %s (context %d tokens)", self.model_name, lm.context_length)
        with torch.inference_mode():
            while not (self._stopping and not self._rows and not self._incoming):
                try:
                    self._step()
                except Exception as exc:  # a bug or out-of-memory: fail the batch, keep serving
                    log.exception("engine step failed")
                    self._fail_batch(f"generation failed: {type(exc).__name__}")

    def _step(self) -> None:
        self._drop_cancelled()
        admitted = self._admit()
        if admitted:
            self._prefill(admitted)
        elif self._rows:
            self._decode()
        else:
            self._wake.wait(0.05)
            self._wake.clear()

    def _admit(self) -> list[_Sequence]:
        """Waiting requests that fit the free rows and the prefill token budget (at least one)."""
        out: list[_Sequence] = []
        longest = 0
        while self._incoming and len(self._rows) + len(out) < self.max_batch_size:
            seq = self._incoming[0]
            if seq.handle.cancelled:
                self._incoming.popleft()
                self._finish_now(seq, "cancelled")
                continue
            longest_if = max(longest, len(seq.prompt))
            if out and longest_if * (len(out) + 1) > self.max_prefill_tokens:
                break
            out.append(self._incoming.popleft())
            longest = longest_if
        return out

    def _prefill(self, seqs: list[_Sequence]) -> None:
        lm = self._lm
        sampler = RowSampler()
        for seq in seqs:
            p = seq.params
            sampler.append(p.temperature, p.top_p, p.top_k, seq.generator)
        try:
            batch, logits = kvbatch.prefill(lm.model, [s.prompt for s in seqs], lm.pad_id)
            tokens = sampler.sample(logits)
        except Exception as exc:  # out of memory, say: fail these requests, leave the running batch alone
            log.exception("prefill failed")
            for seq in seqs:
                self._finish_now(seq, "error", f"prefill failed: {type(exc).__name__}")
            return
        self._prompt_tokens += sum(len(s.prompt) for s in seqs)
        start = len(self._rows)
        self._batch = batch if self._batch is None else kvbatch.concat(self._batch, batch)
        self._rows.extend(seqs)
        self._sampler.extend(sampler)
        self._last = torch.cat([self._last, tokens.to(self._last.device)])
        self._advance(range(start, len(self._rows)), tokens.tolist())

    def _decode(self) -> None:
        logits = kvbatch.decode(self._lm.model, self._batch, self._last.to(self._lm.model.device))
        tokens = self._sampler.sample(logits)
        self._last = tokens.cpu()
        self._steps += 1
        self._advance(range(len(self._rows)), tokens.tolist())

    def _advance(self, rows: range, tokens: list[int]) -> None:
        """Record one new token for each of ``rows``; deliver text; drop rows that finished."""
        lm = self._lm
        out: list[tuple[RequestHandle, Chunk]] = []
        done: set[int] = set()
        for row, token in zip(rows, tokens, strict=True):
            seq = self._rows[row]
            seq.generated += 1
            self._generated += 1
            finish: FinishReason | None = None
            if token in lm.eos_ids and not seq.params.ignore_eos:
                text, finish = seq.text.flush(), "stop"
            else:
                text, hit = seq.text.step(token)
                if hit:
                    finish = "stop"
                elif (
                    seq.generated >= seq.params.max_tokens
                    or len(seq.prompt) + seq.generated >= lm.context_length
                ):
                    text, finish = text + seq.text.flush(), "length"
            if text or finish:
                out.append((seq.handle, self._chunk(seq, text, finish)))
            if finish:
                done.add(row)
        self._deliver(out)
        if done:
            self._keep([i for i in range(len(self._rows)) if i not in done])

    def _keep(self, keep: list[int]) -> None:
        self._batch = kvbatch.select(self._batch, keep)
        self._rows = [self._rows[i] for i in keep]
        self._last = self._last.index_select(0, torch.tensor(keep, dtype=torch.long))
        self._sampler.select(keep)

    def _drop_cancelled(self) -> None:
        gone = [i for i, seq in enumerate(self._rows) if seq.handle.cancelled]
        if not gone:
            return
        for i in gone:
            self._finish_now(self._rows[i], "cancelled")
        self._keep([i for i in range(len(self._rows)) if i not in set(gone)])

    def _fail_batch(self, message: str) -> None:
        for seq in self._rows:
            self._finish_now(seq, "error", message)
        self._rows, self._batch = [], None
        self._sampler = RowSampler()
        self._last = torch.empty(0, dtype=torch.long)

    # ---------------------------------------------------------------- delivery
    def _chunk(
        self, seq: _Sequence, text: str, finish: FinishReason | None, error: str | None = None
    ) -> Chunk:
        if finish is not None:
            self._finished[finish] += 1
            self.recent.append(FinishedRecord(seq.handle.request_id, finish, seq.generated))
        return Chunk(text, seq.generated, len(seq.prompt), finish, error)

    def _finish_now(self, seq: _Sequence, reason: FinishReason, error: str | None = None) -> None:
        self._deliver([(seq.handle, self._chunk(seq, "", reason, error))])

    @staticmethod
    def _deliver(items: list[tuple[RequestHandle, Chunk]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[RequestHandle, Chunk]]] = {}
        for handle, chunk in items:
            by_loop.setdefault(handle.loop, []).append((handle, chunk))
        for loop, batch in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the request's loop is closed: nobody listens any more
                loop.call_soon_threadsafe(_push_all, batch)


def _push_all(items: list[tuple[RequestHandle, Chunk]]) -> None:
    for handle, chunk in items:
        handle.push(chunk)
