"""Task helpers that both sides use."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

__all__ = ["cancel_and_wait"]


async def cancel_and_wait(task: asyncio.Future[Any] | None) -> None:
    """Cancel ``task`` (a task or future; None: nothing to do) and wait until it has ended,
    so that nothing of it runs on once this returns. The ``CancelledError`` it ends with
    is the expected outcome and is not raised."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
