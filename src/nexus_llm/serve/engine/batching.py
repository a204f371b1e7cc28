"""The built-in engine: continuous batching of concurrent requests in one worker thread.

Why not transformers' ``ContinuousBatchingManager``: it was evaluated first (docs/serve.md has the
figures). It works on CPU, but its sampling settings are global to the manager (``do_sample``, and the
seed), so per-request ``seed`` and greedy requests cannot share a batch with sampled ones, and its
paged-attention bookkeeping cost more CPU per generated token than this engine on the small models
this project trains. Its API is also still moving between 5.x releases.

How it works: requests wait in a deque and are admitted while there are free rows and KV-cache room.
Each loop turn is one forward pass of the model runner (:mod:`nexus_llm.serve.engine.runner`) over one token
of every decoding sequence plus up to ``max_prefill_tokens`` prompt tokens of sequences still being
prefilled (chunked prefill: a long prompt is run a chunk per step, so it does not stall the running
decodes for the whole prompt). A prompt that starts like one seen before continues from the prefix
cache. Finished and cancelled sequences leave at once, so a row frees as soon as a request ends. The
model only ever runs in this thread, never on the event loop; chunks go back to each request's event
loop in one ``call_soon_threadsafe`` per step.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from nexus_llm.serve.engine.base import (
    FEATURES,
    Chunk,
    EngineCore,
    EngineOverloaded,
    EngineStats,
    FinishReason,
    RequestHandle,
    SamplingParams,
    TokenLogprob,
    Unsupported,
    check_prompt_length,
)
from nexus_llm.serve.engine.detok import TextStream
from nexus_llm.serve.engine.loading import LoadedModel
from nexus_llm.serve.engine.prompts import PromptEncoder
from nexus_llm.serve.engine.runner import Work
from nexus_llm.serve.engine.sampling import RowState, choose_tokens, make_generator, prompt_logprobs

log = logging.getLogger("nexus_llm.serve.engine.base")

_keys = itertools.count(1)


@dataclass
class _Sequence:
    handle: RequestHandle
    prompt: list[int]
    params: SamplingParams
    text: TextStream
    row: RowState
    key: int = field(default_factory=lambda: next(_keys))
    computed: int = 0  # tokens whose KV is in the runner's cache
    admitted: bool = False
    prompt_lp: list[TokenLogprob | None] | None = None  # when prompt logprobs were asked for
    pending_lp: list[TokenLogprob] = field(default_factory=list)
    sent_prompt_lp: bool = False

    @property
    def generated(self) -> int:
        return len(self.row.generated)

    @property
    def prefilling(self) -> bool:
        return self.computed < len(self.prompt)


@dataclass(frozen=True)
class FinishedRecord:
    """What happened to a finished request (kept for the last few hundred, for tests and debugging)."""

    request_id: str
    finish_reason: FinishReason
    completion_tokens: int
    cached_prompt_tokens: int = 0


class BatchingEngine(EngineCore):
    """Continuous batching over a model runner (see the module docstring)."""

    features = FEATURES

    def __init__(
        self,
        load: Callable[[], LoadedModel],
        model_name: str,
        *,
        max_batch_size: int = 64,
        max_waiting: int = 10_000,
        max_prefill_tokens: int = 256,
    ) -> None:
        super().__init__()
        self.model_name = model_name
        self.max_batch_size = max_batch_size
        self.max_waiting = max_waiting
        self.max_prefill_tokens = max_prefill_tokens
        self._load = load
        self._lm: LoadedModel | None = None
        self._grammars = None
        self._incoming: deque[_Sequence] = deque()
        self._wake = threading.Event()
        self._rows: list[_Sequence] = []  # admitted sequences, in admission order
        self._cached: dict[int, int] = {}  # key -> prompt tokens taken from the prefix cache
        # counters
        self._steps = 0
        self._prompt_tokens = 0
        self._cached_tokens = 0
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
    def adapters(self) -> tuple[str, ...]:
        return self._lm.adapters if self._lm else ()

    @property
    def generation_defaults(self) -> dict:
        return self._lm.generation_defaults if self._lm else {}

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
            cached_prompt_tokens=self._cached_tokens,
        )

    def compile_grammar(self, schema):
        """A compiled ``response_format`` constraint (blocks: call it off the event loop)."""
        from nexus_llm.serve.engine.grammar import GrammarCompiler

        lm = self._require()
        if self._grammars is None:
            self._grammars = GrammarCompiler(lm.tokenizer, lm.vocab_size)
        return self._grammars.compile(schema)

    # ---------------------------------------------------------------- requests
    def submit(self, prompt_ids: list[int], params: SamplingParams) -> RequestHandle:
        lm = self._require()
        check_prompt_length(prompt_ids, lm.context_length)
        if params.adapter is not None and params.adapter not in lm.adapters:
            raise Unsupported(f"no LoRA adapter named {params.adapter!r} is loaded", param="model")
        need = min(len(prompt_ids) + params.max_tokens, lm.context_length)
        if not lm.runner.fits(need):
            raise Unsupported(
                f"{need} tokens (prompt + max_tokens) do not fit the KV cache budget of this server",
                param="max_tokens",
            )
        if len(self._incoming) >= self.max_waiting:
            raise EngineOverloaded(f"{len(self._incoming)} requests already wait for the engine")
        handle = RequestHandle(len(prompt_ids))
        seq = _Sequence(
            handle=handle,
            prompt=list(prompt_ids),
            params=params,
            text=TextStream(lm.tokenizer, params.stop),
            row=RowState(params, make_generator(params.seed), list(prompt_ids), []),
        )
        if params.prompt_logprobs is not None:
            seq.prompt_lp = [None]  # the first prompt token has no context to be scored in
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
            self._lm, self._encoder = lm, PromptEncoder(lm.tokenizer, lm.bos_id, lm.vocab_size)
        except Exception as exc:
            self._error = f"model failed to load: {exc}"
            log.exception("model failed to load")
            return
        self._ready.set()
        log.info(
            "engine ready: %s (context %d tokens; weights: %s)",
            self.model_name,
            lm.context_length,
            lm.weights,
        )
        with torch.inference_mode():
            while not (self._stopping and not self._rows and not self._incoming):
                try:
                    self._step()
                except Exception as exc:  # a bug or out-of-memory: fail the batch, keep serving
                    log.exception("engine step failed")
                    self._fail_batch(f"generation failed: {type(exc).__name__}")

    def _step(self) -> None:
        self._drop_cancelled()
        self._admit()
        work, seqs = self._plan()
        if not work:
            self._wake.wait(0.05)
            self._wake.clear()
            return
        logits = self._lm.runner.forward(work)
        self._steps += 1
        sample: list[_Sequence] = []
        rows: list[torch.Tensor] = []
        for item, seq, out in zip(work, seqs, logits, strict=True):
            was_prefilling = seq.prefilling
            seq.computed += len(item.tokens)
            if not was_prefilling:
                sample.append(seq)
                rows.append(out[-1:])
                continue
            if seq.prompt_lp is not None and out is not None:
                targets = seq.prompt[item.start + 1 : item.start + len(item.tokens) + 1]
                seq.prompt_lp.extend(prompt_logprobs(out, targets, seq.params.prompt_logprobs or 0))
            if not seq.prefilling:  # the prompt is complete: its last logits give the first token
                self._prompt_tokens += len(seq.prompt)
                if seq.prompt_lp is None:
                    self._lm.runner.remember_prefix(seq.key, seq.prompt)
                sample.append(seq)
                rows.append(out[-1:])
        if sample:
            eos = min(self._lm.eos_ids) if self._lm.eos_ids else None
            tokens, entries = choose_tokens(torch.cat(rows), [s.row for s in sample], eos)
            self._advance(sample, tokens, entries)

    def _admit(self) -> None:
        """Move waiting requests into the batch while rows and KV-cache room allow (first come, first served)."""
        runner = self._lm.runner
        while self._incoming and len(self._rows) < self.max_batch_size:
            seq = self._incoming[0]
            if seq.handle.cancelled:
                self._incoming.popleft()
                self._finish_now(seq, "cancelled")
                continue
            need = min(len(seq.prompt) + seq.params.max_tokens, self._lm.context_length)
            if not runner.add(seq.key, need):
                break  # the cache is full: wait for running sequences to finish
            self._incoming.popleft()
            seq.admitted = True
            self._rows.append(seq)  # first: whatever fails below fails it with the batch
            if seq.params.grammar is not None:
                seq.row.matcher = seq.params.grammar.matcher()
            if seq.prompt_lp is None:  # prompt logprobs need every prompt position computed
                seq.computed = runner.reuse_prefix(seq.key, seq.prompt)
                self._cached[seq.key] = seq.computed
                self._cached_tokens += seq.computed

    def _plan(self) -> tuple[list[Work], list[_Sequence]]:
        """This step's work: one token per decoding sequence, then prompt chunks within the token budget."""
        work: list[Work] = []
        seqs: list[_Sequence] = []
        budget = self.max_prefill_tokens
        for seq in self._rows:
            if seq.prefilling:
                continue
            start = len(seq.prompt) + seq.generated - 1
            work.append(Work(seq.key, [seq.row.generated[-1]], start, "last", seq.params.adapter))
            seqs.append(seq)
        for seq in self._rows:
            if not seq.prefilling or budget <= 0:
                continue
            n = min(len(seq.prompt) - seq.computed, budget)
            last = seq.computed + n == len(seq.prompt)
            kind = "all" if seq.prompt_lp is not None else ("last" if last else "none")
            chunk = seq.prompt[seq.computed : seq.computed + n]
            work.append(Work(seq.key, chunk, seq.computed, kind, seq.params.adapter))
            seqs.append(seq)
            budget -= n
        return work, seqs

    def _advance(self, seqs: list[_Sequence], tokens: list[int], entries: list[TokenLogprob | None]) -> None:
        """Record one new token for each of ``seqs``; deliver text; drop sequences that finished."""
        lm = self._lm
        out: list[tuple[RequestHandle, Chunk]] = []
        done: list[_Sequence] = []
        for seq, token, entry in zip(seqs, tokens, entries, strict=True):
            seq.row.generated.append(token)
            self._generated += 1
            if entry is not None:
                seq.pending_lp.append(entry)
            finish: FinishReason | None = None
            matcher = seq.row.matcher
            grammar_done = False
            if matcher is not None:
                matcher.consume_token(token)
                grammar_done = matcher.is_stopped() or matcher.is_error()
            if token in lm.eos_ids and (not seq.params.ignore_eos or grammar_done):
                text, finish = seq.text.flush(), "stop"
            else:
                text, hit = seq.text.step(token)
                if hit or grammar_done:
                    finish = "stop"
                    text += "" if hit else seq.text.flush()
                elif (
                    seq.generated >= seq.params.max_tokens
                    or len(seq.prompt) + seq.generated >= lm.context_length
                ):
                    text, finish = text + seq.text.flush(), "length"
            if text or finish or seq.pending_lp or (seq.prompt_lp is not None and not seq.sent_prompt_lp):
                out.append((seq.handle, self._chunk(seq, text, finish)))
            if finish:
                done.append(seq)
        self._deliver(out)
        for seq in done:
            self._remove(seq)

    def _remove(self, seq: _Sequence) -> None:
        self._rows.remove(seq)
        self._cached.pop(seq.key, None)
        self._lm.runner.remove(seq.key)

    def _drop_cancelled(self) -> None:
        for seq in [s for s in self._rows if s.handle.cancelled]:
            self._finish_now(seq, "cancelled")
            self._remove(seq)

    def _fail_batch(self, message: str) -> None:
        for seq in list(self._rows):
            self._finish_now(seq, "error", message)
            self._remove(seq)

    # ---------------------------------------------------------------- delivery
    def _chunk(
        self, seq: _Sequence, text: str, finish: FinishReason | None, error: str | None = None
    ) -> Chunk:
        if finish is not None:
            self._finished[finish] += 1
            cached = self._cached.get(seq.key, 0)
            self.recent.append(FinishedRecord(seq.handle.request_id, finish, seq.generated, cached))
        prompt_lp = None
        if seq.prompt_lp is not None and not seq.sent_prompt_lp:
            prompt_lp, seq.sent_prompt_lp = tuple(seq.prompt_lp), True
        logprobs, seq.pending_lp = tuple(seq.pending_lp), []
        return Chunk(text, seq.generated, len(seq.prompt), finish, error, logprobs, prompt_lp)

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
