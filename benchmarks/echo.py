"""The raw-asyncio baseline: a length-prefixed msgspec protocol with an ack per frame.

``python -m benchmarks.echo server`` listens and acks every frame (or just holds idle
connections); ``python -m benchmarks.echo burst|awaited|connect PORT N`` measures. This
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

from .common import percentile, raise_fd_limit, rss_kib, say

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


async def connect(port: int, count: int) -> None:
    """Open ``count`` idle connections at once; report when all are up, then hold them."""
    raise_fd_limit()
    started = time.perf_counter()
    semaphore = asyncio.Semaphore(512)

    async def one() -> asyncio.StreamWriter:
        async with semaphore:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            return writer

    writers = await asyncio.gather(*(one() for _ in range(count)))
    say(result={"per_second": count / (time.perf_counter() - started)})
    await asyncio.Event().wait()
    del writers


def main() -> None:
    mode = sys.argv[1]
    if mode == "server":
        asyncio.run(serve())
        return
    port, count = int(sys.argv[2]), int(sys.argv[3])
    runs = {"burst": burst, "awaited": awaited, "connect": connect}
    asyncio.run(runs[mode](port, count))


if __name__ == "__main__":
    main()
