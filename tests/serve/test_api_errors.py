"""A catalogue of malformed and hostile requests: each gets a 4xx with an OpenAI-style error body naming
the field, no 5xx ever, and the server keeps serving afterwards."""

from __future__ import annotations

import json

import httpx
import pytest

CHAT = "/v1/chat/completions"
COMP = "/v1/completions"
GEN = "/generate"
MSG = [{"role": "user", "content": "hi"}]
JSON = {"Content-Type": "application/json"}


def _raw(body: bytes) -> dict:
    return {"content": body, "headers": JSON}


# (name, method, path, request kwargs, expected status, expected `param` or None)
CASES = [
    ("bad json", "POST", COMP, _raw(b'{"prompt": "x",'), 400, None),
    ("json array body", "POST", COMP, {"json": [1, 2]}, 400, None),
    ("empty body", "POST", COMP, _raw(b""), 400, None),
    ("invalid utf-8 body", "POST", COMP, _raw(b'{"prompt": "\xff\xfe\xfd"}'), 400, None),
    ("lone surrogate in prompt", "POST", COMP, _raw(b'{"prompt": "a\\ud800b"}'), 400, "prompt"),
    ("NaN temperature", "POST", COMP, _raw(b'{"prompt": "x", "temperature": NaN}'), 400, "temperature"),
    ("deeply nested json", "POST", COMP, _raw(b"[" * 30_000 + b"]" * 30_000), 400, None),
    ("missing prompt", "POST", COMP, {"json": {"max_tokens": 5}}, 400, "prompt"),
    ("missing messages", "POST", CHAT, {"json": {"max_tokens": 5}}, 400, "messages"),
    ("prompt is a number", "POST", COMP, {"json": {"prompt": 123}}, 400, "prompt"),
    ("prompt is an empty list", "POST", COMP, {"json": {"prompt": []}}, 400, "prompt"),
    ("max_tokens as string", "POST", COMP, {"json": {"prompt": "x", "max_tokens": "10"}}, 400, "max_tokens"),
    ("max_tokens as bool", "POST", COMP, {"json": {"prompt": "x", "max_tokens": True}}, 400, "max_tokens"),
    ("max_tokens fractional", "POST", COMP, {"json": {"prompt": "x", "max_tokens": 1.5}}, 400, "max_tokens"),
    ("max_tokens negative", "POST", COMP, {"json": {"prompt": "x", "max_tokens": -5}}, 400, "max_tokens"),
    ("max_tokens zero", "POST", COMP, {"json": {"prompt": "x", "max_tokens": 0}}, 400, "max_tokens"),
    ("max_tokens huge", "POST", COMP, {"json": {"prompt": "x", "max_tokens": 10**12}}, 400, "max_tokens"),
    ("max_tokens above cap", "POST", COMP, {"json": {"prompt": "x", "max_tokens": 201}}, 400, "max_tokens"),
    ("prompt + max_tokens past context", "POST", COMP,
     {"json": {"prompt": "hello " * 60, "max_tokens": 200}}, 400, "max_tokens"),
    ("prompt longer than context", "POST", COMP, {"json": {"prompt": "zq " * 400}}, 400, "prompt"),
    ("chat longer than context", "POST", CHAT,
     {"json": {"messages": [{"role": "user", "content": "zq " * 400}]}}, 400, "messages"),
    ("temperature negative", "POST", COMP, {"json": {"prompt": "x", "temperature": -1}}, 400, "temperature"),
    ("temperature huge", "POST", COMP, {"json": {"prompt": "x", "temperature": 1e9}}, 400, "temperature"),
    ("top_p zero", "POST", COMP, {"json": {"prompt": "x", "top_p": 0}}, 400, "top_p"),
    ("top_p above one", "POST", COMP, {"json": {"prompt": "x", "top_p": 1.5}}, 400, "top_p"),
    ("n zero", "POST", COMP, {"json": {"prompt": "x", "n": 0}}, 400, "n"),
    ("n as string", "POST", COMP, {"json": {"prompt": "x", "n": "2"}}, 400, "n"),
    ("n above max_n", "POST", CHAT, {"json": {"messages": MSG, "n": 17}}, 400, "n"),
    ("n too large for the capacity", "POST", COMP, {"json": {"prompt": ["a"] * 16, "n": 16}}, 400, "n"),
    ("best_of other than n", "POST", COMP, {"json": {"prompt": "x", "n": 2, "best_of": 3}}, 400, None),
    ("too many stop strings", "POST", COMP, {"json": {"prompt": "x", "stop": list("abcde")}}, 400, "stop"),
    ("stop string too long", "POST", COMP, {"json": {"prompt": "x", "stop": "s" * 300}}, 400, "stop"),
    ("empty stop string", "POST", COMP, {"json": {"prompt": "x", "stop": [""]}}, 400, "stop"),
    ("stop is a number", "POST", COMP, {"json": {"prompt": "x", "stop": 7}}, 400, "stop"),
    ("seed out of range", "POST", COMP, {"json": {"prompt": "x", "seed": 2**70}}, 400, "seed"),
    ("stream not a bool", "POST", COMP, {"json": {"prompt": "x", "stream": "yes"}}, 400, "stream"),
    ("token id outside vocabulary", "POST", COMP, {"json": {"prompt": [10**9]}}, 400, "prompt"),
    ("negative token id", "POST", COMP, {"json": {"prompt": [5, -1]}}, 400, "prompt"),
    ("too many prompts", "POST", COMP, {"json": {"prompt": ["a"] * 17}}, 400, "prompt"),
    ("presence_penalty out of range", "POST", COMP, {"json": {"prompt": "x", "presence_penalty": 2.5}}, 400,
     "presence_penalty"),
    ("frequency_penalty as string", "POST", CHAT, {"json": {"messages": MSG, "frequency_penalty": "lots"}},
     400, "frequency_penalty"),
    ("repetition_penalty zero", "POST", COMP, {"json": {"prompt": "x", "repetition_penalty": 0}}, 400,
     "repetition_penalty"),
    ("logprobs negative", "POST", COMP, {"json": {"prompt": "x", "logprobs": -1}}, 400, "logprobs"),
    ("logprobs above 20", "POST", COMP, {"json": {"prompt": "x", "logprobs": 21}}, 400, "logprobs"),
    ("logprobs as bool on completions", "POST", COMP, {"json": {"prompt": "x", "logprobs": True}}, 400,
     "logprobs"),
    ("chat logprobs as a number", "POST", CHAT, {"json": {"messages": MSG, "logprobs": 3}}, 400, "logprobs"),
    ("top_logprobs without logprobs", "POST", CHAT, {"json": {"messages": MSG, "top_logprobs": 2}}, 400, None),
    ("top_logprobs above 20", "POST", CHAT, {"json": {"messages": MSG, "logprobs": True, "top_logprobs": 21}},
     400, "top_logprobs"),
    ("echo as string", "POST", COMP, {"json": {"prompt": "x", "echo": "yes"}}, 400, "echo"),
    ("logit_bias key not a token id", "POST", COMP, {"json": {"prompt": "x", "logit_bias": {"hello": 5}}}, 400,
     "logit_bias"),
    ("logit_bias value out of range", "POST", COMP, {"json": {"prompt": "x", "logit_bias": {"5": 101}}}, 400,
     "logit_bias"),
    ("logit_bias token outside vocabulary", "POST", CHAT,
     {"json": {"messages": MSG, "logit_bias": {"99999999": 1}}}, 400, "logit_bias"),
    ("logit_bias as a list", "POST", COMP, {"json": {"prompt": "x", "logit_bias": [5, 1]}}, 400, "logit_bias"),
    ("logit_bias too many entries", "POST", COMP,
     {"json": {"prompt": "x", "logit_bias": {str(i): 1 for i in range(1025)}}}, 400, "logit_bias"),
    ("response_format unknown type", "POST", CHAT, {"json": {"messages": MSG, "response_format": {"type": "xml"}}},
     400, "response_format.type"),
    ("response_format as string", "POST", CHAT, {"json": {"messages": MSG, "response_format": "json"}}, 400,
     "response_format"),
    ("json_schema missing", "POST", CHAT, {"json": {"messages": MSG, "response_format": {"type": "json_schema"}}},
     400, "response_format"),
    ("invalid json schema", "POST", CHAT, {"json": {"messages": MSG, "response_format": {
        "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "strin"}}}}}, 400, "response_format"),
    ("schema keyword that cannot be enforced", "POST", CHAT, {"json": {"messages": MSG, "response_format": {
        "type": "json_schema", "json_schema": {"name": "x", "schema": {"not": {"type": "string"}}}}}}, 400,
     "response_format"),
    ("schema too big", "POST", CHAT, {"json": {"messages": MSG, "response_format": {
        "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "properties": {
            f"field_{i}": {"type": "string", "description": "d" * 40} for i in range(600)}}}}}}, 400,
     "response_format"),
    ("json_schema name with spaces", "POST", CHAT, {"json": {"messages": MSG, "response_format": {
        "type": "json_schema", "json_schema": {"name": "my schema", "schema": {}}}}}, 400,
     "response_format.json_schema.name"),
    ("tokenize without input", "POST", "/tokenize", {"json": {}}, 400, None),
    ("tokenize with both inputs", "POST", "/tokenize", {"json": {"prompt": "x", "messages": MSG}}, 400, None),
    ("tokenize prompt is a number", "POST", "/tokenize", {"json": {"prompt": 5}}, 400, "prompt"),
    ("detokenize ids outside vocabulary", "POST", "/detokenize", {"json": {"tokens": [5, 10**8]}}, 400, "tokens"),
    ("detokenize strings", "POST", "/detokenize", {"json": {"tokens": ["a"]}}, 400, "tokens[0]"),
    ("tokenize unknown model", "POST", "/tokenize", {"json": {"prompt": "x", "model": "gpt-9"}}, 404, "model"),
    ("tools not supported", "POST", CHAT, {"json": {"messages": MSG, "tools": [{"type": "function"}]}}, 400, None),
    ("empty messages", "POST", CHAT, {"json": {"messages": []}}, 400, "messages"),
    ("unknown role", "POST", CHAT, {"json": {"messages": [{"role": "wizard", "content": "x"}]}}, 400,
     "messages[0].role"),
    ("image content part", "POST", CHAT,
     {"json": {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]}}, 400,
     "messages[0].content"),
    ("message is a string", "POST", CHAT, {"json": {"messages": ["hi"]}}, 400, "messages[0]"),
    ("generate without prompt", "POST", GEN, {"json": {"max_tokens": 5}}, 400, "prompt"),
    ("generate temperature string", "POST", GEN, {"json": {"prompt": "x", "temperature": "hot"}}, 400,
     "temperature"),
    ("unknown model", "POST", COMP, {"json": {"prompt": "x", "model": "gpt-9"}}, 404, "model"),
    ("unknown model in chat", "POST", CHAT, {"json": {"messages": MSG, "model": "gpt-9"}}, 404, "model"),
    ("oversized body", "POST", COMP, {"json": {"prompt": "x" * 70_000}}, 413, None),
    ("form-encoded body", "POST", COMP, {"content": b"prompt=x",
                                         "headers": {"Content-Type": "application/x-www-form-urlencoded"}}, 415, None),
    ("GET on a POST endpoint", "GET", COMP, {}, 405, None),
    ("unknown path", "GET", "/v1/engines", {}, 404, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "method", "path", "kw", "status", "param"), CASES, ids=[c[0] for c in CASES]
)
def test_bad_request_gets_a_4xx_error_body(served, name, method, path, kw, status, param):
    with served.client() as c:
        r = c.request(method, path, **kw)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["message"] and error["type"].endswith("error")
    if param is not None:
        assert error["param"] == param, error


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic eDp5"}])
def test_missing_or_wrong_key_is_401_even_with_a_broken_body(served, headers):
    r = httpx.post(f"{served.url}{COMP}", content=b"{not json", headers={**JSON, **headers})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_server_still_serves_and_answered_no_5xx_after_the_catalogue(served):
    with served.client() as c:
        for name, method, path, kw, _, _ in CASES:  # the whole catalogue again, in one go
            assert c.request(method, path, **kw).status_code < 500, name
        assert c.get("/health").status_code == 200
        r = c.post(COMP, json={"prompt": "Hello", "max_tokens": 4})
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] >= 1
        metrics = c.get("/metrics").text
    served_5xx = [
        line
        for line in metrics.splitlines()
        if line.startswith("nexus_requests_total") and 'status="5' in line
    ]
    assert served_5xx == []


def test_error_body_is_valid_openai_shape(served):
    with served.client() as c:
        body = c.post(COMP, json={"prompt": "x", "max_tokens": -1}).json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    json.dumps(body)
