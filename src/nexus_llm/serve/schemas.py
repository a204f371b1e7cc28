"""The wire protocol: request bodies (validated, strictly typed) and response/chunk builders.

Requests follow the OpenAI API (``/v1/completions``, ``/v1/chat/completions``) and the guide's
original ``/generate``. Types are strict (``"10"`` or ``true`` is not a ``max_tokens``), unknown keys are
ignored as OpenAI clients send many optional ones, and options this server cannot honour (``n > 1``,
``logprobs``, penalties, tools, images) are refused with a 400 rather than silently ignored. Limits
that depend on the server's settings (caps, context) are checked in :mod:`nexus_llm.serve.serving`.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator


def _text(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (it contains an unpaired surrogate)") from None
    return value


Text = Annotated[str, AfterValidator(_text)]
SEED_RANGE = {"ge": -(2**63), "le": 2**64 - 1}


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)


class StreamOptions(_Request):
    include_usage: bool = False


class _WithStop(_Request):
    """The ``stop`` field, shared by every generating request (OpenAI's and the guide's)."""

    stop: Text | list[Text] | None = None

    def stop_strings(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class _OpenAISampling(_WithStop):
    """Fields shared by completions and chat."""

    model: Text | None = Field(None, description="must name the served model (see /v1/models)")
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=0, le=1_000_000, description="extension: keep the k likeliest tokens")
    n: int = Field(1, ge=1, le=1, description="only n=1 is supported")
    stream: bool = False
    stream_options: StreamOptions | None = None
    seed: int | None = Field(None, **SEED_RANGE)
    presence_penalty: float = Field(0.0, ge=0.0, le=0.0, description="not supported: must be 0")
    frequency_penalty: float = Field(0.0, ge=0.0, le=0.0, description="not supported: must be 0")
    logit_bias: dict[str, Any] | None = None
    user: Text | None = None
    ignore_eos: bool = Field(False, description="extension: generate exactly max_tokens (benchmarks)")

    @field_validator("logit_bias")
    @classmethod
    def _no_bias(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v:
            raise ValueError("logit_bias is not supported")
        return v

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


Prompt = Text | list[Text] | list[int] | list[list[int]]


class CompletionRequest(_OpenAISampling):
    prompt: Prompt
    echo: bool = Field(False, description="not supported: must be false")
    logprobs: int | None = Field(None, ge=0, le=0, description="not supported")
    best_of: int | None = Field(None, ge=1, le=1, description="not supported: must be 1")
    suffix: Text | None = None

    @field_validator("echo")
    @classmethod
    def _no_echo(cls, v: bool) -> bool:
        if v:
            raise ValueError("echo is not supported")
        return v

    @field_validator("suffix")
    @classmethod
    def _no_suffix(cls, v: str | None) -> str | None:
        if v:
            raise ValueError("suffix is not supported")
        return v

    @field_validator("prompt")
    @classmethod
    def _prompt_not_empty_list(cls, v: Prompt) -> Prompt:
        if isinstance(v, list) and not v:
            raise ValueError("prompt must not be an empty list")
        if isinstance(v, list) and isinstance(v[0], list) and any(not p for p in v):
            raise ValueError("token-id prompts must not be empty")
        return v

    def prompts(self) -> list[str | list[int]]:
        """The prompts of this request: one string, strings, one token-id list, or token-id lists."""
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if p and isinstance(p[0], int):
            return [list(p)]  # type: ignore[arg-type]
        return list(p)  # type: ignore[arg-type]


class TextPart(_Request):
    type: Literal["text"]
    text: Text


class ChatMessage(_Request):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Text | list[TextPart] | None = None
    name: Text | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatCompletionRequest(_OpenAISampling):
    messages: list[ChatMessage] = Field(min_length=1, max_length=10_000)
    max_completion_tokens: int | None = Field(None, ge=1, le=1_000_000)
    logprobs: bool = Field(False, description="not supported: must be false")
    top_logprobs: int | None = Field(None, ge=0, le=0)
    tools: list[Any] | None = None
    tool_choice: Any = None
    response_format: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _unsupported(self) -> ChatCompletionRequest:
        if self.logprobs:
            raise ValueError("logprobs is not supported")
        if self.tools:
            raise ValueError("tools are not supported")
        if self.response_format and self.response_format.get("type") not in (None, "text"):
            raise ValueError("only response_format {'type': 'text'} is supported")
        return self

    def limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def template_messages(self) -> list[dict[str, str]]:
        return [{"role": m.role, "content": m.text()} for m in self.messages]


class GenerateRequest(_WithStop):
    """The guide's original request (same fields and defaults), plus optional ``stop`` and ``seed``."""

    prompt: Text
    max_tokens: int = Field(512, ge=1, le=1_000_000)
    temperature: float = Field(0.8, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    seed: int | None = Field(None, **SEED_RANGE)


class GenerateResponse(BaseModel):
    response: str
    tokens_generated: int


# ---------------------------------------------------------------- responses
def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


TEXT_COMPLETION, CHAT_COMPLETION, CHAT_CHUNK = "text_completion", "chat.completion", "chat.completion.chunk"


def body(
    kind: str, rid: str, model: str, choices: list[dict[str, Any]], use: dict[str, int] | None = None
) -> dict[str, Any]:
    """A completion, chat completion or stream chunk (``kind`` is its ``object``) with optional usage."""
    out: dict[str, Any] = {"id": rid, "object": kind, "created": int(time.time()), "model": model}
    out["choices"] = choices
    if use is not None:
        out["usage"] = use
    return out


def completion_choice(index: int, text: str, finish_reason: str | None) -> dict[str, Any]:
    return {"index": index, "text": text, "logprobs": None, "finish_reason": finish_reason}


def chat_choice(index: int, text: str, finish_reason: str | None) -> dict[str, Any]:
    return {
        "index": index,
        "message": {"role": "assistant", "content": text},
        "logprobs": None,
        "finish_reason": finish_reason,
    }


def chat_delta(index: int, delta: dict[str, str], finish_reason: str | None) -> dict[str, Any]:
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}


def models_body(model: str, created: int) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": model, "object": "model", "created": created, "owned_by": "nexus"}],
    }
