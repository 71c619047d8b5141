"""Many lean clients in one process, for the cluster's load test: real logins (challenge,
signature, each a new user), then they stay logged in, answering pings and skipping the
presence news without decoding it (thousands of users mean millions of news frames; this
client must not be the bottleneck of the measure).

    python tests/login_worker.py PORT FIRST COUNT

Prints ``{"ready": true}`` once the identities are made, then reads commands on stdin:
``login`` (all at once, 128 dialling at a time; prints ``{"result": {"seconds", "count",
"retries"}}``) and ``quit`` (or end of input). A login the server refuses for now (busy,
``unavailable``, too slow) is tried again shortly, as a real peer does.
"""

from __future__ import annotations

import asyncio
import json
import struct
import sys
import time

import p2pchat
from p2pchat.protocol import (
    PROTOCOL_VERSION,
    Auth,
    Challenge,
    Error,
    Hello,
    Ping,
    Pong,
    Welcome,
    WireMessage,
    decode_body,
    encode,
)
from p2pchat.shared.identity import b64encode, login_challenge_payload

AGAIN = {"unavailable", "timeout", "server_busy"}
"""Refusals a peer answers by trying again (with its backoff)."""

HEADER = struct.Struct(">I")


def say(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


class Client:
    def __init__(self, name: str, identity: p2pchat.Identity) -> None:
        self.name = name
        self.identity = identity
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.buffer = bytearray()

    def _frame(self) -> bytes | None:
        """The next whole frame's body in the buffer, or None."""
        if len(self.buffer) < HEADER.size:
            return None
        (size,) = HEADER.unpack_from(self.buffer)
        end = HEADER.size + size
        if len(self.buffer) < end:
            return None
        body = bytes(self.buffer[HEADER.size : end])
        del self.buffer[:end]
        return body

    async def _recv(self) -> WireMessage:
        assert self.reader is not None
        while (body := self._frame()) is None:
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError("closed")
            self.buffer += data
        return decode_body(body)

    async def login(self, port: int) -> str | None:
        """Log in; None, or the code of a refusal worth trying again."""
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        identity = self.identity
        self.writer.write(
            encode(
                Hello(
                    version=PROTOCOL_VERSION,
                    name=self.name,
                    certificate=b64encode(identity.certificate),
                    mailbox_key=identity.mailbox_key,
                    mailbox_sig=identity.mailbox_signature,
                )
            )
        )
        challenge = await self._recv()
        if isinstance(challenge, Error) and challenge.code in AGAIN:
            return self._refused(challenge.code)
        assert isinstance(challenge, Challenge), challenge
        payload = login_challenge_payload(challenge.nonce, self.name, identity.key)
        self.writer.write(encode(Auth(signature=identity.sign(payload))))
        welcome = await self._recv()
        if isinstance(welcome, Error) and welcome.code in AGAIN:
            return self._refused(welcome.code)
        assert isinstance(welcome, Welcome), welcome
        return None

    def _refused(self, code: str) -> str:
        assert self.writer is not None
        self.writer.close()
        self.buffer.clear()
        return code

    async def serve(self) -> None:
        """Skip news frames by their length; decode and answer only pings."""
        assert self.reader is not None
        assert self.writer is not None
        try:
            while True:
                while (body := self._frame()) is not None:
                    if body.startswith(b'{"type":"ping"'):
                        ping = decode_body(body)
                        assert isinstance(ping, Ping)
                        self.writer.write(encode(Pong(id=ping.id)))
                data = await self.reader.read(262144)
                if not data:
                    return
                self.buffer += data
        except ConnectionError:
            pass


async def main(port: int, first: int, count: int) -> None:
    clients = [Client(f"u{first + n:06d}", p2pchat.Identity.generate()) for n in range(count)]
    for client in clients:
        _ = client.identity.mailbox_signature  # computed before the clock runs
    say(ready=True)
    loop = asyncio.get_running_loop()
    serving: list[asyncio.Task[None]] = []
    gate = asyncio.Semaphore(128)
    retries = 0

    async def log_in(client: Client) -> None:
        nonlocal retries
        for attempt in range(20):
            async with gate:
                refused = await client.login(port)
            if refused is None:
                serving.append(asyncio.create_task(client.serve()))
                return
            retries += 1
            await asyncio.sleep(min(2.0, 0.2 * 2**attempt))
        raise AssertionError(f"{client.name}: still refused ({refused})")

    while line := await loop.run_in_executor(None, sys.stdin.readline):
        if line.split()[0] == "login":
            started = time.perf_counter()
            await asyncio.gather(*(log_in(client) for client in clients))
            seconds = time.perf_counter() - started
            say(result={"seconds": seconds, "count": count, "retries": retries})
        else:
            break
    for task in serving:
        task.cancel()
    await asyncio.gather(*serving, return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
