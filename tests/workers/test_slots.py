"""A worker's slots per upstream: first come, first served, and no slot lost to a job that stopped."""

from __future__ import annotations

import asyncio

import pytest

from workers.slots import Slots


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_waiters_go_in_order_as_slots_come_back_and_no_cap_means_none() -> None:
    slots, went = Slots(), []

    async def send(name: str, cap: int) -> None:
        await slots.take("u", cap)
        went.append(name)

    await slots.take("u", 1)
    tasks = [asyncio.create_task(send(name, 1)) for name in "abc"]
    await _settle()
    assert went == [] and slots.waiting("u") == 3
    for expected in (["a"], ["a", "b"], ["a", "b", "c"]):
        slots.give_back("u")
        await _settle()
        assert went == expected
    await asyncio.gather(*tasks)
    await slots.take("u", 0)  # no cap: goes whatever is out
    assert slots.out == {"u": 2} and slots.waiting("u") == 0


async def test_a_waiter_stopped_after_it_was_woken_passes_its_slot_on() -> None:
    slots = Slots()
    await slots.take("u", 1)
    first = asyncio.create_task(slots.take("u", 1))
    second = asyncio.create_task(slots.take("u", 1))
    await _settle()
    slots.give_back("u")  # wakes the first ...
    first.cancel()  # ... which stops before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 1.0)  # the slot went on to the second
    assert slots.out == {"u": 1} and slots.waiting("u") == 0


async def test_a_waiter_stopped_while_it_waits_leaves_the_queue() -> None:
    slots = Slots()
    await slots.take("u", 1)
    waiters = [asyncio.create_task(slots.take("u", 1)) for _ in range(100)]
    await _settle()
    for t in waiters:
        t.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    assert slots.waiting("u") == 0 and slots._waiting == {}  # nothing kept for jobs that are gone
    slots.give_back("u")
    assert slots.out == {}


async def test_a_slot_that_comes_back_goes_to_the_first_waiter_not_to_a_job_arriving_meanwhile() -> None:
    """Handed over, still counted: a job reaching the gate after the slot came back, before the woken
    waiter runs, waits its turn (counting the woken one in when it ran let such a job take the slot
    and sent the woken one to the back of the queue, again and again under a steady stream)."""
    slots = Slots()
    await slots.take("u", 1)
    first = asyncio.create_task(slots.take("u", 1))
    await _settle()
    slots.give_back("u")  # the first waiter's now, though it has not run yet
    assert slots.out == {"u": 1}
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(slots.take("u", 1), 0.05)  # arrived meanwhile: waits, and gives up
    assert first.done() and slots.out == {"u": 1} and slots.waiting("u") == 0
    slots.give_back("u")
    assert slots.out == {} and slots._waiting == {}
