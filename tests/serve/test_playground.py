"""The chat playground at / in a real headless Chromium (Debian's package, driven by Playwright).

A missing browser fails these tests instead of skipping them: CI installs Chromium
(``apt-get install -y chromium``), and a playground nobody loaded is not a tested playground.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from nexus_llm.serve.config import ServeConfig
from nexus_llm.serve.http.app import create_app

from .conftest import API_KEY, make_engine, serve_app, wait_healthy

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("NEXUS_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.fixture
def browser(tmp_path):
    """A fresh Chromium profile per test; fails (does not skip) without the browser or Playwright."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (or set NEXUS_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as err:
        pytest.fail(f"playwright is not installed (pip install playwright): {err}")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=FLAGS
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture(scope="module")
def slow_server(long_model_dir):
    """The tiny model, no API key, 15 ms per step and never an EOS: a reply streams for seconds."""
    engine = make_engine(long_model_dir)
    with serve_app(create_app(engine, ServeConfig(max_tokens=4096))) as s:
        wait_healthy(s.url)
        runner = engine._lm.runner
        real, eos = runner.forward, sorted(engine._lm.eos_ids)

        def slowly(work):
            out = real(work)
            for logits in out:
                if logits is not None:
                    logits[:, eos] = float("-inf")
            time.sleep(0.015)
            return out

        runner.forward = slowly
        yield s


def _chat(page, text: str) -> None:
    page.fill("#message", text)
    page.click("#send")


def test_the_page_streams_a_reply_with_the_system_prompt_and_settings(browser, slow_server):
    page = browser.new_page()
    sent = []
    page.on("request", lambda r: sent.append(r) if r.url.endswith("/v1/chat/completions") else None)
    page.goto(slow_server.url + "/")
    page.wait_for_function("document.querySelector('#status').textContent === 'ready'")
    assert page.eval_on_selector("#model", "s => s.value") == slow_server.engine.model_name
    page.fill("#system", "You are terse.")
    page.fill("#max-tokens", "40")
    page.eval_on_selector("#temperature", "el => { el.value = '0'; el.dispatchEvent(new Event('input')); }")
    _chat(page, "Hello there")
    reply = page.locator(".message.assistant .content")
    lengths = set()
    deadline = time.monotonic() + 60
    while page.locator(".message.assistant[data-done]").count() == 0:  # watch it grow while it streams
        lengths.add(len(reply.text_content()))
        assert time.monotonic() < deadline, "no complete reply within 60 s"
        time.sleep(0.05)
    assert len(lengths) > 2  # several partial replies were shown: it streamed
    assert reply.text_content() and page.text_content("#status") == "stopped at max tokens"
    body = json.loads(sent[0].post_data)
    assert body["stream"] is True and body["temperature"] == 0 and body["max_tokens"] == 40
    assert body["messages"] == [{"role": "system", "content": "You are terse."},
                                {"role": "user", "content": "Hello there"}]  # fmt: skip
    # the conversation continues: the second request carries the first exchange
    _chat(page, "And again")
    page.wait_for_selector(".message.assistant:nth-of-type(4)[data-done]", timeout=60_000)
    assert [m["role"] for m in json.loads(sent[1].post_data)["messages"]] == [
        "system", "user", "assistant", "user"
    ]  # fmt: skip


def test_the_stop_button_ends_the_stream_and_the_server_frees_the_request(browser, slow_server):
    page = browser.new_page()
    page.goto(slow_server.url + "/")
    page.wait_for_function("document.querySelector('#status').textContent === 'ready'")
    page.fill("#max-tokens", "3000")
    _chat(page, "Tell me everything")
    page.wait_for_function("document.querySelector('.message.assistant .content').textContent.length > 5")
    assert page.is_enabled("#stop") and not page.is_enabled("#send")
    page.click("#stop")
    page.wait_for_function("document.querySelector('#status').textContent === 'stopped'")
    assert page.is_enabled("#send") and not page.is_enabled("#stop")
    deadline = time.monotonic() + 10
    while slow_server.engine.stats().running:  # the disconnect cancelled the generation
        assert time.monotonic() < deadline, "the stopped request kept running"
        time.sleep(0.05)
    assert slow_server.engine.recent[-1].finish_reason == "cancelled"
    assert slow_server.engine.recent[-1].completion_tokens < 3000


def test_with_api_keys_the_page_asks_for_one_and_then_chats(browser, tiny_engine):
    with serve_app(create_app(tiny_engine, ServeConfig(), [API_KEY], manage_engine=False)) as s:
        page = browser.new_page()
        page.goto(s.url + "/")  # the page itself needs no key
        page.wait_for_selector("#api-key", state="visible")
        assert "API key" in page.text_content("#status")
        page.fill("#api-key", API_KEY)
        page.dispatch_event("#api-key", "change")
        page.wait_for_function("document.querySelector('#status').textContent === 'ready'")
        page.fill("#max-tokens", "8")
        _chat(page, "Hi")
        page.wait_for_selector(".message.assistant[data-done]", timeout=60_000)
        assert "error" not in page.get_attribute(".message.assistant", "class")
        page.fill("#api-key", "wrong")
        _chat(page, "Again")
        page.wait_for_selector(".message.assistant.error", timeout=30_000)
        assert "API key" in page.text_content(".message.assistant.error")
