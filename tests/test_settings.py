"""Every limit and timeout of the server is an option of p2pchat-server and a P2PCHAT_
variable, shown in --help with its default; a peer takes several servers."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

import p2pchat
from p2pchat.frontends import cli
from p2pchat.frontends.demo import command
from p2pchat.frontends.settings import SERVER_SETTINGS
from p2pchat.peering.settings import PEER_DEFAULTS, PeerLimits, PeerSettings
from p2pchat.serving.settings import DEFAULTS, ServerLimits, ServerSettings

from .conftest import Launch, eventually

NOT_SETTINGS = {
    "self",
    "host",
    "port",
    "store",
    "mailbox",
    "ssl",
    "redis",
    "redis_prefix",
    "node_id",
    "advertise",
    "metrics",
    "clock",
}
"""Keywords that are options of their own (--host, --redis...) or only for the library."""


def test_every_limit_and_timeout_is_a_setting() -> None:
    """Each field of ServerSettings is a keyword of SignallingServer (``**limits``, typed
    by ServerLimits: the same names and types), an option and a variable, defaulting to
    the same value; ``settings=`` takes them all at once."""
    parameters = inspect.signature(p2pchat.SignallingServer.__init__).parameters
    assert set(parameters) - NOT_SETTINGS == {"settings", "limits"}
    assert parameters["limits"].kind is inspect.Parameter.VAR_KEYWORD
    assert parameters["limits"].annotation == "Unpack[ServerLimits]"
    fields = {f.name: f.type for f in dataclasses.fields(ServerSettings)}
    typed = {name: hint.__forward_arg__ for name, hint in ServerLimits.__annotations__.items()}
    assert typed == fields
    assert set(fields) == {s.name for s in SERVER_SETTINGS}
    assert p2pchat.SignallingServer().settings == ServerSettings()
    for name in fields:
        default = getattr(DEFAULTS, name)
        server = p2pchat.SignallingServer(**{name: default})
        assert server.settings == DEFAULTS


def test_settings_are_checked_once_whoever_gives_them() -> None:
    with pytest.raises(ValueError, match="max_connections: expected 1 or more, got -5"):
        p2pchat.SignallingServer(max_connections=-5)
    with pytest.raises(ValueError, match="max_connections: expected 1 or more, got -5"):
        ServerSettings(max_connections=-5)
    given = ServerSettings(max_connections=10, mail_ttl=60.0)
    server = p2pchat.SignallingServer(settings=given)
    assert server.settings is given
    assert server.relays.settings is given
    assert server.mail.settings is given
    server = p2pchat.SignallingServer(settings=given, max_connections=20)  # keywords win
    assert (server.settings.max_connections, server.settings.mail_ttl) == (20, 60.0)
    assert given.max_connections == 10
    with pytest.raises(ValueError, match="hello_timeout: expected a number above 0"):
        p2pchat.SignallingServer(settings=given, hello_timeout=-1.0)
    with pytest.raises(TypeError, match="max_conections"):
        p2pchat.SignallingServer(max_conections=3)  # type: ignore[call-arg]


def test_every_limit_and_timeout_of_a_peer_is_a_keyword() -> None:
    """The same for Peer: ``**limits`` typed by PeerLimits (PeerSettings' names and
    types, its defaults), or ``settings=``; checked once, handed to the parts."""
    parameters = inspect.signature(p2pchat.Peer.__init__).parameters
    assert parameters["limits"].kind is inspect.Parameter.VAR_KEYWORD
    assert parameters["limits"].annotation == "Unpack[PeerLimits]"
    fields = {f.name: f.type for f in dataclasses.fields(PeerSettings)}
    typed = {name: hint.__forward_arg__ for name, hint in PeerLimits.__annotations__.items()}
    assert typed == fields
    for name in fields:
        peer = p2pchat.Peer("alice", **{name: getattr(PEER_DEFAULTS, name)})
        assert peer.settings == PEER_DEFAULTS
    with pytest.raises(ValueError, match="max_queue: expected 1 or more, got 0"):
        p2pchat.Peer("alice", max_queue=0)
    given = PeerSettings(hello_timeout=1.0, max_message_size=100)
    peer = p2pchat.Peer("alice", settings=given, max_message_size=200)
    assert (peer.settings.hello_timeout, peer.settings.max_message_size) == (1.0, 200)
    with pytest.raises(p2pchat.MessageTooLarge):
        peer.check_body("x" * 201)
    peer = p2pchat.Peer("alice", settings=given)
    assert peer.settings is given
    assert peer._make_reach().door.settings is given


def test_help_shows_every_setting_with_its_default_and_variable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        cli.server_main(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for setting in SERVER_SETTINGS:
        assert setting.option in shown
        assert f"${setting.variable})" in shown
    for option in ("--redis", "--redis-prefix", "--node-id", "--advertise", "--metrics"):
        assert option in shown
    assert "(default 4096; $P2PCHAT_MAX_CONNECTIONS)" in shown
    assert "(default 5; $P2PCHAT_NODE_TTL)" in shown


def test_redis_goes_without_a_local_store(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.server_main(["--redis", "redis://127.0.0.1:1/0", "--memory"])
    assert exited.value.code == 2
    assert "--redis keeps users and mail in Redis" in capsys.readouterr().err


async def test_a_peer_given_several_servers_logs_in_to_one_that_answers(
    launch: Launch,
) -> None:
    async with p2pchat.SignallingServer(port=0) as server:
        peer = await launch(
            "bob",
            [
                *command("p2pchat-peer"),
                "bob",
                "--memory",
                "--server",
                f"127.0.0.1:1,127.0.0.1:{server.port}",  # nobody listens on the first
            ],
        )
        await peer.expect("logged in as bob")
        await peer.say("d")
        await peer.expect(rf"server: 127\.0\.0\.1:{server.port} \(connected\)")


async def test_a_peer_moves_to_the_next_server_when_it_loses_one() -> None:
    first = p2pchat.SignallingServer(port=0)
    async with p2pchat.SignallingServer(port=0) as second:
        await first.start()
        servers = [("127.0.0.1", first.port), ("127.0.0.1", second.port)]
        states: list[str] = []
        async with p2pchat.Peer("alice", server=servers, reconnect_delay=(0.05, 0.2)) as alice:
            alice.on_state = states.append
            assert alice.server_address == servers[0]
            await first.close()  # bye: alice goes to the next server
            await eventually(
                lambda: alice.state == "connected" and alice.server_address == servers[1]
            )
            assert await alice.online() == ["alice"]
            assert states == ["reconnecting", "connected"]
