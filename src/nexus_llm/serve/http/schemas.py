"""The wire protocol: request bodies (validated, strictly typed) and response/chunk builders.

Requests follow the OpenAI API (``/v1/completions``, ``/v1/chat/completions``), vLLM's ``/tokenize``
and ``/detokenize``, and the guide's original ``/generate``. Types are strict (``"10"`` or ``true`` is
not a ``max_tokens``), unknown keys are ignored as OpenAI clients send many optional ones, and options
this server cannot honour (``suffix``, tools, images, ``best_of`` other than ``n``) are refused with a
400 rather than silently ignored. Limits that depend on the server's settings or the model (caps,
context, vocabulary, what the engine supports) are checked in :mod:`nexus_llm.serve.http.serving`.
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


class JSONSchemaFormat(_Request):
    """``response_format.json_schema``: the schema a JSON answer must follow."""

    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False, populate_by_name=True)

    name: Text = Field("response", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: Text | None = None
    schema_: dict[str, Any] | bool | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Request):
    """OpenAI's ``response_format``: ``text``, ``json_object`` (any JSON object) or ``json_schema``."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("response_format of type json_schema needs a json_schema object")
        return self

    @property
    def constrained(self) -> bool:
        return self.type != "text"

    def schema_value(self) -> dict[str, Any] | bool | None:
        """The JSON schema to enforce (None: any JSON object)."""
        if (
            self.type == "json_schema"
            and self.json_schema is not None
            and self.json_schema.schema_ is not None
        ):
            return self.json_schema.schema_
        return None


class _OpenAISampling(_WithStop):
    """Fields shared by completions and chat."""

    model: Text | None = Field(
        None, description="the served model, or a LoRA adapter's name (see /v1/models)"
    )
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=0, le=1_000_000, description="extension: keep the k likeliest tokens")
    n: int = Field(1, ge=1, le=128, description="choices per prompt (each takes an engine slot)")
    stream: bool = False
    stream_options: StreamOptions | None = None
    seed: int | None = Field(None, **SEED_RANGE)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    repetition_penalty: float | None = Field(
        None, gt=0.0, le=10.0, description="extension (vLLM's): transformers' repetition penalty"
    )
    logit_bias: dict[str, float] | None = Field(
        None, description="token id (as a string) -> bias in [-100, 100]"
    )
    response_format: ResponseFormat | None = None
    user: Text | None = None
    ignore_eos: bool = Field(False, description="extension: generate exactly max_tokens (benchmarks)")

    @field_validator("logit_bias")
    @classmethod
    def _bias(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        if not v:
            return v
        if len(v) > MAX_LOGIT_BIAS:
            raise ValueError(f"at most {MAX_LOGIT_BIAS} logit_bias entries, got {len(v)}")
        for key, bias in v.items():
            if not key.isdigit() or len(key) > 9:
                raise ValueError(f'logit_bias keys are token ids as strings (like "50256"), not {key[:20]!r}')
            if not -100.0 <= bias <= 100.0:
                raise ValueError(f"logit_bias values must be between -100 and 100, got {bias} for {key}")
        return v

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def bias_pairs(self) -> tuple[tuple[int, float], ...]:
        return tuple((int(k), float(v)) for k, v in (self.logit_bias or {}).items())


MAX_LOGIT_BIAS = 1024
Prompt = Text | list[Text] | list[int] | list[list[int]]


class CompletionRequest(_OpenAISampling):
    prompt: Prompt
    echo: bool = Field(False, description="put the prompt before the completion (with its logprobs if asked)")
    logprobs: int | None = Field(
        None, ge=0, le=20, description="logprobs of each token and its N likeliest alternatives"
    )
    best_of: int | None = Field(None, ge=1, le=128, description="only best_of = n (or unset) is supported")
    suffix: Text | None = None

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

    @model_validator(mode="after")
    def _best_of(self) -> CompletionRequest:
        if self.best_of is not None and self.best_of not in (1, self.n):
            raise ValueError("best_of other than n is not supported (the server returns every choice)")
        return self

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
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    tools: list[Any] | None = None
    tool_choice: Any = None

    @model_validator(mode="after")
    def _unsupported(self) -> ChatCompletionRequest:
        if self.tools:
            raise ValueError("tools are not supported")
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs: true")
        return self

    def limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def template_messages(self) -> list[dict[str, str]]:
        return [{"role": m.role, "content": m.text()} for m in self.messages]


class TokenizeRequest(_Request):
    """vLLM's ``POST /tokenize``: a ``prompt`` or chat ``messages``."""

    model: Text | None = None
    prompt: Text | None = None
    messages: list[ChatMessage] | None = Field(None, min_length=1, max_length=10_000)
    add_special_tokens: bool | None = None
    add_generation_prompt: bool = True
    return_token_strs: bool = False

    @model_validator(mode="after")
    def _one_input(self) -> TokenizeRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of prompt or messages")
        return self


class DetokenizeRequest(_Request):
    """vLLM's ``POST /detokenize``."""

    model: Text | None = None
    tokens: list[int] = Field(max_length=1_000_000)


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


def completion_choice(
    index: int, text: str, finish_reason: str | None, logprobs: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}


def chat_choice(
    index: int, text: str, finish_reason: str | None, logprobs: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "index": index,
        "message": {"role": "assistant", "content": text},
        "logprobs": logprobs,
        "finish_reason": finish_reason,
    }


def chat_delta(
    index: int, delta: dict[str, str], finish_reason: str | None, logprobs: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}


def models_body(model: str, created: int, adapters: tuple[str, ...] = ()) -> dict[str, Any]:
    data = [{"id": model, "object": "model", "created": created, "owned_by": "nexus", "root": model,
             "parent": None}]  # fmt: skip
    data += [
        {
            "id": name,
            "object": "model",
            "created": created,
            "owned_by": "nexus",
            "root": name,
            "parent": model,
        }
        for name in adapters
    ]
    return {"object": "list", "data": data}
