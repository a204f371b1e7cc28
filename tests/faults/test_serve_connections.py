"""``nexus serve`` under 2,000 concurrent connections, half of them slowloris clients: memory stays
bounded, ``/health`` answers within 100 ms throughout, and every real request gets a status.

A bounded load test against a real server process on 127.0.0.1 (the tiny model), started with a soft
limit of 1,024 open files (as under systemd): 1,000 connections that send a request head one byte a
second and never finish it; then 1,000 more connections, all open at the same time, each of which sends
one ``/generate`` request at a moment spread over 5 seconds (200 requests a second, far more than the
model may serve: the excess is refused with 429) and reads the answer; and a ``/health`` probe on a
fresh connection every 50 ms throughout. The whole load runs three times: memory may grow in the first
rounds as the allocator settles, but not by much in every one of them. Raw asyncio sockets keep the
client cheap enough to run beside the server on two cores.

(The same 1,000 requests sent in one instant instead held ``/health`` up to about 0.8 s on the shared
2-core development VM: the event loop works through the burst's requests, 429s included, before the
probe's. Behind the AWS load balancer neither shape reaches a task: the ALB holds incomplete requests
and spreads the rest over the tasks.)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SLOW_CLIENTS = 1000
REQUESTS = 1000
SPREAD_S = 5.0
HEALTH_LIMIT_S = 0.100
# the server's resident memory: a round's burst (2,000 connections, 1,000 requests) may raise it by up to
# BURST_LIMIT_MB above where the round started (measured +200 to +292 MiB with OpenMP workers spinning
# 30,000 iterations, +99 to +109 with 3,000, on an Ice Lake Xeon: the allocator keeps what a burst freed).
# A leak is what every further identical round leaves behind: the load runs ROUNDS times and the smallest
# growth of the resident memory from one round's end to the next must stay under RETAINED_LIMIT_MB. One
# later round alone is not enough: the allocator settles over rounds (second/third round: +58.8/+27.5 and
# +80.5/+45.4 MiB in two runs without the prefix cache; a second round alone read +23 to +113 MiB, the
# last in a full-suite run), while a leak grows every round (a fake leak of 150 KiB per request, put in the
# server for a check: +216.6 and +227.9 MiB). A round's peak over its start is not a leak measure either:
# it counts the memory in flight. On a 2-core AMD EPYC (AVX2), three rounds alone: +15.7/+38.3 and
# +96.0/+37.5 MiB (the second without the native kernels); in a full-suite run (the background fine-tune
# on the same cores): +103.9/+107.6, so a fourth round (alone: +42.7/+22.8/+14.8), and a limit that still
# fails the fake leak by a wide margin. Calling glibc's malloc_trim when the engine went idle did not
# lower them (+144.5/+37.5 and +107.2/+35.2), so the server does not.
ROUNDS = 4
BURST_LIMIT_MB = 400
RETAINED_LIMIT_MB = 128


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _status(
    port: int, request: bytes, timeout: float, start: asyncio.Event | None = None, delay: float = 0
) -> int | str:
    """Send ``request`` on a new connection (once ``start`` is set, then after ``delay`` seconds); the
    response's status code, or what went wrong."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    except (OSError, TimeoutError) as err:
        return f"connect: {type(err).__name__}"
    try:
        if start is not None:
            await start.wait()
            await asyncio.sleep(delay)
        writer.write(request)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
        if not line.startswith(b"HTTP/1.1 "):
            return f"no status line: {line[:40]!r}"
        await asyncio.wait_for(reader.read(), timeout)  # the body, up to the close
        return int(line.split()[1])
    except (OSError, TimeoutError) as err:
        return f"{type(err).__name__}"
    finally:
        writer.close()


def _generate(i: int) -> bytes:
    body = json.dumps({"prompt": f"Request {i} says", "max_tokens": 4}).encode()
    head = (
        f"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


HEALTH = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

PROBE = """
import socket, sys, time
port = int(sys.argv[1])
while True:
    started = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /health HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        status = data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/1.1 ") else "no-status"
    except OSError as err:
        status = type(err).__name__
    print(status, time.perf_counter() - started, flush=True)
    time.sleep(0.05)
"""


async def _slowloris(port: int, stop: asyncio.Event, opened: list[int]) -> None:
    """A connection that sends a request head one byte every second and never completes it."""
    try:
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return
    opened.append(1)
    head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 10_000
    try:
        for byte in head:
            if stop.is_set():
                break
            writer.write(bytes([byte]))
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
    except OSError:
        pass  # the server closed it: that is allowed
    finally:
        writer.close()


async def _load(port: int, pid: int) -> dict:
    proc = psutil.Process(pid)
    before = proc.memory_info().rss
    stop, opened = asyncio.Event(), []
    slow = [asyncio.create_task(_slowloris(port, stop, opened)) for _ in range(SLOW_CLIENTS)]
    await asyncio.sleep(3)  # every slow connection is open and trickling
    # the probe runs in a process of its own, so the load generator's event loop does not delay it
    prober = subprocess.Popen([sys.executable, "-c", PROBE, str(port)], stdout=subprocess.PIPE, text=True)
    peak = [proc.memory_info().rss]

    async def watch_memory() -> None:
        while not stop.is_set():
            peak.append(proc.memory_info().rss)
            await asyncio.sleep(0.2)

    watcher = asyncio.create_task(watch_memory())
    go = asyncio.Event()
    clients = [
        asyncio.create_task(_status(port, _generate(i), 120, go, SPREAD_S * i / REQUESTS))
        for i in range(REQUESTS)
    ]
    await asyncio.sleep(2)  # all 2,000 connections are open now
    open_connections = len(psutil.Process(pid).net_connections(kind="tcp"))
    go.set()
    statuses = await asyncio.gather(*clients)
    await asyncio.sleep(1)
    stop.set()
    await asyncio.gather(watcher, *slow)
    prober.terminate()
    after = proc.memory_info().rss  # every connection closed, every request answered
    health, health_failures = [], []
    for line in prober.communicate(timeout=30)[0].splitlines():
        status, seconds = line.split()
        if status == "200":
            health.append(float(seconds))
        else:
            health_failures.append(status)
    return {
        "opened": len(opened), "server_connections": open_connections, "statuses": statuses, "health": health, "health_failures": health_failures,
        "rss_before": before, "rss_peak": max(peak), "rss_after": after,
    }  # fmt: skip


def _low_file_limit() -> None:
    """The server starts with a soft limit of 1,024 descriptors: it must raise it to serve 2,000."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))


def test_thousands_of_connections_and_slowloris_keep_health_fast_and_every_request_answered(
    tiny_model_dir, tmp_path
):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = SLOW_CLIENTS + REQUESTS + 500
    if soft < need:  # the client needs a descriptor per connection too
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    port = _free_port()
    log = (tmp_path / "serve.log").open("w+")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    server = subprocess.Popen(
        # no prefix cache: it keeps each round's prompts by design (bounded by prefix_cache_mb), which
        # would read as memory left behind
        [sys.executable, "-m", "nexus_llm.cli", "serve", str(tiny_model_dir), "--port", str(port),
         "--prefix-cache-mb", "0"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO, preexec_fn=_low_file_limit,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while asyncio.run(_status(port, HEALTH, 2)) != 200:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no healthy server within 180 s"
            time.sleep(0.5)
        rounds = [asyncio.run(_load(port, server.pid)) for _ in range(ROUNDS)]
        result = rounds[-1]
    finally:
        server.terminate()
        server.wait(60)
    statuses = result["statuses"]
    lost = [s for s in statuses if not isinstance(s, int)]
    counts = {s: statuses.count(s) for s in set(statuses) if isinstance(s, int)}
    health = sorted(result["health"])
    burst_mb = max(r["rss_peak"] - r["rss_before"] for r in rounds) / 2**20
    left = [(b["rss_after"] - a["rss_after"]) / 2**20 for a, b in itertools.pairwise(rounds)]
    retained_mb = min(left)
    print(f"\nslow connections opened {result['opened']}; server TCP connections {result['server_connections']}; statuses {counts}; lost {len(lost)}; "
          f"/health n={len(health)} p50={health[len(health) // 2] * 1000:.1f} ms max={health[-1] * 1000:.1f} ms "
          f"failures {result['health_failures'][:5]}; server RSS burst up to +{burst_mb:.1f} MiB, "
          f"left by each later round {', '.join(f'{x:+.1f}' for x in left)} MiB")  # fmt: skip
    assert result["opened"] == SLOW_CLIENTS
    assert result["server_connections"] >= SLOW_CLIENTS + REQUESTS  # all open at once, past 1,024
    assert not lost, lost[:10]  # every request got a status line
    assert set(counts) <= {200, 429, 503}, counts  # served, or refused with a status that says why
    assert counts.get(200, 0) > 0
    assert not result["health_failures"], result["health_failures"][:10]
    # 99% of the probes within 100 ms; one scheduling hiccup of a shared 2-core machine is tolerated up
    # to 250 ms (the development VM at load average 6: maxima of 77, 99 and 165 ms in three runs)
    assert len(health) > 50 and health[int(len(health) * 0.99) - 1] < HEALTH_LIMIT_S, health[-5:]
    assert health[-1] < 2.5 * HEALTH_LIMIT_S, health[-5:]
    assert burst_mb < BURST_LIMIT_MB and retained_mb < RETAINED_LIMIT_MB, (burst_mb, retained_mb)
