"""Where the time of one awaited message goes: a timeline of its steps, both sides.

``python -m benchmarks.trace [COUNT]`` starts a server, bob (``benchmarks.chat receiver``)
and alice (``benchmarks.chat awaited``), each peer process with timestamps taken at the
steps of a message's path: ``send()`` and ``wait_acknowledged()``, the store's write
transaction on its thread and its end back on the event loop, frames going out and coming
in. Both sides read the same monotonic clock (one machine), so the steps line up. For the
rounds that took the usual path, it prints each step's median time since the one before.

The steps are taken by wrapping those methods in the worker processes only (``--child``):
a measuring tool, not a part of p2pchat.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import functools
import json
import os
import runpy
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .common import ROOT, Worker, start_server

Event = tuple[float, str]

_WRAPPED = (  # (module, class, method, label, is it a coroutine)
    ("p2pchat.stores.sqlite_db", "SqliteDatabase", "_transaction", "store transaction", False),
    ("p2pchat.stores.sqlite_db", "SqliteDatabase", "_committed", "back on the loop", False),
    ("p2pchat.shared.connection", "Connection", "send_many", "frames out", True),
    ("p2pchat.shared.connection", "Connection", "recv_batch", "frames in", True),
    ("p2pchat.peering.conversation", "Conversation", "send", "send()", True),
    ("p2pchat.peering.conversation", "Conversation", "wait_acknowledged", "wait_acked()", True),
)


def _instrument(events: list[Event]) -> None:
    """Wrap the methods of ``_WRAPPED`` to note when each is entered and left."""
    import importlib

    clock = time.perf_counter

    for module_name, class_name, method, label, is_async in _WRAPPED:
        cls = getattr(importlib.import_module(module_name), class_name)
        original = getattr(cls, method)
        if is_async:

            def wrapped_async(
                original: Callable[..., Awaitable[Any]] = original, label: str = label
            ) -> Callable[..., Awaitable[Any]]:
                @functools.wraps(original)
                async def step(*args: Any, **kwargs: Any) -> Any:
                    events.append((clock(), label + " >"))
                    try:
                        return await original(*args, **kwargs)
                    finally:
                        events.append((clock(), label + " <"))

                return step

            setattr(cls, method, wrapped_async())
        else:

            def wrapped(
                original: Callable[..., Any] = original, label: str = label
            ) -> Callable[..., Any]:
                @functools.wraps(original)
                def step(*args: Any, **kwargs: Any) -> Any:
                    events.append((clock(), label + " >"))
                    try:
                        return original(*args, **kwargs)
                    finally:
                        events.append((clock(), label + " <"))

                return step

            setattr(cls, method, wrapped())


def child(out: Path, args: list[str]) -> None:
    """Run ``benchmarks.chat ARGS`` instrumented; write the events to ``out`` at exit."""
    events: list[Event] = []
    _instrument(events)
    atexit.register(lambda: out.write_text(json.dumps(events)))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sys.argv = ["benchmarks.chat", *args]
    runpy.run_module("benchmarks.chat", run_name="__main__")


def timeline(sender: list[Event], receiver: list[Event]) -> list[tuple[str, float, float]]:
    """(step, median time since the step before, median time since ``send()``), in µs,
    over the rounds that took the most common path."""
    merged = sorted(
        [(t, "alice: " + s) for t, s in sender] + [(t, "bob: " + s) for t, s in receiver]
    )
    rounds: list[list[Event]] = []
    current: list[Event] | None = None
    for when, step in merged:
        if step == "alice: send() >":
            current = [(when, step)]
        elif current is not None:
            current.append((when, step))
            if step == "alice: wait_acked() <":
                rounds.append(current)
                current = None
    rounds = rounds[len(rounds) // 4 :]  # past the warm-up
    paths = collections.Counter(tuple(step for _, step in r) for r in rounds)
    usual = paths.most_common(1)[0][0]
    same = [r for r in rounds if tuple(step for _, step in r) == usual]
    rows = []
    for i, step in enumerate(usual):
        since = statistics.median([r[i][0] - r[i - 1][0] if i else 0.0 for r in same])
        at = statistics.median([r[i][0] - r[0][0] for r in same])
        rows.append((step, since * 1e6, at * 1e6))
    print(f"{len(same)} of {len(rounds)} rounds took this path; medians, in us:")
    return rows


async def main(count: int) -> None:
    server, port = await start_server("--memory", "--relay-rate", "off")
    workdir = Path(tempfile.mkdtemp(prefix="p2pchat-trace-"))
    outs = {side: workdir / f"{side}.json" for side in ("bob", "alice")}
    me = [sys.executable, "-m", "benchmarks.trace", "--child"]
    receiver = await _spawn(me, outs["bob"], ["receiver", str(port), "sqlite", str(workdir)])
    try:
        await receiver.read()
        sender = await _spawn(
            me, outs["alice"], ["awaited", str(port), "sqlite", str(workdir), str(count)]
        )
        result = (await sender.read(300))["result"]
        await sender.process.wait()
    finally:
        await receiver.stop()
        await server.stop()
    print(
        f"{count} messages, each awaited until acked: {result['per_second']:.0f}/s, "
        f"p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms (with the timestamps)"
    )
    rows = timeline(json.loads(outs["alice"].read_text()), json.loads(outs["bob"].read_text()))
    for step, since, at in rows:
        print(f"  {step:36} +{since:6.0f}   at {at:6.0f}")


async def _spawn(command: list[str], out: Path, args: list[str]) -> Worker:
    process = await asyncio.create_subprocess_exec(
        *command,
        str(out),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=ROOT,
        env={**os.environ},
    )
    return Worker(process, "trace")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(Path(sys.argv[2]), sys.argv[3:])
    else:
        asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
