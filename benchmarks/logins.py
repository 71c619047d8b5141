"""Many lean clients in one process: real logins (challenge, signature), then idle,
answering pings; ``list`` requests; logouts. Built from ``p2pchat.protocol`` and
``p2pchat.shared.identity`` only.

``python -m benchmarks.logins PORT FIRST COUNT SOURCE GATE``: makes COUNT identities (one
per client, so that every login is a first login of a new user: ``u`` and a number from
FIRST), prints ``ready``, then waits for commands on stdin:

- ``login``: all log in, GATE dialling at once, each from the address SOURCE; each
  answers pings from its login on. Prints when the first started and the last ended
  (``time.monotonic()``, one clock for every process of the machine).
- ``list SECONDS``: every client asks for the online list in a loop; prints how many
  answers came.
- ``probe N``: one client asks for the list N times, one after another; prints the
  median and 99th percentile of the time to an answer, and the answer's size.
- ``logout``: all say ``bye`` and close, GATE at once; prints the times as ``login``
  (``login`` again then: the same users, returning).
- ``quit`` (or the end of input).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Coroutine
from typing import Any

import p2pchat
from p2pchat.protocol import (
    PROTOCOL_VERSION,
    Auth,
    Bye,
    Challenge,
    Decoder,
    Hello,
    ListUsers,
    Ping,
    Pong,
    Users,
    Welcome,
    WireMessage,
    encode,
)
from p2pchat.shared.identity import b64encode, login_challenge_payload

from .common import connect_from, percentile, raise_fd_limit, say


class Client:
    """One logged-in user, answering pings, able to ask for the list."""

    def __init__(self, name: str, identity: p2pchat.Identity) -> None:
        self.name = name
        self.identity = identity
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.decoder = Decoder()
        self.answers: asyncio.Queue[Users] = asyncio.Queue()
        self.serving: asyncio.Task[None] | None = None

    async def recv(self) -> WireMessage:
        assert self.reader is not None
        while (message := self.decoder.next_message()) is None:
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError("closed")
            self.decoder.receive_data(data)
        return message

    async def login(self, port: int, source: str) -> None:
        self.reader, self.writer = await connect_from("127.0.0.1", port, source)
        self.decoder = Decoder()  # (a login again, after a logout: a new connection)
        identity = self.identity
        hello = Hello(
            version=PROTOCOL_VERSION,
            name=self.name,
            certificate=b64encode(identity.certificate),
            mailbox_key=identity.mailbox_key,
            mailbox_sig=identity.mailbox_signature,
        )
        self.writer.write(encode(hello))
        challenge = await self.recv()
        assert isinstance(challenge, Challenge), challenge
        payload = login_challenge_payload(challenge.nonce, self.name, identity.key)
        self.writer.write(encode(Auth(signature=identity.sign(payload))))
        welcome = await self.recv()
        assert isinstance(welcome, Welcome), welcome
        self.serving = asyncio.create_task(self.serve())  # pings come from now on

    async def serve(self) -> None:
        """Answer pings; hand answers to whoever asked."""
        assert self.writer is not None
        try:
            while True:
                message = await self.recv()
                if isinstance(message, Ping):
                    self.writer.write(encode(Pong(id=message.id)))
                elif isinstance(message, Users):
                    self.answers.put_nowait(message)
        except ConnectionError:
            pass

    async def ask(self, count: int) -> Users:
        assert self.writer is not None
        self.writer.write(encode(ListUsers(id=str(count))))
        return await self.answers.get()

    async def list_for(self, deadline: float) -> int:
        count = 0
        while time.perf_counter() < deadline:
            await self.ask(count)
            count += 1
        return count

    async def logout(self) -> None:
        assert self.writer is not None
        assert self.serving is not None
        self.writer.write(encode(Bye(reason="bench")))
        await self.serving  # the server closes once it has taken the bye
        self.writer.close()


async def all_at_once(gate: int, jobs: list[Coroutine[Any, Any, None]]) -> None:
    """Run the coroutines ``jobs``, ``gate`` at a time, as real clients spread."""
    semaphore = asyncio.Semaphore(gate)

    async def one(job: Coroutine[Any, Any, None]) -> None:
        async with semaphore:
            await job

    await asyncio.gather(*(one(job) for job in jobs))


async def probe(client: Client, count: int) -> dict[str, float]:
    """``count`` lists one after another: how long each took, and the answer's size."""
    times = []
    answer = None
    for n in range(count):
        started = time.perf_counter()
        answer = await client.ask(n)
        times.append(time.perf_counter() - started)
    assert answer is not None
    return {
        "p50_ms": percentile(times, 0.5) * 1000,
        "p99_ms": percentile(times, 0.99) * 1000,
        "bytes": len(encode(answer)),
        "names": len(answer.users),
        "truncated": float(answer.truncated),
    }


async def main(port: int, first: int, count: int, source: str, gate: int) -> None:
    raise_fd_limit()
    clients = [Client(f"u{first + n:06d}", p2pchat.Identity.generate()) for n in range(count)]
    for client in clients:  # computed once, before the clock runs
        _ = client.identity.mailbox_signature
    say(ready=True)
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        command = line.split()
        if command[0] in ("login", "logout"):
            started = time.monotonic()
            if command[0] == "login":
                await all_at_once(gate, [c.login(port, source) for c in clients])
            else:
                await all_at_once(gate, [c.logout() for c in clients])
            say(result={"started": started, "ended": time.monotonic(), "count": count})
        elif command[0] == "list":
            deadline = time.perf_counter() + float(command[1])
            answers = await asyncio.gather(*(c.list_for(deadline) for c in clients))
            say(result={"answers": sum(answers)})
        elif command[0] == "probe":
            say(result=await probe(clients[0], int(command[1])))
        else:
            break
    for client in clients:
        if client.serving is not None:
            client.serving.cancel()


if __name__ == "__main__":
    port, first, count, source, gate = sys.argv[1:6]
    asyncio.run(main(int(port), int(first), int(count), source, int(gate)))
