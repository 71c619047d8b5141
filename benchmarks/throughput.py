"""Measure the hot paths: the decoder, and messages between two peers on SQLite stores.

Run: .venv/bin/python benchmarks/throughput.py [--messages N]
Everything runs on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import p2pchat
from p2pchat.protocol import Decoder, Msg, encode


def bench_decoder(count: int) -> None:
    data = b"".join(encode(Msg(id=f"{n:036d}", ts=1.0, body="x" * 100)) for n in range(count))
    started = time.perf_counter()
    decoder = Decoder()
    received = 0
    for start in range(0, len(data), 65536):
        received += len(decoder.feed(data[start : start + 65536]))
    elapsed = time.perf_counter() - started
    assert received == count
    print(f"decoder: {count / elapsed:,.0f} messages/s ({len(data) / elapsed / 1e6:,.0f} MB/s)")


async def bench_chat(count: int, workdir: Path) -> None:
    async with p2pchat.SignallingServer(port=0) as server:
        where = ("127.0.0.1", server.port)
        alice = p2pchat.Peer(
            "alice", server=where, store=p2pchat.SqliteMessageStore(workdir / "alice.sqlite3")
        )
        bob = p2pchat.Peer(
            "bob", server=where, store=p2pchat.SqliteMessageStore(workdir / "bob.sqlite3")
        )
        async with alice, bob:
            inviting = asyncio.create_task(alice.invite("bob"))
            chat_b = await (await bob.next_invitation()).accept()
            chat_a = await inviting

            async def receive_all() -> None:
                for _ in range(count):
                    await chat_b.receive()

            senders: list[tuple[str, Callable[[p2pchat.Conversation, int], Awaitable[None]]]] = [
                ("one at a time (each awaited)", sequential),
                ("a burst (sent concurrently)", burst),
            ]
            for label, send_all in senders:
                started = time.perf_counter()
                await asyncio.gather(send_all(chat_a, count), receive_all())
                elapsed = time.perf_counter() - started
                print(
                    f"chat, {label}: {count / elapsed:,.0f} messages/s "
                    f"(stored on both sides, fsynced, acked)"
                )


async def sequential(chat: p2pchat.Conversation, count: int) -> None:
    for n in range(count):
        await chat.send(f"message {n}")


async def burst(chat: p2pchat.Conversation, count: int) -> None:
    await asyncio.gather(*(chat.send(f"message {n}") for n in range(count)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    bench_decoder(100_000)
    with tempfile.TemporaryDirectory() as workdir:
        asyncio.run(bench_chat(args.messages, Path(workdir)))


if __name__ == "__main__":
    main()
