"""Admission without HTTP: several slots are taken together or not at all, first come first served, and a
waiter that gives up (timeout, or its client left) leaves the queue at once holding nothing."""

from __future__ import annotations

import asyncio

import pytest

from nexus_llm.serve.http.admission import Admission, Overloaded


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_multi_slot_request_waits_for_all_its_slots_and_holds_none_meanwhile():
    async def main():
        adm = Admission(4, max_queue=10, queue_timeout_s=10)
        await adm.acquire(2)  # two single requests hold half the slots
        a = asyncio.ensure_future(adm.acquire(3))
        b = asyncio.ensure_future(adm.acquire(3))
        await _settle()
        assert (adm.in_flight, adm.waiting) == (2, 2)  # nothing taken while waiting
        adm.release(2)
        await _settle()
        assert a.done() and not b.done() and adm.in_flight == 3  # first come, first served
        adm.release(3)
        await asyncio.wait_for(b, 1)
        assert (adm.in_flight, adm.waiting) == (3, 0)

    asyncio.run(main())


def test_small_requests_do_not_overtake_a_big_one_waiting_ahead():
    async def main():
        adm = Admission(4, max_queue=10, queue_timeout_s=10)
        await adm.acquire(3)
        big = asyncio.ensure_future(adm.acquire(4))
        await _settle()
        assert not adm.try_acquire(1)  # one slot is free, but the big request is ahead
        small = asyncio.ensure_future(adm.acquire(1))
        await _settle()
        adm.release(3)
        await _settle()
        assert big.done() and not small.done() and adm.in_flight == 4
        adm.release(4)
        await asyncio.wait_for(small, 1)

    asyncio.run(main())


def test_a_cancelled_waiter_leaves_the_queue_and_lets_the_next_one_in():
    async def main():
        adm = Admission(2, max_queue=10, queue_timeout_s=10)
        await adm.acquire(1)
        gone = asyncio.ensure_future(adm.acquire(2))  # blocks the head of the queue
        after = asyncio.ensure_future(adm.acquire(1))
        await _settle()
        assert adm.waiting == 2
        gone.cancel()
        await asyncio.wait_for(after, 1)
        assert (adm.in_flight, adm.waiting) == (2, 0)

    asyncio.run(main())


def test_full_queue_and_queue_timeout_are_overloaded_and_too_many_slots_is_an_error():
    async def main():
        adm = Admission(1, max_queue=1, queue_timeout_s=0.05)
        await adm.acquire()
        waiter = asyncio.ensure_future(adm.acquire())
        await _settle()
        with pytest.raises(Overloaded) as full:
            await adm.acquire()
        assert full.value.retry_after >= 1
        with pytest.raises(Overloaded, match="within"):
            await waiter
        assert (adm.in_flight, adm.waiting) == (1, 0)
        with pytest.raises(ValueError, match="1 to 1 slots"):
            await adm.acquire(2)

    asyncio.run(main())
