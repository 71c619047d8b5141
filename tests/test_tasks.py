"""The task helpers (``shared/tasks.py``): a cancellation reaches the task it was meant
for, neither swallowed with another task's nor lost by the code it interrupted."""

from __future__ import annotations

import asyncio

import pytest

from p2pchat.shared.tasks import cancel_and_wait, cancellation_kept


async def test_cancel_and_wait_ends_the_task_and_returns() -> None:
    task = asyncio.create_task(asyncio.Event().wait())
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert task.cancelled()
    await cancel_and_wait(None)  # nothing to do


async def test_cancel_and_wait_cancelled_while_it_waits_ends_cancelled() -> None:
    """Its caller cancelled (a close given a deadline) while the task ends: asyncio passes
    the cancellation on to the task, whose CancelledError was all the caller saw, and
    swallowed with it: the caller carried on as if never cancelled."""
    stopping = asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            stopping.set()
            await asyncio.sleep(5)  # clean-up that takes a while

    task = asyncio.create_task(slow_to_stop())
    await asyncio.sleep(0)
    caller = asyncio.create_task(cancel_and_wait(task))
    await stopping.wait()  # the caller waits for the task to end
    caller.cancel()
    await asyncio.wait({caller}, timeout=5)
    assert task.cancelled()
    assert caller.cancelled()


async def test_a_cancellation_lost_inside_the_block_is_raised_at_its_end() -> None:
    """Code that swallows a cancellation (as Python 3.11's wait_for could) and returns,
    or raises something else, ends cancelled all the same."""
    entered = asyncio.Event()
    outcome: list[str] = []

    async def swallows(then_raise: bool) -> None:
        with cancellation_kept():
            try:
                entered.set()
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                if then_raise:
                    raise OSError("broken pipe") from None
        outcome.append("went on")  # past the block: never

    for then_raise in (False, True):
        entered.clear()
        task = asyncio.create_task(swallows(then_raise))
        await entered.wait()
        task.cancel()
        await asyncio.wait({task}, timeout=5)
        assert task.cancelled()
    assert outcome == []


async def test_what_was_cancelled_before_the_block_or_timed_out_in_it_is_not_raised() -> None:
    """A task cleaning up after its own cancellation can still make calls; a timeout in the
    block stays a timeout."""
    results: list[str] = []

    async def cleans_up() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            with cancellation_kept():
                await asyncio.sleep(0)
                results.append("cleaned up")

    task = asyncio.create_task(cleans_up())
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.wait({task}, timeout=5)
    assert task.cancelled()
    assert results == ["cleaned up"]
    with pytest.raises(TimeoutError), cancellation_kept():
        async with asyncio.timeout(0.01):
            await asyncio.Event().wait()
