"""Shared fixtures: a live server on 127.0.0.1 with port 0, peers that clean up after
themselves, and a raw protocol client for hostile or hand-driven connections."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import io
import ipaddress
import os
import struct
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import p2pchat
from p2pchat.frontends.demo import ScriptedProcess
from p2pchat.protocol import (
    PROTOCOL_VERSION,
    Auth,
    Challenge,
    Hello,
    Invited,
    Proceed,
    StartTls,
    Welcome,
    WireMessage,
)
from p2pchat.shared.connection import Connection
from p2pchat.shared.identity import (
    Identity,
    b64decode,
    b64encode,
    direct_tls_context,
    login_challenge_payload,
)

from .redisserver import RedisServer, redis_available

POLL_INTERVAL = 0.01

T = TypeVar("T")


async def eventually(
    condition: Callable[[], Awaitable[bool]] | Callable[[], bool], *, timeout: float = 5.0
) -> None:
    """Wait until ``condition()`` holds, failing after ``timeout`` seconds.

    For state with no event to wait on (rows in a store); checks often, gives up at the
    deadline, never waits a fixed time.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(POLL_INTERVAL)


@pytest.fixture
async def server() -> AsyncIterator[p2pchat.SignallingServer]:
    async with p2pchat.SignallingServer(host="127.0.0.1", port=0) as server:
        yield server


PeerFactory = Callable[..., Awaitable[p2pchat.Peer]]


@pytest.fixture
async def make_peer(server: p2pchat.SignallingServer) -> AsyncIterator[PeerFactory]:
    """Start a peer logged in to ``server``; all are closed at the end of the test."""
    peers: list[p2pchat.Peer] = []

    async def make(name: str, **kwargs: Any) -> p2pchat.Peer:
        kwargs.setdefault("server", ("127.0.0.1", server.port))
        peer = p2pchat.Peer(name, **kwargs)
        await peer.start()
        peers.append(peer)
        return peer

    yield make
    for peer in reversed(peers):
        await peer.close()


async def connect(
    inviter: p2pchat.Peer, invitee: p2pchat.Peer
) -> tuple[p2pchat.Conversation, p2pchat.Conversation]:
    """Invite, accept, and return (inviter's conversation, invitee's conversation)."""
    inviting = asyncio.create_task(inviter.invite(invitee.name, timeout=10))
    invitation = await asyncio.wait_for(invitee.next_invitation(), 10)
    assert invitation.sender == inviter.name
    accepted = await invitation.accept()
    return await inviting, accepted


class RawClient:
    """A hand-driven protocol client on a real socket: sends what the test says."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connection = Connection(reader, writer)

    @property
    def reader(self) -> asyncio.StreamReader:
        """The connection's stream (the TLS one once it is upgraded)."""
        return self.connection.streams[0]

    @property
    def writer(self) -> asyncio.StreamWriter:
        return self.connection.streams[1]

    @classmethod
    async def open(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def login(
        self, name: str, port: int, identity: Identity | None = None, *, traversal: bool = False
    ) -> Welcome:
        """Log in as ``name`` with ``identity`` (a new one by default), proving the key;
        ``traversal``: saying it takes part in reversal and hole punching."""
        identity = identity or Identity.generate()
        self.identity = identity
        await self.send(
            Hello(
                version=PROTOCOL_VERSION,
                name=name,
                addresses=[("127.0.0.1", port)],
                certificate=b64encode(identity.certificate),
                traversal=traversal,
            )
        )
        challenge = await self.recv()
        assert isinstance(challenge, Challenge), challenge
        payload = login_challenge_payload(challenge.nonce, name, identity.key)
        await self.send(Auth(signature=identity.sign(payload)))
        welcome = await self.recv()
        assert isinstance(welcome, Welcome), welcome
        return welcome

    async def start_direct(self, identity: Identity, invited: Invited, name: str) -> None:
        """Do what an invitee does on a direct connection: starttls, TLS, hello."""
        await self.send(StartTls(invitation=invited.invitation))
        assert isinstance(await self.recv(), Proceed)
        trusted = b64decode(invited.certificate)
        context = direct_tls_context(identity, trusted, server_side=False)
        await self.connection.start_tls(context, server_side=False)
        await self.send(Hello(version=PROTOCOL_VERSION, name=name, invitation=invited.invitation))
        assert isinstance(await self.recv(), Welcome)

    async def send(self, message: WireMessage) -> None:
        await self.connection.send(message)

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send_frame(self, body: bytes) -> None:
        await self.send_raw(struct.pack(">I", len(body)) + body)

    async def recv(self, timeout: float = 5.0) -> WireMessage:
        return await asyncio.wait_for(self.connection.recv(), timeout)

    async def recv_until(
        self, kind: type[Any] | tuple[type[Any], ...], timeout: float = 5.0
    ) -> Any:
        """Skip other messages (presence pushes) until one of ``kind`` arrives."""
        async with asyncio.timeout(timeout):
            while not isinstance(message := await self.connection.recv(), kind):
                pass
        return message

    async def closed_by_other_side(self, timeout: float = 5.0) -> bool:
        """True once the other side has closed; reads and drops whatever comes first."""
        async with asyncio.timeout(timeout):
            with contextlib.suppress(ConnectionError):  # a reset is a close too
                while await self.reader.read(65536):
                    pass
        return True

    async def close(self) -> None:
        await self.connection.close()


async def hand_driven_invitee(
    inviter: p2pchat.Peer,
    name: str,
    server_port: int,
    open_client: Callable[[int], Awaitable[RawClient]],
) -> tuple[p2pchat.Conversation, RawClient]:
    """Log in ``name`` by hand, have ``inviter`` invite it, dial in: (inviter's chat, the
    raw direct connection), so the test decides every byte the invitee sends."""
    identity = Identity.generate()
    login = await open_client(server_port)
    await login.login(name, 1, identity)
    inviting = asyncio.create_task(inviter.invite(name, timeout=10))
    invited = await login.recv_until(Invited)
    direct = await open_client(invited.addresses[0][1])
    await direct.start_direct(identity, invited, name)
    return await inviting, direct


Launch = Callable[..., Awaitable[ScriptedProcess]]
"""launch(label, args, env=None): ``env`` adds to the test's environment."""


@pytest.fixture
async def launch(tmp_path: Path) -> AsyncIterator[Launch]:
    """Start commands as real processes with pipes; every one is stopped at the end.

    Their data directory is the test's own (XDG_DATA_HOME), never the user's.
    """
    processes: list[ScriptedProcess] = []
    transcript: list[str] = []
    base = {**os.environ, "PYTHONUNBUFFERED": "1", "XDG_DATA_HOME": str(tmp_path / "data")}

    async def start(
        label: str, args: list[str], env: dict[str, str] | None = None
    ) -> ScriptedProcess:
        process = await ScriptedProcess.start(label, args, transcript, env={**base, **(env or {})})
        processes.append(process)
        return process

    yield start
    for process in processes:
        await process.stop()


@pytest.fixture
async def raw_clients() -> AsyncIterator[Callable[[int], Awaitable[RawClient]]]:
    clients: list[RawClient] = []

    async def open_client(port: int) -> RawClient:
        client = await RawClient.open(port)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        await client.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Callable[[str], Path]:
    return lambda name: tmp_path / f"{name}.sqlite3"


class RecordingProxy:
    """A TCP proxy on 127.0.0.1 that forwards to ``target`` and keeps every byte it saw,
    as someone on the network path would. ``cut()`` silently drops everything on the
    connections open now, as a cut cable does (nothing is closed); new ones still pass."""

    def __init__(self, target: tuple[str, int] | None = None) -> None:
        self.target = target  # may be set after start(), before the first connection
        self.captured = bytearray()
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._live: list[list[bool]] = []  # per connection: [cut]

    async def start(self) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", 0)
        return "127.0.0.1", self._server.sockets[0].getsockname()[1]

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        assert self.target is not None
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        state = [False]
        self._live.append(state)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    if state[0]:
                        continue  # cut: the bytes go nowhere
                    self.captured += data
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.close()

        tasks = [
            asyncio.create_task(pipe(reader, up_writer)),
            asyncio.create_task(pipe(up_reader, writer)),
        ]
        self._tasks.update(tasks)
        await asyncio.gather(*tasks, return_exceptions=True)

    def cut(self) -> None:
        for state in self._live:
            state[0] = True

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def server_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, as a server operator might make one."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "p2pchat test server")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.pem", directory / "server.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def let_the_loop_run(steps: int = 10) -> None:
    """Let the event loop take ``steps`` turns: callbacks ready now (socket reads among
    them, everything being in this process on loopback) run before this returns."""
    for _ in range(steps):
        await asyncio.sleep(0)


class _Gated:
    """Makes one async method of a store wait at ``gate``, as a loaded disk would: the
    test sees ``entered`` when the call has started, and opens ``gate`` when it likes."""

    def _gate_method(self, method: str) -> None:
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        self.calls: collections.Counter[str] = collections.Counter()
        original = getattr(self, method)

        async def gated(*args: Any, **kwargs: Any) -> Any:
            self.entered.set()
            await self.gate.wait()
            result = await original(*args, **kwargs)
            self.calls[method] += 1
            return result

        setattr(self, method, gated)


class GatedMessageStore(p2pchat.MemoryMessageStore, _Gated):
    def __init__(self, method: str) -> None:
        super().__init__()
        self._gate_method(method)


class GatedUserStore(p2pchat.MemoryUserStore, _Gated):
    def __init__(self, method: str) -> None:
        super().__init__()
        self._gate_method(method)


def require(component: str, available: bool, how: str) -> None:
    """Skip a test whose ``component`` this machine lacks, with the reason; but in CI
    (P2PCHAT_REQUIRE_ALL=1) fail it instead: there, every component must be present."""
    if available:
        return
    message = f"{component} is not available: {how}"
    if os.environ.get("P2PCHAT_REQUIRE_ALL") == "1":
        pytest.fail(f"{message} (P2PCHAT_REQUIRE_ALL=1: every component is required here)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the whole test session (127.0.0.1, a password, no
    persistence), stopped by its PID at the end."""
    require("redis-server", redis_available(), "install it (apt-get install redis-server)")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix of this test's own: tests sharing the Redis never see each other's keys."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


CLOSE_LIMIT = 30.0
"""How long a fixture waits for a close() before it fails the test, showing every task."""


async def in_time(work: Awaitable[T], what: str, limit: float) -> T:
    """Await ``work``; if it takes over ``limit`` seconds, fail saying ``what`` did, with
    the stack of every task still running (waiting for ever is a bug: this says where).
    It waits with ``asyncio.wait``, not by cancelling ``work`` at the limit: a task that
    lost a cancellation (Python 3.11 can) could lose that one too, and wait on."""
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=limit)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        stacks = io.StringIO()
        for running in asyncio.all_tasks():
            running.print_stack(file=stacks)
        task.cancel()
        pytest.fail(f"{what} took over {limit:g} s; tasks:\n{stacks.getvalue()}")
    return task.result()


async def closed_in_time(closing: Awaitable[None], what: str) -> None:
    """Await ``closing``; if it takes over CLOSE_LIMIT, fail naming ``what``, with the
    stack of every task still running (a close that hangs is a bug: this says where)."""
    await in_time(closing, f"closing {what}", CLOSE_LIMIT)


NodeFactory = Callable[..., Awaitable[p2pchat.SignallingServer]]
PeerMaker = Callable[..., Awaitable[p2pchat.Peer]]


@pytest.fixture
async def node(redis_url: str, redis_prefix: str) -> AsyncIterator[NodeFactory]:
    """Start a server node on the test's Redis prefix; all are closed at the end."""
    started: list[p2pchat.SignallingServer] = []

    async def start(node_id: str, **kwargs: Any) -> p2pchat.SignallingServer:
        kwargs.setdefault("heartbeat_interval", 0.2)
        kwargs.setdefault("node_ttl", 1.0)
        server = p2pchat.SignallingServer(
            port=0, redis=redis_url, redis_prefix=redis_prefix, node_id=node_id, **kwargs
        )
        started.append(server)
        await server.start()
        return server

    yield start
    for server in reversed(started):
        await closed_in_time(server.close(), f"node {server.node_id}")


@pytest.fixture
async def peer() -> AsyncIterator[PeerMaker]:
    """Start a peer given these nodes (in this order); all are closed at the end."""
    peers: list[p2pchat.Peer] = []

    async def make(name: str, *nodes: p2pchat.SignallingServer, **kwargs: Any) -> p2pchat.Peer:
        made = p2pchat.Peer(name, server=[("127.0.0.1", n.port) for n in nodes], **kwargs)
        peers.append(made)
        await made.start()
        return made

    yield make
    for made in reversed(peers):
        await closed_in_time(made.close(), f"peer {made.name}")
