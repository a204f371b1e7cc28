"""The serving layer: validated requests in, engine calls, protocol responses out.

The routers in :mod:`nexus_llm.serve.app` call one method here per endpoint. This module owns the
limits that depend on the model and settings (context, caps, stop strings), admission (429), the
disconnect watch, and the mapping of engine chunks to OpenAI bodies and server-sent events.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from nexus_llm.serve import schemas
from nexus_llm.serve.admission import Admission, Overloaded
from nexus_llm.serve.config import ServeConfig
from nexus_llm.serve.engine import (
    Chunk,
    Engine,
    EngineNotReady,
    EngineOverloaded,
    NoChatTemplate,
    RequestHandle,
    SamplingParams,
)
from nexus_llm.serve.errors import APIError
from nexus_llm.serve.metrics import RequestRecord


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
    """Endpoint logic over an :class:`~nexus_llm.serve.engine.Engine`."""

    def __init__(self, engine: Engine, settings: ServeConfig, admission: Admission, model_name: str) -> None:
        self.engine = engine
        self.settings = settings
        self.admission = admission
        self.model_name = model_name
        self.created = int(time.time())
        self.draining = False

    # ------------------------------------------------------------ endpoints
    def models(self) -> dict[str, Any]:
        return schemas.models_body(self.model_name, self.created)

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
            ((text, last),) = await self._collect(job, http)
        finally:
            self._end(job)
        return JSONResponse({"response": text, "tokens_generated": last.completion_tokens})

    async def completions(self, req: schemas.CompletionRequest, http: Request) -> Response:
        rec = _record(http)
        self._check_model(req.model)
        self._check_ready()
        prompts = req.prompts()
        self._check_prompt_count(len(prompts))
        work = []
        for prompt in prompts:
            ids = await self._encode(prompt) if isinstance(prompt, str) else self._check_ids(prompt)
            work.append((ids, self._sampling(req, len(ids), req.max_tokens, "prompt")))
        job = await self._start(rec, work, http)
        rid = f"cmpl-{uuid.uuid4().hex}"
        if req.stream:
            return GuardedStream(self._completion_events(job, rid, req.include_usage), lambda: self._end(job))
        try:
            results = await self._collect(job, http)
        finally:
            self._end(job)
        choices = [
            schemas.completion_choice(i, text, last.finish_reason) for i, (text, last) in enumerate(results)
        ]
        return JSONResponse(
            schemas.body(schemas.TEXT_COMPLETION, rid, self.model_name, choices, _usage(results))
        )

    async def chat(self, req: schemas.ChatCompletionRequest, http: Request) -> Response:
        rec = _record(http)
        self._check_model(req.model)
        self._check_ready()
        ids = await self._encode_chat(req.template_messages())
        job = await self._start(rec, [(ids, self._sampling(req, len(ids), req.limit(), "messages"))], http)
        rid = f"chatcmpl-{uuid.uuid4().hex}"
        if req.stream:
            return GuardedStream(self._chat_events(job, rid, req.include_usage), lambda: self._end(job))
        try:
            results = await self._collect(job, http)
        finally:
            self._end(job)
        choices = [schemas.chat_choice(i, text, last.finish_reason) for i, (text, last) in enumerate(results)]
        return JSONResponse(
            schemas.body(schemas.CHAT_COMPLETION, rid, self.model_name, choices, _usage(results))
        )

    # ------------------------------------------------------------ checks
    def _check_model(self, name: str | None) -> None:
        if name is not None and name != self.model_name:
            raise APIError(
                404, f"model {name!r} does not exist; this server serves {self.model_name!r}",
                param="model", code="model_not_found",
            )  # fmt: skip

    def _check_ready(self) -> None:
        if self.draining:
            raise APIError(503, "server is shutting down", code="shutting_down", headers={"Retry-After": "5"})
        if not self.engine.is_ready():
            raise APIError(
                503, "the model is not loaded yet", code="model_not_ready", headers={"Retry-After": "5"}
            )

    def _check_prompt_count(self, n: int) -> None:
        """Each prompt takes an engine slot, so a request may not have more than ``max_concurrent``."""
        s = self.settings
        if n > s.max_prompts:
            raise APIError(400, f"at most {s.max_prompts} prompts per request, got {n}", param="prompt")
        if n > self.admission.max_concurrent:
            raise APIError(
                400, f"{n} prompts but this server runs at most {self.admission.max_concurrent} at once "
                "(--max-concurrent): send them in smaller requests", param="prompt",
            )  # fmt: skip

    def _check_ids(self, ids: list[int]) -> list[int]:
        vocab = self.engine.vocab_size
        bad = next((t for t in ids if not 0 <= t < vocab), None)
        if bad is not None:
            raise APIError(400, f"token id {bad} is outside the vocabulary (0..{vocab - 1})", param="prompt")
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

    def _sampling(self, req: schemas._OpenAISampling, prompt_tokens: int, asked: int | None, where: str):
        return SamplingParams(
            max_tokens=self._max_tokens(prompt_tokens, asked, self.settings.default_max_tokens, where),
            temperature=1.0 if req.temperature is None else req.temperature,
            top_p=1.0 if req.top_p is None else req.top_p,
            top_k=req.top_k or 0,
            seed=None if req.seed is None else req.seed % 2**64,
            stop=self._stops(req.stop_strings()),
            ignore_eos=req.ignore_eos,
        )

    async def _encode(self, text: str) -> list[int]:
        # Always in a worker thread, however short the text: encoding waits for the engine's tokenizer
        # lock, which a huge chat request may hold for seconds, and the event loop must never wait.
        try:
            return await asyncio.to_thread(self.engine.encode, text)
        except EngineNotReady as err:
            raise APIError(503, str(err), code="model_not_ready", headers={"Retry-After": "5"}) from None
        except (ValueError, TypeError) as err:
            raise APIError(400, f"cannot tokenize the prompt: {err}", param="prompt") from None

    async def _encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        try:
            return await asyncio.to_thread(self.engine.encode_chat, messages)
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
            for ids, params in work:
                job.handles.append(self.engine.submit(ids, params))
                rec.prompt_tokens += len(ids)
        except (Overloaded, EngineOverloaded) as err:
            self._end(job)
            retry = getattr(err, "retry_after", self.admission.retry_after())
            raise APIError(
                429, str(err), code="server_overloaded", headers={"Retry-After": str(retry)}
            ) from None
        except EngineNotReady as err:
            self._end(job)
            raise APIError(503, str(err), code="model_not_ready", headers={"Retry-After": "5"}) from None
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

    async def _collect(self, job: Job, http: Request) -> list[tuple[str, Chunk]]:
        """Wait for every request of ``job`` to finish; cancel them all if the client goes away."""

        async def drain(handle: RequestHandle) -> tuple[str, Chunk]:
            parts = []
            async for chunk in handle:
                self._on_chunk(job.record, chunk)
                parts.append(chunk.text)
            return "".join(parts), handle.finished

        work = asyncio.ensure_future(asyncio.gather(*(drain(h) for h in job.handles)))
        if not await _done_before_disconnect(work, http):
            job.cancel_unfinished()
            work.cancel()
            _client_gone(http)
        results = work.result()
        if any(last.finish_reason == "error" for _, last in results):
            raise APIError(500, "generation failed on the server", code="generation_failed")
        return results

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

    async def _completion_events(self, job: Job, rid: str, include_usage: bool) -> AsyncIterator[str]:
        model = self.model_name
        async for i, chunk in self._merged(job):
            if chunk.finish_reason in ("error", "cancelled"):
                yield sse(_stream_error(chunk))
                break
            choice = schemas.completion_choice(i, chunk.text, chunk.finish_reason)
            yield sse(schemas.body(schemas.TEXT_COMPLETION, rid, model, [choice]))
        if include_usage:
            yield sse(schemas.body(schemas.TEXT_COMPLETION, rid, model, [], _record_usage(job.record)))
        yield "data: [DONE]\n\n"

    async def _chat_events(self, job: Job, rid: str, include_usage: bool) -> AsyncIterator[str]:
        model = self.model_name
        role = schemas.chat_delta(0, {"role": "assistant", "content": ""}, None)
        yield sse(schemas.body(schemas.CHAT_CHUNK, rid, model, [role]))
        async for i, chunk in self._merged(job):
            if chunk.finish_reason in ("error", "cancelled"):
                yield sse(_stream_error(chunk))
                break
            if chunk.text:
                delta = schemas.chat_delta(i, {"content": chunk.text}, None)
                yield sse(schemas.body(schemas.CHAT_CHUNK, rid, model, [delta]))
            if chunk.finish_reason:
                delta = schemas.chat_delta(i, {}, chunk.finish_reason)
                yield sse(schemas.body(schemas.CHAT_CHUNK, rid, model, [delta]))
        if include_usage:
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


def _usage(results: list[tuple[str, Chunk]]) -> dict[str, int]:
    prompt = sum(last.prompt_tokens for _, last in results)
    completion = sum(last.completion_tokens for _, last in results)
    return schemas.usage(prompt, completion)


def _record_usage(rec: RequestRecord) -> dict[str, int]:
    return schemas.usage(rec.prompt_tokens, rec.completion_tokens)


def _stream_error(chunk: Chunk) -> dict[str, Any]:
    reason = "the request was cancelled (server shutting down)" if chunk.finish_reason == "cancelled" else (
        chunk.error or "generation failed on the server"
    )  # fmt: skip
    kind = "service_unavailable" if chunk.finish_reason == "cancelled" else "internal_error"
    return {"error": {"message": reason, "type": kind, "param": None, "code": None}}
