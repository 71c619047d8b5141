"""Many lean clients in one process: real logins (challenge, signature), then idle, then
``list`` requests. Built from ``p2pchat.protocol`` and ``p2pchat.shared.identity`` only.

``python -m benchmarks.logins PORT FIRST COUNT``: makes COUNT identities (one per client,
so that every login is a first login of a new user), prints ``ready``, then waits for
commands on stdin: ``login`` (all at once; prints how long it took), ``list SECONDS``
(every client asks for the online list in a loop; prints how many answers came), ``quit``.
"""

from __future__ import annotations

import asyncio
import sys
import time

import p2pchat
from p2pchat.protocol import (
    PROTOCOL_VERSION,
    Auth,
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

from .common import raise_fd_limit, say


class Client:
    """One logged-in user, answering pings, able to ask for the list."""

    def __init__(self, name: str, identity: p2pchat.Identity) -> None:
        self.name = name
        self.identity = identity
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.decoder = Decoder()
        self.answers: asyncio.Queue[WireMessage] = asyncio.Queue()

    async def recv(self) -> WireMessage:
        assert self.reader is not None
        while (message := self.decoder.next_message()) is None:
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError("closed")
            self.decoder.receive_data(data)
        return message

    async def login(self, port: int) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
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

    async def list_for(self, deadline: float) -> int:
        assert self.writer is not None
        count = 0
        while time.perf_counter() < deadline:
            self.writer.write(encode(ListUsers(id=str(count))))
            await self.answers.get()
            count += 1
        return count


async def log_in(client: Client, port: int, gate: asyncio.Semaphore) -> None:
    async with gate:
        await client.login(port)


async def main(port: int, first: int, count: int) -> None:
    raise_fd_limit()
    clients = [Client(f"u{first + n:06d}", p2pchat.Identity.generate()) for n in range(count)]
    for client in clients:  # computed once, before the clock runs
        _ = client.identity.mailbox_signature
    say(ready=True)
    loop = asyncio.get_running_loop()
    serving: list[asyncio.Task[None]] = []
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        command = line.split()
        if command[0] == "login":
            started = time.perf_counter()
            gate = asyncio.Semaphore(256)  # dialling at once, as real clients spread
            await asyncio.gather(*(log_in(client, port, gate) for client in clients))
            say(result={"seconds": time.perf_counter() - started, "count": count})
            serving = [asyncio.create_task(c.serve()) for c in clients]
        elif command[0] == "list":
            deadline = time.perf_counter() + float(command[1])
            answers = await asyncio.gather(*(c.list_for(deadline) for c in clients))
            say(result={"answers": sum(answers)})
        else:
            break
    for task in serving:
        task.cancel()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
