"""The raw-asyncio baseline: a length-prefixed msgspec protocol with an ack per frame.

``python -m benchmarks.echo server`` listens and acks every frame (and holds idle
connections); ``python -m benchmarks.echo burst|awaited PORT N`` measures, and
``connect PORT N SOURCE GATE`` opens N connections, one round trip each, and holds them
(the logins' baseline). This
is what p2pchat's figures are compared with: the same machine, the same run, the same
kind of work (frames of about a chat message, each acknowledged) with nothing else.
"""

from __future__ import annotations

import asyncio
import os
import struct
import sys
import time

import msgspec

from .common import connect_from, percentile, raise_fd_limit, rss_kib, say

HEADER = struct.Struct(">I")


class Frame(msgspec.Struct, frozen=True):
    id: str
    body: str


class Ack(msgspec.Struct, frozen=True):
    id: str


encoder = msgspec.json.Encoder()
frames = msgspec.json.Decoder(Frame)
acks = msgspec.json.Decoder(Ack)


def pack(message: msgspec.Struct) -> bytes:
    body = encoder.encode(message)
    return HEADER.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = HEADER.unpack(await reader.readexactly(4))
    return await reader.readexactly(size)


async def serve() -> None:
    """Ack every frame; hold connections that say nothing."""
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            while True:
                frame = frames.decode(await read_frame(reader))
                writer.write(pack(Ack(frame.id)))
                if writer.transport.get_write_buffer_size() > 1 << 16:
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    raise_fd_limit()
    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
    say(ready=True, port=server.sockets[0].getsockname()[1], rss=rss_kib(os.getpid()))
    await asyncio.Event().wait()


async def burst(port: int, count: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = "x" * 100
    started = time.perf_counter()

    async def send() -> None:
        for n in range(count):
            writer.write(pack(Frame(f"{n:036d}", body)))
            if n % 256 == 0:
                await writer.drain()
        await writer.drain()

    sending = asyncio.create_task(send())
    for _ in range(count):
        acks.decode(await read_frame(reader))
    await sending
    elapsed = time.perf_counter() - started
    say(result={"per_second": count / elapsed})


async def awaited(port: int, count: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = "x" * 100
    times = []
    started = time.perf_counter()
    for n in range(count):
        sent = time.perf_counter()
        writer.write(pack(Frame(f"{n:036d}", body)))
        await writer.drain()
        acks.decode(await read_frame(reader))
        times.append(time.perf_counter() - sent)
    elapsed = time.perf_counter() - started
    say(
        result={
            "per_second": count / elapsed,
            "p50_ms": percentile(times, 0.5) * 1000,
            "p99_ms": percentile(times, 0.99) * 1000,
        }
    )


async def connect(port: int, count: int, source: str, gate: int) -> None:
    """Once told to (a line on stdin, after ``ready``), open ``count`` connections from
    ``source``, ``gate`` at a time, each making one round trip (a frame and its ack);
    report when the first started and the last ended (``time.monotonic()``, as the
    logins do), then hold them, idle."""
    raise_fd_limit()
    say(ready=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    semaphore = asyncio.Semaphore(gate)
    body = "x" * 100

    async def one(n: int) -> asyncio.StreamWriter:
        async with semaphore:
            reader, writer = await connect_from("127.0.0.1", port, source)
            writer.write(pack(Frame(f"{n:036d}", body)))
            acks.decode(await read_frame(reader))
            return writer

    started = time.monotonic()
    writers = await asyncio.gather(*(one(n) for n in range(count)))
    ended = time.monotonic()
    say(result={"started": started, "ended": ended, "count": count})
    await asyncio.Event().wait()
    del writers


def main() -> None:
    mode = sys.argv[1]
    if mode == "server":
        asyncio.run(serve())
        return
    port, count = int(sys.argv[2]), int(sys.argv[3])
    if mode == "connect":  # connect PORT COUNT SOURCE GATE
        asyncio.run(connect(port, count, sys.argv[4], int(sys.argv[5])))
        return
    runs = {"burst": burst, "awaited": awaited}
    asyncio.run(runs[mode](port, count))


if __name__ == "__main__":
    main()
