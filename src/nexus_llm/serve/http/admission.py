"""Backpressure: at most ``max_concurrent`` engine slots in use, ``max_queue`` requests waiting, then 429.

An unbounded queue turns overload into ever-growing latency and memory (a complaint users of other
servers file); a bounded one answers "come back later" at once with ``Retry-After``, which clients and
load balancers understand. The advice is the time the queue ahead should take to drain, estimated from
recent request durations.

A request may need several slots (a ``/v1/completions`` request with several prompts takes one per
prompt). It gets all of them at once or none: taking them one by one let a request hold some slots
while it waited for the rest, blocking everyone else, and two such requests could each hold what the
other waited for. Waiters are served first come, first served, so a request that needs many slots is
not starved by a stream of small ones.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque


class Overloaded(Exception):
    """No slot and no room to wait: tell the client to retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Admission:
    """A fair counting semaphore with a bounded, time-limited waiting room (use on one event loop).

    A counter and a first-come-first-served deque of futures rather than ``asyncio.Semaphore``: the
    semaphore hands out one slot at a time, and ``release`` here must stay synchronous (it runs in
    cleanup code that cannot await), which rules out ``asyncio.Condition``.
    """

    def __init__(self, max_concurrent: int, max_queue: int, queue_timeout_s: float) -> None:
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        self.queue_timeout_s = queue_timeout_s
        self.in_flight = 0  # slots in use
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()  # in arrival order
        self._avg_s = 1.0  # running mean of request durations, for Retry-After

    @property
    def waiting(self) -> int:
        """Requests waiting for slots."""
        return len(self._waiters)

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the queue ahead drained at the recent pace."""
        ahead = self.waiting + 1
        estimate = self._avg_s * ahead / self.max_concurrent
        return max(1, min(60, math.ceil(estimate)))

    def record(self, seconds: float) -> None:
        self._avg_s = 0.9 * self._avg_s + 0.1 * max(seconds, 0.0)

    def try_acquire(self, n: int = 1) -> bool:
        """Take ``n`` slots if they are free and nobody waits ahead; never blocks."""
        if not 1 <= n <= self.max_concurrent:
            raise ValueError(f"a request may take 1 to {self.max_concurrent} slots, not {n}")
        if self._waiters or self.in_flight + n > self.max_concurrent:
            return False
        self.in_flight += n
        return True

    async def acquire(self, n: int = 1) -> None:
        """Take ``n`` slots together (waiting in the bounded queue if need be), or raise :class:`Overloaded`.

        Every successful ``acquire(n)`` must be paired with one ``release(n)``. Cancelling a waiting
        ``acquire`` (the client went away) leaves the queue at once and holds nothing.
        """
        if self.try_acquire(n):
            return
        if self.waiting >= self.max_queue:
            raise Overloaded(
                f"server at capacity ({self.in_flight} slots in use, {self.waiting} requests queued)",
                self.retry_after(),
            )
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (n, granted)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(granted, self.queue_timeout_s)
        except BaseException as err:  # timed out or cancelled: leave the queue, give back a late grant
            if granted.done() and not granted.cancelled():
                self.release(n)
            else:
                if entry in self._waiters:
                    self._waiters.remove(entry)
                self._grant()  # this request may have been the one blocking the head of the queue
            if isinstance(err, TimeoutError):
                raise Overloaded(
                    f"no capacity freed within {self.queue_timeout_s:g} s", self.retry_after()
                ) from None
            raise

    def release(self, n: int = 1) -> None:
        self.in_flight -= n
        self._grant()

    def _grant(self) -> None:
        """Hand free slots to the waiters at the head of the queue, in order, while they fit."""
        while self._waiters and self.in_flight + self._waiters[0][0] <= self.max_concurrent:
            n, granted = self._waiters.popleft()
            if not granted.done():  # a cancelled waiter may not have left the queue yet
                self.in_flight += n
                granted.set_result(None)
