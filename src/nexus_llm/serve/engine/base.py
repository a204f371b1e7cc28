"""The engine seam: what the HTTP layer asks of a text-generation backend.

The HTTP layer knows only this module. It tokenizes through the engine, submits token ids with
:class:`SamplingParams`, and reads :class:`Chunk` objects from the returned :class:`RequestHandle`
(an async iterator). The built-in backend is :class:`nexus_llm.serve.engine.batching.BatchingEngine`
(continuous batching in a worker thread); another backend (vLLM on a GPU, say) plugs in by
implementing :class:`Engine`, and tests can drive any backend without HTTP.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from nexus_llm.serve.engine.prompts import PromptEncoder

FinishReason = Literal["stop", "length", "cancelled", "error"]


@dataclass(frozen=True)
class SamplingParams:
    """How to continue one prompt. ``temperature == 0`` means greedy decoding.

    ``logprobs`` asks for the log-probability of each generated token and of its ``logprobs`` likeliest
    alternatives (0 = the chosen token's only); ``prompt_logprobs`` the same for every prompt token
    (what ``echo`` + ``logprobs`` on /v1/completions returns). Log-probabilities are the model's own
    distribution (log-softmax of the logits), before penalties, bias, grammar and temperature, as vLLM
    returns them by default. ``grammar`` is a compiled constraint from :mod:`nexus_llm.serve.engine.grammar`;
    ``adapter`` names a LoRA adapter loaded beside the base model.
    """

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = no top-k cut
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False
    logprobs: int | None = None
    prompt_logprobs: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: tuple[tuple[int, float], ...] = ()
    grammar: Any = None
    adapter: str | None = None

    @property
    def penalized(self) -> bool:
        return bool(self.presence_penalty or self.frequency_penalty or self.repetition_penalty != 1.0)


@dataclass(frozen=True)
class TokenLogprob:
    """A token's log-probability and its likeliest alternatives (token id, log-probability), best first."""

    token: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


@dataclass(frozen=True)
class Chunk:
    """New text of one request since its previous chunk; the last chunk has a ``finish_reason``.

    ``logprobs`` covers the tokens generated since the previous chunk (when asked for); the first chunk
    carries ``prompt_logprobs`` (None for the first prompt token, which has no context).
    """

    text: str
    completion_tokens: int
    prompt_tokens: int
    finish_reason: FinishReason | None = None
    error: str | None = None
    logprobs: tuple[TokenLogprob, ...] = ()
    prompt_logprobs: tuple[TokenLogprob | None, ...] | None = None


@dataclass
class EngineStats:
    """A snapshot for /metrics and /health (counters only grow)."""

    ready: bool
    running: int
    waiting: int
    steps: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    finished: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    cached_prompt_tokens: int = 0  # prompt tokens taken from the prefix cache instead of computed


class Unsupported(ValueError):
    """The engine cannot honour an option of the request (the HTTP layer answers 400)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class EngineOverloaded(Exception):
    """The engine cannot take another request now (its own waiting list is full)."""


class NoChatTemplate(ValueError):
    """The tokenizer has no chat template, so chat requests cannot be rendered."""


class EngineNotReady(Exception):
    """The model is not loaded yet, the engine failed, or it is shutting down."""


def check_prompt_length(prompt_ids: list[int], context_length: int) -> None:
    """Every engine's ``submit`` check: a prompt leaves room for at least one generated token."""
    if not prompt_ids or len(prompt_ids) >= context_length:
        raise ValueError(f"a prompt must have 1 to {context_length - 1} tokens, got {len(prompt_ids)}")


_ids = itertools.count(1)


class RequestHandle:
    """One submitted request: iterate for chunks (on the submitting event loop), ``cancel()`` to stop it.

    The engine delivers chunks on the handle's event loop (``loop.call_soon_threadsafe(handle.push, ...)``);
    cancelling is idempotent and safe from any thread. Iteration ends after the chunk that carries a ``finish_reason``.
    """

    def __init__(self, prompt_tokens: int, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.request_id = f"req-{next(_ids)}"
        self.prompt_tokens = prompt_tokens
        self.loop = loop or asyncio.get_running_loop()
        self.queue: asyncio.Queue[Chunk] = asyncio.Queue()
        self.cancelled = False
        self.finished: Chunk | None = None

    def cancel(self) -> None:
        self.cancelled = True

    def push(self, chunk: Chunk) -> None:
        """Deliver a chunk (call on the handle's event loop)."""
        self.queue.put_nowait(chunk)

    def __aiter__(self) -> AsyncIterator[Chunk]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Chunk]:
        while self.finished is None:
            chunk = await self.queue.get()
            if chunk.finish_reason is not None:
                self.finished = chunk
            yield chunk


class EngineCore:
    """What every engine shares: its loading state, waiting for it, and prompt encoding once loaded.

    A subclass loads its model on ``_thread``, then sets ``_encoder`` and ``_ready``, or ``_error`` if
    loading failed; ``shutdown`` sets ``_stopping``.
    """

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._error: str | None = None
        self._encoder: PromptEncoder | None = None  # set once the model is loaded

    def is_ready(self) -> bool:
        return self._ready.is_set() and self._error is None and not self._stopping

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until the model is loaded (True) or loading failed / timed out (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if self._error is not None or (deadline is not None and time.monotonic() > deadline):
                return False
        return True

    def _check_ready(self) -> None:
        if not self.is_ready():
            raise EngineNotReady(
                self._error or ("shutting down" if self._stopping else "the model is loading")
            )

    features: frozenset[str] = frozenset()
    """Options beyond plain sampling this engine honours (``FEATURES`` lists them all)."""

    adapters: tuple[str, ...] = ()
    """Names of the LoRA adapters served beside the base model."""

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Prompt text to ids. Blocks (on the tokenizer lock): call it off the event loop."""
        self._check_ready()
        return self._encoder.encode(text, add_special_tokens)

    def encode_chat(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True) -> list[int]:
        self._check_ready()
        return self._encoder.encode_chat(messages, add_generation_prompt)

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        self._check_ready()
        return self._encoder.decode(ids, skip_special_tokens)

    def token_text(self, token: int) -> str:
        return self._encoder.token_text(token)

    def token_bytes(self, token: int) -> bytes:
        return self._encoder.token_bytes(token)

    def tokenizer_info(self) -> dict[str, Any]:
        self._check_ready()
        return self._encoder.info(self.context_length)


FEATURES = frozenset({"logprobs", "echo", "penalties", "logit_bias", "response_format", "lora"})
"""``logprobs``: token logprobs; ``echo``: prompt logprobs; ``penalties``: presence, frequency and
repetition; ``logit_bias``; ``response_format``: JSON modes through a grammar; ``lora``: adapters."""


class Engine(Protocol):
    """A generation backend; see :class:`nexus_llm.serve.engine.batching.BatchingEngine`."""

    model_name: str

    @property
    def context_length(self) -> int: ...

    @property
    def vocab_size(self) -> int: ...

    def start(self) -> None:
        """Begin loading the model in the background; return at once."""

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop after the running requests finish (or ``timeout`` passes)."""

    def is_ready(self) -> bool:
        """The model is loaded and the engine's worker is alive."""

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until ready (True), or until loading failed or ``timeout`` passed (False)."""

    def stats(self) -> EngineStats: ...

    features: frozenset[str]
    adapters: tuple[str, ...]

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Prompt text to token ids (never empty with special tokens: an empty prompt becomes BOS).

        May block (a lock, a long text): the HTTP layer calls it in a worker thread, never on the loop."""

    def encode_chat(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True) -> list[int]:
        """Chat messages to token ids through the tokenizer's chat template (blocks, like ``encode``)."""

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        """Token ids to text (blocks, like ``encode``)."""

    def token_text(self, token: int) -> str:
        """One token's text (a table lookup: safe on the event loop)."""

    def token_bytes(self, token: int) -> bytes:
        """One token's bytes (a table lookup)."""

    def tokenizer_info(self) -> dict[str, Any]:
        """Special tokens, chat template and context, as vLLM's ``/tokenizer_info`` has them."""

    def submit(self, prompt_ids: list[int], params: SamplingParams) -> RequestHandle:
        """Queue a request (call on an event loop). Raises EngineOverloaded or EngineNotReady."""
