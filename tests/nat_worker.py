"""A peer process for the NAT tests, run inside a network namespace and driven over pipes.

    python tests/nat_worker.py NAME SERVER_HOST SERVER_PORT [LISTEN_HOST]

It prints ``ready`` once logged in, then obeys one command per line:

- ``invite USER``: invite USER; once they are talking, print ``talking USER ROUTE VIA
  REMOTE`` and send them ``hello from NAME`` at once;
- ``accept``: take the next invitation, print the same ``talking`` line, then ``first
  message after MS ms``: the time from calling accept() to the first message received;
- ``send TEXT``: send TEXT in the conversation;
- ``sendfile USER PATH``: offer the file at PATH to USER, print ``sent`` once they have it;
- ``acceptfile DIR``: accept the next file offered into DIR, print ``file PATH`` once it is
  there, its SHA-256 checked;
- ``stream``: send ``n 0``, ``n 1``, ... every 10 ms in the conversation until it has moved
  to a direct connection and 50 more have gone, then ``n end COUNT``; the other side prints
  ``stream complete COUNT`` if it received each once, in order, else ``stream broken``.

Every message received is printed as ``got BODY``; a talk that moves onto another route
prints ``moved USER ROUTE VIA REMOTE``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time

import p2pchat


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def talking(chat: p2pchat.Conversation, news: str = "talking") -> None:
    host, port = chat.remote_address or ("?", 0)
    say(f"{news} {chat.peer} {chat.route} {chat.via} {p2pchat.format_address(host, port)}")


class Stream:
    """Checks the numbered messages of ``stream``: each once, in order."""

    def __init__(self) -> None:
        self.next = 0
        self.broken = ""

    def got(self, body: str) -> None:
        number = body.removeprefix("n ")
        if number.startswith("end "):
            count = int(number.removeprefix("end "))
            if not self.broken and count != self.next:
                self.broken = f"{self.next} of {count} received"
            say(f"stream broken: {self.broken}" if self.broken else f"stream complete {count}")
        elif int(number) != self.next and not self.broken:
            self.broken = f"got {number} where {self.next} was due"
        else:
            self.next += 1


async def stream(chat: p2pchat.Conversation) -> None:
    sent = after = 0
    while after < 50:
        after += chat.route == "direct"
        await chat.send(f"n {sent}")
        sent += 1
        await asyncio.sleep(0.01)
    await chat.send(f"n end {sent}")


async def read_lines() -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def listen_to(chat: p2pchat.Conversation, started: float | None) -> None:
    numbered = Stream()
    async for message in chat:
        if started is not None:
            say(f"first message after {(time.perf_counter() - started) * 1e3:.0f} ms")
            started = None
        if message.body.startswith("n "):
            numbered.got(message.body)
        else:
            say(f"got {message.body}")


async def send_file(peer: p2pchat.Peer, user: str, path: str) -> None:
    transfer = await peer.send_file(user, path)
    await transfer.wait()
    say("sent")


async def accept_file(peer: p2pchat.Peer, directory: str) -> None:
    offer = await peer.next_file()
    transfer = await offer.accept(directory)
    say(f"file {await transfer.wait()}")


async def main(name: str, server: tuple[str, int], listen: str) -> None:
    peer = p2pchat.Peer(name, server=server, listen=(listen, 0))
    peer.on_route = lambda moved: talking(moved, "moved")
    chat: p2pchat.Conversation | None = None
    readers: set[asyncio.Task[None]] = set()
    async with peer:
        say(f"ready {' '.join(p2pchat.format_address(h, p) for h, p in peer.listening)}")
        lines = await read_lines()
        while line := (await lines.readline()).decode().strip():
            command, _, argument = line.partition(" ")
            if command == "invite":
                chat = await peer.invite(argument, timeout=30)
                talking(chat)
                await chat.send(f"hello from {name}")
                readers.add(asyncio.create_task(listen_to(chat, None)))
            elif command == "accept":
                invitation = await peer.next_invitation()
                started = time.perf_counter()
                chat = await invitation.accept()
                talking(chat)
                readers.add(asyncio.create_task(listen_to(chat, started)))
            elif command == "send" and chat is not None:
                await chat.send(argument)
            elif command == "sendfile":
                user, _, path = argument.partition(" ")
                readers.add(asyncio.create_task(send_file(peer, user, path)))
            elif command == "stream" and chat is not None:
                readers.add(asyncio.create_task(stream(chat)))
            elif command == "acceptfile":
                readers.add(asyncio.create_task(accept_file(peer, argument)))
        for reader in readers:
            reader.cancel()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    for part in ("upgrade", "invitation", "talks"):  # what an upgrade tried, for a failure
        logging.getLogger(f"p2pchat.peering.{part}").setLevel(logging.INFO)
    host, port = sys.argv[2], int(sys.argv[3])
    asyncio.run(main(sys.argv[1], (host, port), sys.argv[4] if len(sys.argv) > 4 else "0.0.0.0"))
