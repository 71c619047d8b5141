"""The file rows of ``make bench``: one file of random bytes sent direct on loopback
by two p2pchat peers (two processes, SQLite stores, TLS, windowed and acknowledged,
synced, SHA-256 checked), beside a raw asyncio TLS stream copying the same file in the
same run; and the memory of both peers, sampled throughout."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

from .common import Worker, rss_kib, start_server

MEMORY_TARGET_MIB = 100
SAMPLE_EVERY = 0.05


def random_file(path: Path, size: int) -> Path:
    with open(path, "wb") as file:
        left = size
        while left:
            block = os.urandom(min(left, 1024 * 1024))
            file.write(block)
            left -= len(block)
    return path


def same_size(received: Path, source: Path) -> bool:
    """Whether ``received`` (its SHA-256 checked by the peer) is as large as ``source``;
    removes it."""
    same = received.stat().st_size == source.stat().st_size
    received.unlink()
    return same


async def sample(pids: list[int], peaks: dict[int, int], stop: asyncio.Event) -> None:
    """Keep the highest resident memory of each process until ``stop``."""
    while not stop.is_set():
        for pid in pids:
            with contextlib.suppress(OSError, RuntimeError):
                peaks[pid] = max(peaks.get(pid, 0), rss_kib(pid))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_EVERY)


async def raw_copy(workdir: Path, source: Path) -> dict[str, Any]:
    directory = workdir / "raw"
    directory.mkdir(exist_ok=True)
    server = await Worker.start("files", "raw-server", str(directory))
    try:
        ready = await server.read(60)
        client = await Worker.start(
            "files",
            "raw-client",
            str(ready["port"]),
            str(directory),
            ready["certificate"],
            str(source),
        )
        try:
            result: dict[str, Any] = (await client.read(1200))["result"]
            return result
        finally:
            await client.stop()
    finally:
        await server.stop()
        with contextlib.suppress(FileNotFoundError):
            (directory / "raw.out").unlink()


async def p2pchat_copy(workdir: Path, source: Path) -> tuple[dict[str, Any], list[int]]:
    directory = workdir / "peers"
    directory.mkdir(exist_ok=True)
    server, port = await start_server("--memory")
    workers: list[Worker] = []
    peaks: dict[int, int] = {}
    stop = asyncio.Event()
    try:
        receiver = await Worker.start("files", "receiver", str(port), str(directory))
        workers.append(receiver)
        await receiver.read(60)
        sender = await Worker.start("files", "sender", str(port), str(source))
        workers.append(sender)
        sampling = asyncio.create_task(sample([receiver.pid, sender.pid], peaks, stop))
        result: dict[str, Any] = (await sender.read(1200))["result"]
        received = (await receiver.read(60))["result"]
        stop.set()
        await sampling
        result["whole"] = await asyncio.to_thread(same_size, Path(received["path"]), source)
        return result, [peaks.get(receiver.pid, 0), peaks.get(sender.pid, 0)]
    finally:
        stop.set()
        for worker in workers:
            await worker.stop()
        await server.stop()


async def file_rows(workdir: Path, size: int) -> list[dict[str, Any]]:
    source = await asyncio.to_thread(random_file, workdir / "random.bin", size)
    try:
        base = await raw_copy(workdir, source)
        got, (receiver_kib, sender_kib) = await p2pchat_copy(workdir, source)
    finally:
        source.unlink()
    mib = size / (1024 * 1024)
    rate, base_rate = mib / got["seconds"], mib / base["seconds"]
    memory = max(receiver_kib, sender_kib) / 1024
    return [
        {
            "name": f"file of {mib:,.0f} MiB direct (offer to hash checked; baseline raw TLS)",
            "value": rate,
            "unit": "MiB/s",
            "baseline": base_rate,
            "target": ">= 50% of baseline",
            "met": rate >= 0.5 * base_rate and got["whole"],
            "notes": {
                "hash_before_offer_s": got["hash_seconds"],
                "bytes_s": got["bytes_seconds"],
                "sent_over_size": got["sent"] / got["size"],
            },
        },
        {
            "name": "file transfer: peak memory of either peer (sampled every 50 ms)",
            "value": memory,
            "unit": "MiB",
            "target": f"< {MEMORY_TARGET_MIB} MiB each",
            "met": memory < MEMORY_TARGET_MIB,
            "notes": {"receiver_mib": receiver_kib / 1024, "sender_mib": sender_kib / 1024},
        },
    ]
