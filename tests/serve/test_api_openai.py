"""The official ``openai`` client against a real server: completions, chat, streaming, models, /generate."""

from __future__ import annotations

import httpx
import openai
import pytest

from .conftest import API_KEY


@pytest.fixture(scope="module")
def client(served) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{served.url}/v1", api_key=API_KEY, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def model(served) -> str:
    return served.engine.model_name


def test_models_lists_the_served_model(client, model):
    assert [m.id for m in client.models.list().data] == [model]


def test_completion_returns_text_and_usage(client, model):
    r = client.completions.create(model=model, prompt="The quick brown fox", max_tokens=12, temperature=0)
    choice = r.choices[0]
    assert r.object == "text_completion" and isinstance(choice.text, str)
    assert choice.finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 0 and 1 <= r.usage.completion_tokens <= 12
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_streamed_completion_equals_the_unstreamed_one(client, model):
    kw = {
        "model": model,
        "prompt": "Hello world",
        "max_tokens": 16,
        "temperature": 0,
        "extra_body": {"ignore_eos": True},
    }
    whole = client.completions.create(**kw).choices[0].text
    chunks = list(client.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == whole
    assert chunks[-1].usage.completion_tokens == 16
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def test_chat_uses_the_chat_template_and_streams(client, model):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!"}]
    r = client.chat.completions.create(model=model, messages=messages, max_tokens=10, temperature=0)
    assert r.choices[0].message.role == "assistant"
    # system + user through the template: far more tokens than the two short texts alone
    assert r.usage.prompt_tokens > 10
    stream = client.chat.completions.create(
        model=model, messages=messages, max_tokens=10, temperature=0, stream=True
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == r.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == r.choices[0].finish_reason


def test_seed_makes_sampling_reproducible(client, model):
    def run(seed):
        kw = {"model": model, "prompt": "Hello", "max_tokens": 16, "temperature": 1.0, "seed": seed}
        return client.completions.create(**kw, extra_body={"ignore_eos": True}).choices[0].text

    assert run(123) == run(123)
    assert run(123) != run(124)


def test_stop_strings_cut_the_output(client, model):
    kw = {"model": model, "prompt": "The quick brown fox", "max_tokens": 30, "temperature": 0}
    full = client.completions.create(**kw, extra_body={"ignore_eos": True}).choices[0].text
    stop = full[8:11]
    r = client.completions.create(**kw, stop=[stop, "never-seen"])
    assert r.choices[0].text == full[: full.index(stop)]
    assert r.choices[0].finish_reason == "stop"


def test_several_prompts_in_one_request(client, model):
    r = client.completions.create(model=model, prompt=["Hello", "The quick"], max_tokens=5, temperature=0)
    assert [c.index for c in r.choices] == [0, 1]
    assert r.usage.completion_tokens <= 10


def test_original_generate_api_keeps_its_contract(served):
    with served.client() as c:
        r = c.post(
            "/generate", json={"prompt": "Hello world", "max_tokens": 8, "temperature": 0.8, "top_p": 0.95}
        )
        assert r.status_code == 200
        body = r.json()
        assert set(body) == {"response", "tokens_generated"}
        assert isinstance(body["response"], str) and 1 <= body["tokens_generated"] <= 8
        # the original defaults (max_tokens 512) still work on a model whose context is shorter
        assert c.post("/generate", json={"prompt": "Hello"}).status_code == 200


def test_wrong_or_missing_key_is_401_and_health_stays_open(served):
    url = served.url
    assert httpx.get(f"{url}/health").status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}):
        r = httpx.post(f"{url}/v1/completions", json={"prompt": "x"}, headers=headers)
        assert r.status_code == 401
        assert r.json()["error"]["type"] == "authentication_error"
        assert r.headers["www-authenticate"] == "Bearer"
    bad = openai.OpenAI(base_url=f"{url}/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
