"""File transfer workers: p2pchat's direct transfer and the raw baseline it is held to.

``python -m benchmarks.files receiver PORT DIR``: bob, who accepts every invitation and
every file into DIR and prints how long the bytes took. ``python -m benchmarks.files
sender PORT FILE``: alice, who invites bob, sends FILE and waits until bob has it, its
SHA-256 checked. ``python -m benchmarks.files raw-server DIR`` and ``raw-client PORT
DIR CERT FILE``: the baseline, a plain asyncio TLS 1.3 stream (the same certificates as
peers use) copying FILE into a file of the server's, nothing else: no framing, no hash,
no sync.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import p2pchat
from p2pchat.shared.identity import b64decode, b64encode, direct_tls_context

from .common import say

BLOCK = 256 * 1024


async def receiver(port: int, directory: Path) -> None:
    bob = p2pchat.Peer(
        "bob",
        server=("127.0.0.1", port),
        store=p2pchat.SqliteMessageStore(directory / f"bob-{os.getpid()}.sqlite3"),
        identity=p2pchat.Identity.generate(),
    )
    async with bob:
        say(ready=True)
        invitation = await bob.next_invitation()
        await invitation.accept()
        offer = await bob.next_file()
        transfer = await offer.accept(directory / "in")
        began = time.perf_counter()
        path = await transfer.wait()
        say(result={"seconds": time.perf_counter() - began, "path": str(path)})
        await asyncio.Event().wait()  # until stopped


async def sender(port: int, path: Path) -> None:
    alice = p2pchat.Peer(
        "alice",
        server=("127.0.0.1", port),
        store=p2pchat.SqliteMessageStore(path.with_name(f"alice-{os.getpid()}.sqlite3")),
        identity=p2pchat.Identity.generate(),
    )
    async with alice:
        await alice.invite("bob", timeout=30)
        began = time.perf_counter()
        transfer = await alice.send_file("bob", path)
        offered = time.perf_counter()
        await transfer.wait()
        ended = time.perf_counter()
        say(
            result={
                "seconds": ended - began,
                "bytes_seconds": ended - offered,
                "hash_seconds": offered - began,
                "sent": transfer.sent,
                "size": transfer.size,
            }
        )


async def raw_server(directory: Path) -> None:
    """Take one TLS connection: an 8-byte size, then that many bytes, written to a file;
    answer one byte once all are written."""
    identity, client = p2pchat.Identity.generate(), p2pchat.Identity.generate()
    client.save(directory / "client.key")
    context = direct_tls_context(identity, client.certificate, server_side=True)
    done = asyncio.Event()

    async def copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        size = int.from_bytes(await reader.readexactly(8), "big")
        fd = os.open(directory / "raw.out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            while size > 0 and (data := await reader.read(min(BLOCK, size))):
                await asyncio.to_thread(os.write, fd, data)
                size -= len(data)
        finally:
            os.close(fd)
        writer.write(b"k")
        await writer.drain()
        writer.close()
        done.set()

    server = await asyncio.start_server(copy, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    say(port=port, certificate=b64encode(identity.certificate))
    await done.wait()
    server.close()
    await asyncio.Event().wait()  # until stopped


async def raw_client(port: int, directory: Path, certificate: str, path: Path) -> None:
    client = p2pchat.Identity.load(directory / "client.key")
    context = direct_tls_context(client, b64decode(certificate), server_side=False)
    began = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    size = await asyncio.to_thread(os.path.getsize, path)
    writer.write(size.to_bytes(8, "big"))
    with open(path, "rb") as file:  # noqa: ASYNC230 (read on a thread below)
        while block := await asyncio.to_thread(file.read, BLOCK):
            writer.write(block)
            await writer.drain()
    await reader.readexactly(1)
    say(result={"seconds": time.perf_counter() - began, "size": size})
    writer.close()


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "receiver":
        asyncio.run(receiver(int(args[0]), Path(args[1])))
    elif mode == "sender":
        asyncio.run(sender(int(args[0]), Path(args[1])))
    elif mode == "raw-server":
        asyncio.run(raw_server(Path(args[0])))
    elif mode == "raw-client":
        asyncio.run(raw_client(int(args[0]), Path(args[1]), args[2], Path(args[3])))
    else:
        sys.exit(f"unknown mode {mode!r}")
