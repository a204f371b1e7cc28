"""``nexus serve`` as a process: SIGTERM drains in-flight streams then exits 0; user errors exit 2."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from .conftest import wait_healthy


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _nexus(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nexus_llm.cli", *args], **kw)


def test_sigterm_drains_the_in_flight_stream_then_exits_0(long_model_dir, tmp_path):
    port, key = _free_port(), "sk-process-test-secret"
    url = f"http://127.0.0.1:{port}"
    out, err = open(tmp_path / "stdout", "w+"), open(tmp_path / "stderr", "w+")  # noqa: SIM115
    env = {**os.environ, "NEXUS_API_KEYS": f"{key}, other-key", "NEXUS_SERVICE_NAME": "proc-test"}
    proc = _nexus("serve", str(long_model_dir), "--port", str(port), "--drain-timeout", "60",
                  stdout=out, stderr=err, env=env)  # fmt: skip
    try:
        wait_healthy(url, 180)
        first, events = threading.Event(), []
        body = {"prompt": "Hello", "max_tokens": 300, "ignore_eos": True, "stream": True,
                "stream_options": {"include_usage": True}}  # fmt: skip

        def stream() -> None:
            headers = {"Authorization": f"Bearer {key}"}
            with httpx.stream("POST", f"{url}/v1/completions", json=body, headers=headers, timeout=120) as r:
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        events.append(line[6:])
                        first.set()

        reader = threading.Thread(target=stream)
        reader.start()
        assert first.wait(60)
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10  # the listener closes at once: no new connections
        while True:
            try:
                httpx.get(f"{url}/health", timeout=1)
            except httpx.ConnectError:
                break
            assert time.monotonic() < deadline, "still accepting connections after SIGTERM"
            time.sleep(0.05)
        reader.join(120)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["usage"]["completion_tokens"] == 300
    out.seek(0), err.seek(0)
    stdout, stderr = out.read(), err.read()
    assert "Waiting for connections to close" in stderr  # the stream was still running when the signal came
    emf = [json.loads(line) for line in stdout.splitlines() if line.startswith('{"_aws"')]
    assert [(e["Service"], e["TokensGenerated"]) for e in emf if e["Endpoint"] == "/v1/completions"] == [
        ("proc-test", 300)
    ]
    assert key not in stdout + stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/no/such/model"], "does not exist"),
        (["{model}", "--max-concurrent", "0"], "max_concurrent"),
        (["{model}", "--dtype", "float8"], "dtype"),
        (["{model}", "--engine", "vllm"], "--engine builtin"),  # no vLLM or no GPU here: what to do instead
    ],
)
def test_user_errors_exit_2_without_a_traceback(tiny_model_dir, args, message):
    args = [a.format(model=tiny_model_dir) for a in args]
    proc = _nexus("serve", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2, stderr
    assert message in stderr and "Traceback" not in stderr
