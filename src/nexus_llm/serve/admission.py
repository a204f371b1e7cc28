"""Backpressure: at most ``max_concurrent`` requests in the engine, ``max_queue`` more waiting, then 429.

An unbounded queue turns overload into ever-growing latency and memory (a complaint users of other
servers file); a bounded one answers "come back later" at once with ``Retry-After``, which clients and
load balancers understand. The advice is the time the queue ahead should take to drain, estimated from
recent request durations.
"""

from __future__ import annotations

import asyncio
import math


class Overloaded(Exception):
    """No slot and no room to wait: tell the client to retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Admission:
    """A semaphore with a bounded, time-limited waiting room (use on one event loop)."""

    def __init__(self, max_concurrent: int, max_queue: int, queue_timeout_s: float) -> None:
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        self.queue_timeout_s = queue_timeout_s
        self._sem = asyncio.Semaphore(max_concurrent)
        self.in_flight = 0
        self.waiting = 0
        self.rejected = 0
        self._avg_s = 1.0  # running mean of request durations, for Retry-After

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the queue ahead drained at the recent pace."""
        ahead = self.waiting + 1
        estimate = self._avg_s * ahead / self.max_concurrent
        return max(1, min(60, math.ceil(estimate)))

    def record(self, seconds: float) -> None:
        self._avg_s = 0.9 * self._avg_s + 0.1 * max(seconds, 0.0)

    async def acquire(self) -> None:
        """Take one engine slot (waiting in the bounded queue if need be), or raise :class:`Overloaded`.

        Every successful ``acquire`` must be paired with one :meth:`release`.
        """
        if self._sem.locked():
            if self.waiting >= self.max_queue:
                self.rejected += 1
                raise Overloaded(
                    f"server at capacity ({self.in_flight} running, {self.waiting} queued)",
                    self.retry_after(),
                )
            self.waiting += 1
            try:
                await asyncio.wait_for(self._sem.acquire(), self.queue_timeout_s)
            except TimeoutError:
                self.rejected += 1
                raise Overloaded(
                    f"no capacity freed within {self.queue_timeout_s:g} s", self.retry_after()
                ) from None
            finally:
                self.waiting -= 1
        else:
            await self._sem.acquire()
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight -= 1
        self._sem.release()
