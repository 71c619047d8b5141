"""Task helpers that both sides use.

A cancellation must end the task it was meant for. Python 3.11's ``asyncio.wait_for``
drops one that arrives in the loop iteration its awaitable completes in (fixed in 3.12),
and redis-py writes every command through it: a task cancelled just then carries on as
if nothing had happened, and a loop task (a heartbeat, an upkeep) runs on for ever while
whoever cancelled it waits for it to end. ``cancellation_kept`` gives such a call's task
its cancellation back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

__all__ = ["cancel_and_wait", "cancellation_kept"]


@contextlib.contextmanager
def cancellation_kept() -> Iterator[None]:
    """Raise ``CancelledError`` at the end of the block if the task was cancelled during
    it and the code inside lost that cancellation (ended normally, or with another error).

    Cancellations are counted with ``Task.cancelling()``: one requested before the block
    (a task already cleaning up after its own) is not raised again, and ``asyncio.timeout``
    takes back its own, so a timeout inside the block stays a timeout."""
    task = asyncio.current_task()
    if task is None:
        yield
        return
    before = task.cancelling()
    try:
        yield
    except asyncio.CancelledError:
        raise
    except Exception:
        if task.cancelling() > before:
            raise asyncio.CancelledError from None
        raise
    if task.cancelling() > before:
        raise asyncio.CancelledError


async def cancel_and_wait(task: asyncio.Future[Any] | None) -> None:
    """Cancel ``task`` (a task or future; None: nothing to do) and wait until it has ended,
    so that nothing of it runs on once this returns. The ``CancelledError`` it ends with
    is the expected outcome and is not raised; the caller's own is (cancelled while it
    waits, which asyncio passes on to ``task``), not swallowed with the task's."""
    if task is None:
        return
    task.cancel()
    with cancellation_kept(), contextlib.suppress(asyncio.CancelledError):
        await task
