"""The serving layer: validated requests in, engine calls, protocol responses out.

The routers in :mod:`nexus_llm.serve.http.app` call one method here per endpoint. This module owns the
limits that depend on the model and settings (context, caps, stop strings, ``n``, the vocabulary for
``logit_bias``), sampling defaults from the model's ``generation_config.json``, which options the engine
supports, admission (429), the disconnect watch, and the mapping of engine chunks to OpenAI bodies
(logprobs included) and server-sent events.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from nexus_llm.serve.config import ServeConfig
from nexus_llm.serve.engine.base import (
    Chunk,
    Engine,
    EngineNotReady,
    EngineOverloaded,
    NoChatTemplate,
    RequestHandle,
    SamplingParams,
    TokenLogprob,
    Unsupported,
)
from nexus_llm.serve.http import schemas
from nexus_llm.serve.http.admission import Admission, Overloaded
from nexus_llm.serve.http.errors import APIError
from nexus_llm.serve.http.metrics import RequestRecord


class ClientGone(Exception):
    """The client disconnected before its response was ready."""


@dataclass
class Job:
    """The engine requests behind one HTTP request, and what must be undone when it ends."""

    record: RequestRecord
    handles: list[RequestHandle] = field(default_factory=list)
    slots: int = 0

    def cancel_unfinished(self) -> None:
        for h in self.handles:
            if h.finished is None:
                h.cancel()


@dataclass
class Result:
    """What one engine request produced: its text, last chunk, and logprob entries."""

    text: str
    last: Chunk
    logprobs: list[TokenLogprob] = field(default_factory=list)
    prompt_logprobs: tuple[TokenLogprob | None, ...] | None = None


@dataclass
class Prompt:
    """One prompt of a request: its ids, and its text for ``echo`` (decoded when given as ids)."""

    ids: list[int]
    text: str = ""


class GuardedStream(StreamingResponse):
    """A streaming response that always runs ``cleanup`` (slots, cancellation), even if never iterated."""

    def __init__(self, content: AsyncIterator[str], cleanup: Callable[[], None]) -> None:
        super().__init__(content, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        self._cleanup = cleanup

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._cleanup()


def sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, separators=(',', ':'), ensure_ascii=False)}\n\n"


class Serving:
    """Endpoint logic over an :class:`~nexus_llm.serve.engine.base.Engine`."""

    def __init__(self, engine: Engine, settings: ServeConfig, admission: Admission, model_name: str) -> None:
        self.engine = engine
        self.settings = settings
        self.admission = admission
        self.model_name = model_name
        self.created = int(time.time())
        self.draining = False

    # ------------------------------------------------------------ endpoints
    def models(self) -> dict[str, Any]:
        return schemas.models_body(self.model_name, self.created, self._adapters())

    def _adapters(self) -> tuple[str, ...]:
        return tuple(getattr(self.engine, "adapters", ()) or ()) if self.engine.is_ready() else ()

    async def generate(self, req: schemas.GenerateRequest, http: Request) -> Response:
        rec = _record(http)
        self._check_ready()
        ids = await self._encode(req.prompt)
        asked = req.max_tokens if "max_tokens" in req.model_fields_set else None
        params = SamplingParams(
            max_tokens=self._max_tokens(len(ids), asked, default=512, where="prompt"),
            temperature=req.temperature,
            top_p=req.top_p,
            seed=req.seed,
            stop=self._stops(req.stop_strings()),
        )
        job = await self._start(rec, [(ids, params)], http)
        try:
            (result,) = await self._collect(job, http)
        finally:
            self._end(job)
        return JSONResponse({"response": result.text, "tokens_generated": result.last.completion_tokens})

    async def completions(self, req: schemas.CompletionRequest, http: Request) -> Response:
        rec = _record(http)
        self._check_ready()  # first: the adapters are known once the model is loaded
        adapter = self._check_model(req.model)
        prompts = req.prompts()
        self._check_prompt_count(len(prompts), req.n)
        self._check_features(req, logprobs=req.logprobs is not None, echo=req.echo and req.logprobs is not None,
                             adapter=adapter)  # fmt: skip
        grammar = await self._grammar(req.response_format)
        items: list[Prompt] = []
        work = []
        for prompt in prompts:
            if isinstance(prompt, str):
                item = Prompt(await self._encode(prompt), prompt)
            else:
                item = Prompt(self._check_ids(prompt))
                if req.echo:
                    item.text = await self._decode(item.ids)
            items.append(item)
            base = self._sampling(req, len(item.ids), req.max_tokens, "prompt", adapter, grammar)
            base = dataclasses.replace(base, logprobs=req.logprobs)
            for j in range(req.n):
                echo_lp = req.logprobs if req.echo and j == 0 else None
                work.append((item.ids, self._choice_params(base, j, req.n, prompt_logprobs=echo_lp)))
        job = await self._start(rec, work, http)
        rid = f"cmpl-{uuid.uuid4().hex}"
        if req.stream:
            events = self._completion_events(job, rid, req, items)
            return GuardedStream(events, lambda: self._end(job))
        try:
            results = await self._collect(job, http)
        finally:
            self._end(job)
        choices = []
        for i, r in enumerate(results):
            item = items[i // req.n]
            text = (item.text + r.text) if req.echo else r.text
            logprobs = None
            if req.logprobs is not None:
                entries: list[tuple[int, TokenLogprob | None]] = []
                if req.echo:
                    shared = results[(i // req.n) * req.n].prompt_logprobs or ()
                    entries += list(zip(item.ids, shared, strict=False))
                entries += [(e.token, e) for e in r.logprobs]
                logprobs = self._completion_logprobs(entries, 0)
            choices.append(schemas.completion_choice(i, text, r.last.finish_reason, logprobs))
        return JSONResponse(
            schemas.body(schemas.TEXT_COMPLETION, rid, self.model_name, choices, _usage(results, req.n))
        )

    async def chat(self, req: schemas.ChatCompletionRequest, http: Request) -> Response:
        rec = _record(http)
        self._check_ready()  # first: the adapters are known once the model is loaded
        adapter = self._check_model(req.model)
        self._check_prompt_count(1, req.n)
        self._check_features(req, logprobs=req.logprobs, echo=False, adapter=adapter)
        grammar = await self._grammar(req.response_format)
        ids = await self._encode_chat(req.template_messages())
        base = self._sampling(req, len(ids), req.limit(), "messages", adapter, grammar)
        if req.logprobs:
            base = dataclasses.replace(base, logprobs=req.top_logprobs or 0)
        work = [(ids, self._choice_params(base, j, req.n)) for j in range(req.n)]
        job = await self._start(rec, work, http)
        rid = f"chatcmpl-{uuid.uuid4().hex}"
        if req.stream:
            return GuardedStream(self._chat_events(job, rid, req), lambda: self._end(job))
        try:
            results = await self._collect(job, http)
        finally:
            self._end(job)
        choices = [
            schemas.chat_choice(
                i, r.text, r.last.finish_reason, self._chat_logprobs(r.logprobs) if req.logprobs else None
            )
            for i, r in enumerate(results)
        ]
        return JSONResponse(
            schemas.body(schemas.CHAT_COMPLETION, rid, self.model_name, choices, _usage(results, req.n))
        )

    async def tokenize(self, req: schemas.TokenizeRequest) -> dict[str, Any]:
        """vLLM's ``/tokenize``: token ids of a prompt, or of chat messages through the template."""
        self._check_ready()
        self._check_model(req.model)
        if req.prompt is not None:
            add = True if req.add_special_tokens is None else req.add_special_tokens
            ids = await self._encode(req.prompt, add)
        else:
            messages = [{"role": m.role, "content": m.text()} for m in req.messages or []]
            ids = await self._encode_chat(messages, req.add_generation_prompt)
        strs = [self.engine.token_text(t) for t in ids] if req.return_token_strs else None
        return {
            "count": len(ids),
            "max_model_len": self.engine.context_length,
            "tokens": ids,
            "token_strs": strs,
        }

    async def detokenize(self, req: schemas.DetokenizeRequest) -> dict[str, Any]:
        """vLLM's ``/detokenize``: the text of token ids (special tokens included, as vLLM does)."""
        self._check_ready()
        self._check_model(req.model)
        ids = self._check_ids(req.tokens, param="tokens")
        return {"prompt": await self._decode(ids)}

    def tokenizer_info(self) -> dict[str, Any]:
        self._check_ready()
        return self.engine.tokenizer_info()

    # ------------------------------------------------------------ checks
    def _check_model(self, name: str | None) -> str | None:
        """The LoRA adapter ``name`` selects (None for the base model); 404 for an unknown name."""
        if name is None or name == self.model_name:
            return None
        if name in self._adapters():
            return name
        served = ", ".join(repr(m) for m in (self.model_name, *self._adapters()))
        raise APIError(
            404, f"model {name!r} does not exist; this server serves {served}",
            param="model", code="model_not_found",
        )  # fmt: skip

    def _check_ready(self) -> None:
        if self.draining:
            raise APIError(503, "server is shutting down", code="shutting_down", headers={"Retry-After": "5"})
        if not self.engine.is_ready():
            raise APIError(
                503, "the model is not loaded yet", code="model_not_ready", headers={"Retry-After": "5"}
            )

    def _check_prompt_count(self, prompts: int, n: int = 1) -> None:
        """Each prompt and choice takes an engine slot, so a request may not need more than ``max_concurrent``."""
        s = self.settings
        if prompts > s.max_prompts:
            raise APIError(400, f"at most {s.max_prompts} prompts per request, got {prompts}", param="prompt")
        if n > s.max_n:
            raise APIError(400, f"n is {n}; this server allows at most {s.max_n} choices", param="n")
        slots = self.admission.max_concurrent
        if prompts * n > slots:
            raise APIError(
                400, f"{prompts} prompt(s) x n={n} need {prompts * n} engine slots but this server runs at "
                f"most {slots} at once (--max-concurrent): send smaller requests",
                param="n" if n > 1 else "prompt",
            )  # fmt: skip

    def _check_features(self, req: schemas._OpenAISampling, *, logprobs: bool, echo: bool, adapter) -> None:
        """400 for options the engine cannot honour (rather than ignoring them)."""
        have = getattr(self.engine, "features", frozenset())
        asked = [
            ("logprobs", logprobs, "logprobs"),
            ("echo", echo, "echo"),
            ("penalties", bool(req.presence_penalty or req.frequency_penalty), "presence_penalty"),
            ("penalties", req.repetition_penalty not in (None, 1.0), "repetition_penalty"),
            ("logit_bias", bool(req.logit_bias), "logit_bias"),
            ("response_format", bool(req.response_format and req.response_format.constrained),
             "response_format"),
            ("lora", adapter is not None, "model"),
        ]  # fmt: skip
        for feature, wanted, param in asked:
            if wanted and feature not in have:
                raise APIError(400, f"{param} is not supported by this server's engine", param=param)
        vocab = self.engine.vocab_size
        for token, _ in req.bias_pairs():
            if token >= vocab:
                raise APIError(
                    400, f"logit_bias names token {token}, outside the vocabulary (0..{vocab - 1})",
                    param="logit_bias",
                )  # fmt: skip

    async def _grammar(self, fmt: schemas.ResponseFormat | None):
        """The compiled constraint for ``response_format`` (None for text), compiled off the event loop."""
        if fmt is None or not fmt.constrained:
            return None
        from nexus_llm.serve.engine.grammar import GrammarError

        try:
            return await asyncio.to_thread(self.engine.compile_grammar, fmt.schema_value())
        except GrammarError as err:
            raise APIError(400, str(err), param="response_format", code="invalid_schema") from None
        except EngineNotReady as err:
            raise APIError(503, str(err), code="model_not_ready", headers={"Retry-After": "5"}) from None

    def _check_ids(self, ids: list[int], param: str = "prompt") -> list[int]:
        vocab = self.engine.vocab_size
        bad = next((t for t in ids if not 0 <= t < vocab), None)
        if bad is not None:
            raise APIError(400, f"token id {bad} is outside the vocabulary (0..{vocab - 1})", param=param)
        return ids

    def _stops(self, stops: tuple[str, ...]) -> tuple[str, ...]:
        s = self.settings
        if len(stops) > s.max_stop:
            raise APIError(400, f"at most {s.max_stop} stop strings, got {len(stops)}", param="stop")
        for stop in stops:
            if not stop or len(stop) > s.max_stop_chars:
                raise APIError(
                    400, f"each stop string must have 1 to {s.max_stop_chars} characters", param="stop"
                )
        return stops

    def _max_tokens(self, prompt_tokens: int, asked: int | None, default: int, where: str) -> int:
        context = self.engine.context_length
        room = context - prompt_tokens
        if room < 1:
            raise APIError(
                400, f"the prompt has {prompt_tokens} tokens but the model's context is {context}: shorten it",
                param=where, code="context_length_exceeded",
            )  # fmt: skip
        if asked is None:
            return min(default, room, self.settings.max_tokens)
        if asked > self.settings.max_tokens:
            raise APIError(
                400, f"max_tokens is {asked}; this server allows at most {self.settings.max_tokens}",
                param="max_tokens",
            )  # fmt: skip
        if asked > room:
            raise APIError(
                400, f"prompt ({prompt_tokens} tokens) + max_tokens ({asked}) exceeds the context of "
                f"{context} tokens: ask for at most {room}",
                param="max_tokens", code="context_length_exceeded",
            )  # fmt: skip
        return asked

    def _sampling(
        self, req: schemas._OpenAISampling, prompt_tokens: int, asked: int | None, where: str,
        adapter: str | None = None, grammar: Any = None,
    ) -> SamplingParams:  # fmt: skip
        """The request's sampling settings; what it leaves out comes from the model's generation_config."""
        gen = getattr(self.engine, "generation_defaults", None) or {}
        default_max = min(gen.get("max_tokens", self.settings.default_max_tokens), self.settings.max_tokens)
        return SamplingParams(
            max_tokens=self._max_tokens(prompt_tokens, asked, default_max, where),
            temperature=_first(req.temperature, gen.get("temperature"), 1.0),
            top_p=_first(req.top_p, gen.get("top_p"), 1.0),
            top_k=_first(req.top_k, gen.get("top_k"), 0),
            seed=None if req.seed is None else req.seed % 2**64,
            stop=self._stops(req.stop_strings()),
            ignore_eos=req.ignore_eos,
            presence_penalty=req.presence_penalty,
            frequency_penalty=req.frequency_penalty,
            repetition_penalty=_first(req.repetition_penalty, gen.get("repetition_penalty"), 1.0),
            logit_bias=req.bias_pairs(),
            grammar=grammar,
            adapter=adapter,
        )

    @staticmethod
    def _choice_params(base: SamplingParams, j: int, n: int, prompt_logprobs: int | None = None):
        """Choice ``j`` of ``n``: its own seed (seed + j) so that choices differ but stay reproducible."""
        seed = base.seed if base.seed is None or n == 1 else (base.seed + j) % 2**64
        return dataclasses.replace(base, seed=seed, prompt_logprobs=prompt_logprobs)

    async def _encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        # Always in a worker thread, however short the text: encoding waits for the engine's tokenizer
        # lock, which a huge chat request may hold for seconds, and the event loop must never wait.
        try:
            return await asyncio.to_thread(self.engine.encode, text, add_special_tokens)
        except EngineNotReady as err:
            raise APIError(503, str(err), code="model_not_ready", headers={"Retry-After": "5"}) from None
        except (ValueError, TypeError) as err:
            raise APIError(400, f"cannot tokenize the prompt: {err}", param="prompt") from None

    async def _decode(self, ids: list[int]) -> str:
        try:
            return await asyncio.to_thread(self.engine.decode, ids)
        except EngineNotReady as err:
            raise APIError(503, str(err), code="model_not_ready", headers={"Retry-After": "5"}) from None

    async def _encode_chat(
        self, messages: list[dict[str, str]], add_generation_prompt: bool = True
    ) -> list[int]:
        try:
            return await asyncio.to_thread(self.engine.encode_chat, messages, add_generation_prompt)
        except NoChatTemplate as err:
            raise APIError(400, str(err), param="messages", code="no_chat_template") from None
        except EngineNotReady as err:
            raise APIError(503, str(err), code="model_not_ready", headers={"Retry-After": "5"}) from None
        except Exception as err:  # the template rejected the conversation (jinja raise_exception)
            raise APIError(400, f"the chat template rejected the messages: {err}", param="messages") from None

    # ------------------------------------------------------------ engine calls
    async def _start(
        self, rec: RequestRecord, work: list[tuple[list[int], SamplingParams]], http: Request
    ) -> Job:
        """Take one admission slot per prompt, all at once, and submit them (429 when there is no room)."""
        job = Job(rec)
        try:
            await self._admit(len(work), http)
            job.slots = len(work)
            previous = None
            for ids, params in work:
                job.handles.append(self.engine.submit(ids, params))
                if ids is not previous:  # the choices of one prompt share its ids: count it once
                    rec.prompt_tokens += len(ids)
                previous = ids
        except (Overloaded, EngineOverloaded) as err:
            self._end(job)
            retry = getattr(err, "retry_after", self.admission.retry_after())
            raise APIError(
                429, str(err), code="server_overloaded", headers={"Retry-After": str(retry)}
            ) from None
        except EngineNotReady as err:
            self._end(job)
            raise APIError(503, str(err), code="model_not_ready", headers={"Retry-After": "5"}) from None
        except Unsupported as err:
            self._end(job)
            raise APIError(400, str(err), param=err.param) from None
        except BaseException:
            self._end(job)
            raise
        rec.request_id = job.handles[0].request_id if job.handles else None
        return job

    async def _admit(self, slots: int, http: Request) -> None:
        """Take ``slots`` admission slots; while queued, watch the connection and leave if the client does."""
        if self.admission.try_acquire(slots):
            return
        waiting = asyncio.ensure_future(self.admission.acquire(slots))
        try:
            granted_or_failed = await _done_before_disconnect(waiting, http)
        except BaseException:  # this request was cancelled: hold nothing
            if not waiting.cancel() and not waiting.cancelled() and waiting.exception() is None:
                self.admission.release(slots)
            raise
        if granted_or_failed:
            waiting.result()  # raises Overloaded after the queue timeout
            return
        waiting.cancel()  # leaves the queue at once (a grant racing with this is given back)
        _client_gone(http)

    def _end(self, job: Job) -> None:
        """Cancel what still runs, give the slots back, and note the tokens (idempotent)."""
        job.cancel_unfinished()
        if job.slots:
            self.admission.release(job.slots)
            self.admission.record(time.perf_counter() - job.record.start)
        job.slots = 0

    async def _collect(self, job: Job, http: Request) -> list[Result]:
        """Wait for every request of ``job`` to finish; cancel them all if the client goes away."""

        async def drain(handle: RequestHandle) -> Result:
            parts: list[str] = []
            logprobs: list[TokenLogprob] = []
            prompt_lp = None
            async for chunk in handle:
                self._on_chunk(job.record, chunk)
                parts.append(chunk.text)
                logprobs.extend(chunk.logprobs)
                if chunk.prompt_logprobs is not None:
                    prompt_lp = chunk.prompt_logprobs
            return Result("".join(parts), handle.finished, logprobs, prompt_lp)

        work = asyncio.ensure_future(asyncio.gather(*(drain(h) for h in job.handles)))
        if not await _done_before_disconnect(work, http):
            job.cancel_unfinished()
            work.cancel()
            _client_gone(http)
        results = work.result()
        if any(r.last.finish_reason == "error" for r in results):
            raise APIError(500, "generation failed on the server", code="generation_failed")
        if any(r.last.finish_reason == "cancelled" for r in results):
            raise APIError(
                503, "the request was cancelled (server shutting down)", code="shutting_down",
                headers={"Retry-After": "5"},
            )  # fmt: skip
        return results

    # ------------------------------------------------------------ logprobs
    def _completion_logprobs(
        self, entries: list[tuple[int, TokenLogprob | None]], offset: int
    ) -> dict[str, Any]:
        """OpenAI's completions ``logprobs`` object; ``offset`` is where the first token's text starts."""
        text = self.engine.token_text
        tokens, values, tops, offsets = [], [], [], []
        for token, entry in entries:
            tokens.append(text(token))
            offsets.append(offset)
            offset += len(tokens[-1])
            if entry is None:
                values.append(None)
                tops.append(None)
                continue
            values.append(entry.logprob)
            top = {text(t): lp for t, lp in entry.top}
            top.setdefault(text(token), entry.logprob)  # the chosen token is always listed, as in OpenAI's
            tops.append(top)
        return {"tokens": tokens, "token_logprobs": values, "top_logprobs": tops, "text_offset": offsets}

    def _chat_logprobs(self, entries: list[TokenLogprob]) -> dict[str, Any]:
        """OpenAI's chat ``logprobs`` object: ``content`` with token, logprob, bytes and top_logprobs."""
        text, raw = self.engine.token_text, self.engine.token_bytes

        def one(token: int, logprob: float) -> dict[str, Any]:
            return {"token": text(token), "logprob": logprob, "bytes": list(raw(token))}

        return {
            "content": [
                {**one(e.token, e.logprob), "top_logprobs": [one(t, lp) for t, lp in e.top]} for e in entries
            ]
        }

    def _on_chunk(self, rec: RequestRecord, chunk: Chunk) -> None:
        if rec.ttft_s is None and (chunk.text or chunk.finish_reason):
            rec.ttft_s = time.perf_counter() - rec.start
        if chunk.finish_reason is not None:
            rec.completion_tokens += chunk.completion_tokens
            rec.finish_reason = chunk.finish_reason

    async def _merged(self, job: Job) -> AsyncIterator[tuple[int, Chunk]]:
        """Chunks of all the job's requests as they come, tagged with the prompt index."""
        if len(job.handles) == 1:
            async for chunk in job.handles[0]:
                self._on_chunk(job.record, chunk)
                yield 0, chunk
            return
        queue: asyncio.Queue[tuple[int, Chunk]] = asyncio.Queue()

        async def pump(i: int, handle: RequestHandle) -> None:
            async for chunk in handle:
                queue.put_nowait((i, chunk))

        tasks = [asyncio.ensure_future(pump(i, h)) for i, h in enumerate(job.handles)]
        remaining = len(tasks)
        try:
            while remaining:
                i, chunk = await queue.get()
                self._on_chunk(job.record, chunk)
                yield i, chunk
                remaining -= chunk.finish_reason is not None
        finally:
            for t in tasks:
                t.cancel()

    async def _completion_events(
        self, job: Job, rid: str, req: schemas.CompletionRequest, items: list[Prompt]
    ) -> AsyncIterator[str]:
        model, n = self.model_name, req.n
        offsets = [0] * len(job.handles)
        first = [True] * len(job.handles)
        shared: dict[int, tuple[TokenLogprob | None, ...]] = {}
        async for i, chunk in self._merged(job):
            if chunk.finish_reason in ("error", "cancelled"):
                yield sse(_stream_error(chunk))
                break
            item = items[i // n]
            text = chunk.text
            entries: list[tuple[int, TokenLogprob | None]] = []
            if chunk.prompt_logprobs is not None:
                shared[i // n] = chunk.prompt_logprobs
            if first[i]:
                first[i] = False
                if req.echo:
                    text = item.text + text
                    if req.logprobs is not None:
                        entries += list(zip(item.ids, shared.get(i // n, ()), strict=False))
            entries += [(e.token, e) for e in chunk.logprobs]
            logprobs = None
            if req.logprobs is not None:
                logprobs = self._completion_logprobs(entries, offsets[i])
                offsets[i] += sum(len(t) for t in logprobs["tokens"])
            choice = schemas.completion_choice(i, text, chunk.finish_reason, logprobs)
            yield sse(schemas.body(schemas.TEXT_COMPLETION, rid, model, [choice]))
        if req.include_usage:
            yield sse(schemas.body(schemas.TEXT_COMPLETION, rid, model, [], _record_usage(job.record)))
        yield "data: [DONE]\n\n"

    async def _chat_events(
        self, job: Job, rid: str, req: schemas.ChatCompletionRequest
    ) -> AsyncIterator[str]:
        model = self.model_name
        for i in range(len(job.handles)):
            role = schemas.chat_delta(i, {"role": "assistant", "content": ""}, None)
            yield sse(schemas.body(schemas.CHAT_CHUNK, rid, model, [role]))
        async for i, chunk in self._merged(job):
            if chunk.finish_reason in ("error", "cancelled"):
                yield sse(_stream_error(chunk))
                break
            logprobs = self._chat_logprobs(list(chunk.logprobs)) if req.logprobs and chunk.logprobs else None
            if chunk.text or logprobs:
                delta = schemas.chat_delta(i, {"content": chunk.text}, None, logprobs)
                yield sse(schemas.body(schemas.CHAT_CHUNK, rid, model, [delta]))
            if chunk.finish_reason:
                delta = schemas.chat_delta(i, {}, chunk.finish_reason)
                yield sse(schemas.body(schemas.CHAT_CHUNK, rid, model, [delta]))
        if req.include_usage:
            yield sse(schemas.body(schemas.CHAT_CHUNK, rid, model, [], _record_usage(job.record)))
        yield "data: [DONE]\n\n"


def _record(http: Request) -> RequestRecord:
    rec = getattr(http.state, "record", None)
    if rec is None:  # called without the observing middleware (unit use)
        rec = RequestRecord(endpoint=http.url.path)
        http.state.record = rec
    return rec


def _client_gone(http: Request) -> None:
    rec = _record(http)
    rec.status, rec.error_type = 499, "client_disconnected"
    raise ClientGone()


async def _wait_disconnect(http: Request) -> None:
    while True:
        message = await http.receive()
        if message["type"] == "http.disconnect":
            return


async def _done_before_disconnect(task: asyncio.Future, http: Request) -> bool:
    """Wait for ``task`` or for the client to go away, whichever comes first: is ``task`` done?"""
    watch = asyncio.ensure_future(_wait_disconnect(http))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
    return task.done()


def _usage(results: list[Result], n: int = 1) -> dict[str, int]:
    """Usage as OpenAI counts it: each prompt once (not once per choice), and every choice's tokens."""
    prompt = sum(r.last.prompt_tokens for r in results[::n])
    completion = sum(r.last.completion_tokens for r in results)
    return schemas.usage(prompt, completion)


def _first(*values):
    """The first value that is not None."""
    return next(v for v in values if v is not None)


def _record_usage(rec: RequestRecord) -> dict[str, int]:
    return schemas.usage(rec.prompt_tokens, rec.completion_tokens)


def _stream_error(chunk: Chunk) -> dict[str, Any]:
    reason = "the request was cancelled (server shutting down)" if chunk.finish_reason == "cancelled" else (
        chunk.error or "generation failed on the server"
    )  # fmt: skip
    kind = "service_unavailable" if chunk.finish_reason == "cancelled" else "internal_error"
    return {"error": {"message": reason, "type": kind, "param": None, "code": None}}
