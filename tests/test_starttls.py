"""The in-place TLS upgrade (``Connection.recv_last_clear()`` then ``start_tls()``) on every
event loop the commands may run on: asyncio's and, when installed, uvloop's.

Bytes sent in clear after the last clear message (STARTTLS injection) must never be read
as if they had come through TLS: those read with that message fail it, those received but
not read yet fail the upgrade, and those still in the socket reach the TLS layer, which
refuses them. Each test drives both ends of a loopback connection in one loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import pytest

from p2pchat.errors import ConnectionClosed, ProtocolError
from p2pchat.protocol import Msg, Proceed, StartTls, encode
from p2pchat.shared.connection import Connection
from p2pchat.shared.identity import Identity, direct_tls_context

from .conftest import let_the_loop_run, require

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def _loop_factories() -> list[Any]:
    factories: list[Any] = [pytest.param(asyncio.new_event_loop, id="asyncio")]
    try:
        import uvloop
    except ImportError:  # the fixture skips it, or fails it in CI
        factories.append(pytest.param(None, id="uvloop"))
    else:
        factories.append(pytest.param(uvloop.new_event_loop, id="uvloop"))
    return factories


@pytest.fixture(params=_loop_factories())
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, None]], None]:
    """Runs a test's coroutine to the end on a new loop of the kind under test."""
    factory: LoopFactory | None = request.param
    require("uvloop", factory is not None, "pip install -e '.[speed]' (make test installs it)")
    assert factory is not None

    def run(main: Coroutine[Any, Any, None]) -> None:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(asyncio.wait_for(main, 20))

    return run


@asynccontextmanager
async def pair() -> AsyncIterator[tuple[Connection, Connection]]:
    """(the dialler's connection, the listener's) on loopback."""
    accepted: asyncio.Queue[Connection] = asyncio.Queue()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put(Connection(reader, writer))

    listener = await asyncio.start_server(serve, "127.0.0.1", 0)
    dialler = await Connection.open("127.0.0.1", listener.sockets[0].getsockname()[1])
    listening = await accepted.get()
    try:
        yield dialler, listening
    finally:
        for connection in (dialler, listening):
            await connection.close()
        listener.close()
        await listener.wait_closed()


def contexts(*, dialler_serves: bool = False) -> tuple[Any, Any]:
    """TLS contexts (the dialler's, the listener's), each pinned to the other's key."""
    one, other = Identity.generate(), Identity.generate()
    return (
        direct_tls_context(one, other.certificate, server_side=dialler_serves),
        direct_tls_context(other, one.certificate, server_side=not dialler_serves),
    )


async def upgrade(
    dialler: Connection, listening: Connection, *, dialler_serves: bool = False
) -> list[BaseException | None]:
    """Both sides' start_tls() at once: what each raised (None: upgraded)."""
    dialler_context, listening_context = contexts(dialler_serves=dialler_serves)
    outcomes = await asyncio.gather(
        dialler.start_tls(dialler_context, server_side=dialler_serves, timeout=5),
        listening.start_tls(listening_context, server_side=not dialler_serves, timeout=5),
        return_exceptions=True,
    )
    return [outcome if isinstance(outcome, BaseException) else None for outcome in outcomes]


@pytest.mark.parametrize("dialler_serves", [False, True], ids=["listener-serves", "dialler-serves"])
def test_an_upgrade_with_nothing_injected_carries_messages(
    run: Callable[[Coroutine[Any, Any, None]], None], dialler_serves: bool
) -> None:
    # Either side may take the server's part (a reversed or punched connection: the
    # inviter dialled, yet is the TLS server).
    async def main() -> None:
        async with pair() as (dialler, listening):
            await dialler.send(StartTls(invitation="i"))
            assert isinstance(await listening.recv_last_clear(), StartTls)
            await listening.send(Proceed())
            assert isinstance(await dialler.recv_last_clear(), Proceed)
            assert await upgrade(dialler, listening, dialler_serves=dialler_serves) == [None, None]
            assert dialler.peer_certificate()
            assert listening.peer_certificate()
            await dialler.send(Msg(id="1", ts=0.0, body="through TLS"))
            assert await listening.recv() == Msg(id="1", ts=0.0, body="through TLS")
            await listening.send(Msg(id="2", ts=0.0, body="and back"))
            assert await dialler.recv() == Msg(id="2", ts=0.0, body="and back")

    run(main())


def test_clear_bytes_read_with_the_last_clear_message_fail_it(
    run: Callable[[Coroutine[Any, Any, None]], None],
) -> None:
    async def main() -> None:
        async with pair() as (dialler, listening):
            injected = encode(StartTls(invitation="i")) + encode(Msg(id="x", ts=0.0, body="!"))
            dialler.streams[1].write(injected)  # in one write: one read takes both
            with pytest.raises(ProtocolError, match="arrived in clear"):
                await listening.recv_last_clear()

    run(main())


def test_clear_bytes_received_but_not_read_fail_the_upgrade(
    run: Callable[[Coroutine[Any, Any, None]], None],
) -> None:
    # The dialler read "proceed" (not as the last clear message: it kept reading), then
    # clear bytes reached its stream unread. They must not be taken for TLS data.
    async def main() -> None:
        async with pair() as (dialler, listening):
            await listening.send(Proceed())
            assert isinstance(await dialler.recv(), Proceed)
            listening.streams[1].write(encode(Msg(id="x", ts=0.0, body="INJECTED")))
            await let_the_loop_run()  # the bytes reach the dialler's stream, unread
            dialler_context, _ = contexts()
            with pytest.raises(ProtocolError, match="arrived in clear"):
                await dialler.start_tls(dialler_context, server_side=False, timeout=5)

    run(main())


@pytest.mark.parametrize("dialler_serves", [False, True], ids=["listener-serves", "dialler-serves"])
def test_clear_bytes_after_the_last_clear_message_fail_the_tls_handshake(
    run: Callable[[Coroutine[Any, Any, None]], None], dialler_serves: bool
) -> None:
    # The bytes arrive once the listener has stopped reading: they stay in the socket,
    # and its TLS layer reads them first. The keys are right: only they fail the upgrade.
    async def main() -> None:
        async with pair() as (dialler, listening):
            await dialler.send(StartTls(invitation="i"))
            assert isinstance(await listening.recv_last_clear(), StartTls)
            await dialler.send(Msg(id="x", ts=0.0, body="INJECTED"))
            await let_the_loop_run()  # they reach the listener's socket, which is not read
            await listening.send(Proceed())
            assert isinstance(await dialler.recv_last_clear(), Proceed)
            dialler_failed, listening_failed = await upgrade(
                dialler, listening, dialler_serves=dialler_serves
            )
            assert isinstance(listening_failed, ConnectionClosed)
            assert isinstance(dialler_failed, ConnectionClosed)

    run(main())
