"""Hostile input thrown at a live server and a live peer listener: both keep serving."""

from __future__ import annotations

import asyncio
import contextlib
import random
import struct

import p2pchat
from p2pchat.protocol import (
    PROTOCOL_VERSION,
    Accept,
    Ack,
    Auth,
    Bye,
    Challenge,
    Error,
    Hello,
    Invite,
    Invited,
    ListUsers,
    Msg,
    Ping,
    Proceed,
    StartTls,
    Welcome,
    WireMessage,
    encode,
)
from p2pchat.shared.identity import b64encode

from .conftest import RawClient, connect

SEED = 20261124
CONNECTIONS = 150


def sample_messages(certificate: str) -> list[WireMessage]:
    """One of most kinds of message, to send where and when they do not belong."""
    return [
        Hello(version=PROTOCOL_VERSION, name="x", certificate=certificate),
        Hello(version=PROTOCOL_VERSION, name="x", invitation="nope"),
        Hello(version=99, name="x"),
        Welcome(version=PROTOCOL_VERSION, name="x"),
        Challenge(nonce="AAAA"),
        Auth(signature="AAAA"),
        StartTls(invitation="made-up"),
        Proceed(),
        Error(code="x", reason="y"),
        Ping(id="1"),
        Bye(),
        ListUsers(id="1"),
        Invite(id="1", user="alice"),
        Invited(invitation="i", sender="x", addresses=[], certificate="AAAA"),
        Accept(id="1", invitation="i"),
        Msg(id="m", ts=0.0, body="hello?"),
        Ack(ids=["m"]),
    ]


def hostile_payload(rng: random.Random, messages: list[WireMessage]) -> bytes:
    """Random bytes, truncated frames, oversized lengths, or valid frames out of order."""
    kind = rng.randrange(5)
    if kind == 0:
        return rng.randbytes(rng.randrange(1, 300))
    if kind == 1:
        frame = encode(rng.choice(messages))
        return frame[: rng.randrange(1, len(frame))]
    if kind == 2:
        return struct.pack(">I", rng.choice([0, 64 * 1024 + 1, 2**31, 2**32 - 1])) + b"{}"
    if kind == 3:
        return b"".join(encode(rng.choice(messages)) for _ in range(rng.randrange(1, 6)))
    body = rng.choice([b"{}", b"[]", b"null", b'{"type":7}', b'{"type":"msg"}', b"\xff" * 9])
    return struct.pack(">I", len(body)) + body


async def attack(port: int, payload: bytes, half_close: bool) -> None:
    """Send ``payload`` and read whatever comes back, until the other side closes."""
    with contextlib.suppress(OSError, TimeoutError, p2pchat.P2PChatError):
        client = await RawClient.open(port)
        try:
            await client.send_raw(payload)
            if half_close:
                client.writer.write_eof()
            async with asyncio.timeout(3):
                while await client.reader.read(65536):
                    pass
        finally:
            client.writer.transport.abort()


async def test_a_live_server_and_peer_survive_hostile_connections() -> None:
    rng = random.Random(SEED)
    async with p2pchat.SignallingServer(port=0, hello_timeout=0.5) as server:
        where = ("127.0.0.1", server.port)
        async with p2pchat.Peer("alice", server=where, hello_timeout=0.5) as alice:
            messages = sample_messages(b64encode(alice.identity.certificate))
            targets = [server.port, alice.listening[0][1]]
            attacks = [
                (targets[n % 2], hostile_payload(rng, messages), rng.random() < 0.5)
                for n in range(2 * CONNECTIONS)
            ]
            for start in range(0, len(attacks), 50):  # 50 at a time, each bounded
                await asyncio.gather(*(attack(*one) for one in attacks[start : start + 50]))
            # Both still serve a normal chat, and nothing hostile stayed logged in.
            async with p2pchat.Peer("bob", server=where) as bob:
                chat_a, chat_b = await connect(alice, bob)
                await chat_a.send("all quiet?")
                assert (await asyncio.wait_for(chat_b.receive(), 5)).body == "all quiet?"
                assert server.online_users == ["alice", "bob"]
                assert list(alice.conversations) == ["bob"]
