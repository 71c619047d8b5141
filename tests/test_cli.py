"""The two commands as real processes, driven through pipes."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from p2pchat import SqliteMessageStore
from p2pchat.frontends import cli
from p2pchat.frontends.demo import ScriptedProcess, command, run_demo
from p2pchat.frontends.settings import SERVER_SETTINGS
from p2pchat.protocol import Error, ListUsers, Users

from .conftest import Launch, RawClient

ROOT = Path(__file__).resolve().parent.parent

Start = Callable[..., Awaitable[ScriptedProcess]]


@pytest.fixture
def start(launch: Launch) -> Start:
    """Start one of the two commands by name, with arguments."""

    async def start_command(label: str, name: str, *args: str) -> ScriptedProcess:
        return await launch(label, [*command(name), *args])

    return start_command


@pytest.fixture
async def server_port(start: Start) -> str:
    server = await start("server", "p2pchat-server", "--port", "0", "--memory")
    return (await server.expect(r"listening on 127\.0\.0\.1:(\d+)")).group(1)


async def peer(start: Start, port: str, name: str, *args: str) -> ScriptedProcess:
    process = await start(name, "p2pchat-peer", name, "--server", f"127.0.0.1:{port}", *args)
    await process.expect(f"logged in as {name}")
    return process


async def test_the_demo_chat_through_real_processes(tmp_path: Path) -> None:
    transcript: list[str] = []
    await run_demo(tmp_path, transcript)  # ls, t, y, talk, /exit, offline, restart, h, e
    typed = [line.split(" < ", 1)[1] for line in transcript if " < " in line]
    assert {"ls", "t bob", "y", "/exit", "e", "h alice"} <= set(typed)
    # Each line shows up once, where it happened: after bob's last "e" only his "bye".
    last = max(i for i, line in enumerate(transcript) if line == "   bob < e")
    assert [line for line in transcript[last:] if line.startswith("   bob")] == [
        "   bob < e",
        "   bob > bye",
    ]
    # alice opens the talk once bob's receipt is in: her history knows he has the mail.
    assert " alice > * delivered to bob: 1 message" in transcript
    assert not [line for line in transcript if "not delivered yet" in line]


async def test_refuse_and_the_name_prompt(start: Start, server_port: str) -> None:
    alice = await peer(start, server_port, "alice", "--memory")
    bob = await peer(start, server_port, "bob", "--memory")
    await alice.say("t")
    await alice.expect("talk to whom?")
    await alice.say("bob")
    await bob.expect("alice invites you")
    await bob.say("n")
    await bob.expect("refused alice")
    await alice.expect("error: bob refused the invitation: no thanks")
    await bob.say("y")
    await bob.expect("no pending invitation")


async def test_errors_are_reported_and_the_console_goes_on(start: Start, server_port: str) -> None:
    alice = await peer(start, server_port, "alice", "--memory")
    await alice.say("t nobody")
    await alice.expect("error: no user named nobody has ever logged in")
    await alice.say("frobnicate")
    await alice.expect("unknown command 'frobnicate'")
    await alice.say("d")
    await alice.expect("name: alice")
    await alice.expect(r"server: 127\.0\.0\.1:\d+ \(connected\)")
    await alice.expect("store: memory")
    await alice.say("ls")
    await alice.expect("online: alice")


async def test_a_taken_name_exits_with_a_clear_message(start: Start, server_port: str) -> None:
    await peer(start, server_port, "alice", "--memory")
    second = await start("alice2", "p2pchat-peer", "alice", "--server", f"127.0.0.1:{server_port}")
    await second.expect("cannot log in as alice: alice is logged in already")
    assert await second.finish() == 1


async def test_a_name_of_another_key_says_what_to_do_and_which_key_was_used(
    start: Start, server_port: str, tmp_path: Path
) -> None:
    first = await peer(start, server_port, "alice", "--memory")  # its key in the data dir
    await first.say("e")
    assert await first.finish() == 0
    other = tmp_path / "other.key"
    second = await start(
        "alice2", "p2pchat-peer", "alice", "--server", f":{server_port}", "--identity", str(other)
    )
    line = (await second.expect("cannot log in as alice")).string
    assert "alice is registered to another key" in line
    assert "log in with the key it was registered with, or choose another name" in line
    assert f"(your key: {other}; --identity PATH names another)" in line
    assert await second.finish() == 1


async def test_an_invalid_name_exits_before_making_any_file(start: Start, tmp_path: Path) -> None:
    bad = await start("bad", "p2pchat-peer", "../alice", "--server", "127.0.0.1:1")
    await bad.expect(r"invalid user name '\.\./alice': use 1 to 32 ASCII letters")
    assert await bad.finish() == 1
    assert not (tmp_path / "data").exists()


async def test_every_server_limit_is_an_option_and_a_variable(
    launch: Launch, tmp_path: Path
) -> None:
    server = await launch(
        "server",
        [
            "env",
            "P2PCHAT_MAX_LIST=1",  # from the environment
            *command("p2pchat-server"),
            "--port",
            "0",
            "--memory",
            "--max-connections",  # as an option
            "2",
        ],
    )
    port = int((await server.expect(r"listening on 127\.0\.0\.1:(\d+)")).group(1))
    first, second = await RawClient.open(port), await RawClient.open(port)
    try:
        await first.login("alice", 1)
        await second.login("bob", 1)
        await first.send(ListUsers(id="1"))
        assert (await first.recv_until(Users)).truncated  # one name only
        third = await RawClient.open(port)
        assert (await third.recv_until(Error)).code == "server_busy"  # two at most
        await third.close()
    finally:
        await first.close()
        await second.close()


async def test_no_server_exits_with_a_clear_message(start: Start, tmp_path: Path) -> None:
    lonely = await start("lonely", "p2pchat-peer", "lonely", "--server", "127.0.0.1:1", "--memory")
    await lonely.expect("cannot log in as lonely: cannot connect to 127.0.0.1:1")
    assert await lonely.finish() == 1


async def test_end_of_input_and_sigterm_leave_cleanly(
    start: Start, server_port: str, tmp_path: Path
) -> None:
    alice = await peer(start, server_port, "alice")  # default store, in XDG_DATA_HOME
    bob = await peer(start, server_port, "bob", "--memory")
    await alice.say("t bob")
    await bob.expect("alice invites you")
    await bob.say("y")
    await alice.expect("talking with bob")
    await alice.say("before the end")
    await bob.expect("alice: before the end")
    bob.process.send_signal(signal.SIGTERM)
    assert await bob.finish() == 0
    await alice.expect("bob left the conversation")
    await alice.close_input()
    assert await alice.finish() == 0
    assert (tmp_path / "data" / "p2pchat" / "peer-alice.sqlite3").exists()


async def test_server_stops_on_sigterm_and_tells_its_peers(start: Start) -> None:
    server = await start("server", "p2pchat-server", "--port", "0", "--memory")
    port = (await server.expect(r"listening on .*:(\d+)")).group(1)
    alice = await peer(start, port, "alice", "--memory")
    server.process.send_signal(signal.SIGTERM)
    assert await server.finish() == 0
    await alice.expect(r"lost the server; reconnecting")
    await alice.say("d")
    await alice.expect(r"\(reconnecting\)")


def test_entry_points_take_argv(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.peer_main(["--help"])
    assert exited.value.code == 0
    assert "t NAME" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        cli.server_main(["--port", "x"])
    assert exited.value.code == 2
    with pytest.raises(SystemExit):
        cli.peer_main(["alice", "--server", "host:no-port-here"])
    assert "expected HOST:PORT" in capsys.readouterr().err


BAD_SERVER_ARGUMENTS = {
    ("--port", "99999"): "argument --port: expected a port from 0 to 65535, got '99999'",
    ("--port", "-1"): "argument --port: expected a port from 0 to 65535, got '-1'",
    ("--max-connections", "-5"): "argument --max-connections: expected 1 or more, got '-5'",
    ("--max-connections", "off"): "argument --max-connections: expected a whole number",
    ("--max-relays", "-1"): "argument --max-relays: expected 0 or more, got '-1'",
    ("--max-frame", "10"): "argument --max-frame: expected 1024 or more, got '10'",
    ("--hello-timeout", "nan"): "argument --hello-timeout: expected a number above 0",
    ("--invitation-ttl", "0"): "argument --invitation-ttl: expected a number above 0",
    ("--registration-rate", "10/fortnight"): "argument --registration-rate: expected N/UNIT",
    ("--rate-limit", "0/s"): "argument --rate-limit: expected N/UNIT/BURST",
    ("--trusted-networks", "10.0.0.1/8"): "argument --trusted-networks: expected CIDR",
}


async def test_every_bad_server_argument_ends_in_one_line_and_no_traceback() -> None:
    async def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, list[str]]:
        process = await asyncio.create_subprocess_exec(
            *command("p2pchat-server"),
            "--memory",
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **(env or {})},
        )
        _, err = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode is not None
        return process.returncode, err.decode().splitlines()

    runs = [run(*args) for args in BAD_SERVER_ARGUMENTS]
    runs.append(run(env={"P2PCHAT_MAX_CONNECTIONS": "-5"}))
    results = await asyncio.gather(*runs)
    said = [*BAD_SERVER_ARGUMENTS.values(), "$P2PCHAT_MAX_CONNECTIONS: expected 1 or more"]
    for (status, lines), error in zip(results, said, strict=True):
        assert status == 2, lines
        assert not [line for line in lines if "Traceback" in line], lines
        assert lines[0].startswith("usage: p2pchat-server [OPTION ...]"), lines  # not 27 lines
        assert lines[-1].startswith("p2pchat-server: error: "), lines
        assert error in lines[-1], lines
        assert len(lines) == 2, lines


def test_readable_rates_and_what_each_numeric_setting_takes() -> None:
    by_name = {setting.name: setting for setting in SERVER_SETTINGS}
    rate = by_name["registration_rate"]
    assert rate.parse("10/hour/20") == (10 / 3600, 20)
    assert rate.parse("10/hour") == (10 / 3600, 10)
    assert rate.parse("20/200") == (20.0, 200)  # per second, as before
    assert rate.parse("5/min") == (5 / 60, 5)
    assert rate.parse("off") is None
    for setting in SERVER_SETTINGS:  # a bound the library must have cannot be turned off
        if setting.kind in ("int", "float", "rate"):
            with pytest.raises(argparse.ArgumentTypeError):
                setting.parse("-1")
            if setting.optional:
                assert setting.parse("off") is None
            else:
                with pytest.raises(argparse.ArgumentTypeError):
                    setting.parse("off")


def test_server_help_shows_lists_and_rates_readably(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit):
        cli.server_main(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "--trusted-networks CIDR,..." in shown
    assert "--trusted-networks N" not in shown
    assert "--registration-rate N/UNIT/BURST|off" in shown
    assert "(default 10/hour/20; $P2PCHAT_REGISTRATION_RATE)" in shown
    assert "(default 20/s/200; $P2PCHAT_RATE_LIMIT)" in shown
    assert "0.00277778" not in shown
    assert "--hello-timeout SECONDS|off" in shown
    assert "--max-connections N " in shown  # no |off: the library needs a bound


def test_peer_help_shows_the_console_commands_as_a_table(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit):
        cli.peer_main(["--help"])
    lines = capsys.readouterr().out.splitlines()
    table = lines[lines.index("commands:") :]
    assert table[1].split() == ["ls", "who", "is", "online"]
    assert [line.split()[0] for line in table[1:19]] == [
        "ls", "t", "y", "n", "h", "s", "whois", "g", "gs", "t", "add", "leave", "f", "fy",
        "fn", "files", "d", "e"
    ]  # fmt: skip
    assert table[18].split() == ["e", "exit"]  # not run into the next sentence
    assert table[19].startswith("in a talk every line is sent")


def test_a_server_named_without_a_port_is_on_the_default_one() -> None:
    assert cli._addresses("localhost") == [("localhost", 5535)]
    assert cli._addresses("[::1]") == [("::1", 5535)]
    assert cli._addresses("example.org,example.net:6000") == [
        ("example.org", 5535),
        ("example.net", 6000),
    ]
    for bad in ("::1", "host:port", "host:99999", "6000"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli._addresses(bad)


async def test_open_without_web_serves_the_page_and_opens_it(
    launch: Launch, server_port: str, tmp_path: Path
) -> None:
    # BROWSER is the command webbrowser runs: here one that says what it was given.
    browser = tmp_path / "browser.py"
    browser.write_text("import sys\nprint('browser', sys.argv[1], flush=True)\n")
    alice = await launch(
        "alice",
        [*command("p2pchat-peer"), "alice", "--server", f":{server_port}", "--memory", "--open"],
        env={"BROWSER": f"{sys.executable} {browser} %s"},
    )
    await alice.expect(r"web page: (http://127\.0\.0\.1:\d+/\S+)")
    await alice.expect(r"browser file://\S+/web-alice\.html$")  # leads there, token unseen


def test_addresses_on_the_command_line_take_ipv6_in_brackets() -> None:
    assert cli._address("[::1]:5535") == ("::1", 5535)
    assert cli._address("[fe80::1%eth0]:80") == ("fe80::1%eth0", 80)
    assert cli._address("[::]:0") == ("::", 0)
    assert cli._address("0.0.0.0:0") == ("0.0.0.0", 0)
    assert cli._address(":5535") == ("127.0.0.1", 5535)
    assert cli._address("example.org:5535") == ("example.org", 5535)
    for bad in ("::1:5535", "[::1]", "[::1:5535", "::1]:5535", "[nothost]:1", "[::1]:99999"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli._address(bad)
    assert cli._host("[::]") == "::"
    assert cli._host("::") == "::"


async def test_d_shows_each_conversation_with_its_route(start: Start, server_port: str) -> None:
    alice = await peer(start, server_port, "alice", "--memory", "--listen", "[::1]:0")
    bob = await peer(start, server_port, "bob", "--memory")
    await alice.say("t bob")
    await bob.expect("alice invites you")
    await bob.say("y")
    await alice.expect("talking with bob|bob accepted")
    await bob.say("/d")
    await bob.expect(r"seen by the server at: 127\.0\.0\.1:\d+")
    await bob.expect(r"conversations: alice \(direct, dialled, from \[::1\]:\d+\)")


async def test_fingerprints_and_whois(start: Start, server_port: str) -> None:
    alice = await peer(start, server_port, "alice", "--memory")
    bob = await peer(start, server_port, "bob", "--memory")
    await bob.say("d")
    bob_fingerprint = (await bob.expect(r"fingerprint: ([A-Z2-7-]{29})")).group(1)
    await alice.say("whois bob")
    await alice.expect(f"bob: {bob_fingerprint} \\(not talked with yet: compare it with them\\)")
    await alice.say("t bob")
    await bob.expect("alice invites you")
    await bob.say("y")
    await alice.expect("talking with bob")
    await alice.say("/whois bob")
    await alice.expect(f"bob: {bob_fingerprint} \\(matches the key remembered\\)")


async def test_a_key_file_others_can_read_is_refused(start: Start, tmp_path: Path) -> None:
    key = tmp_path / "alice.key"
    key.write_text("whatever")
    key.chmod(0o644)
    alice = await start("alice", "p2pchat-peer", "alice", "--identity", str(key), "--memory")
    await alice.expect(r"can be read by others.*\(chmod 600 ")
    assert await alice.finish() == 1


async def test_a_changed_key_is_refused_unless_the_user_says_yes(
    start: Start, tmp_path: Path
) -> None:
    first = await start("server1", "p2pchat-server", "--port", "0", "--memory")
    port = (await first.expect(r"listening on .*:(\d+)")).group(1)
    alice = await peer(start, port, "alice")  # keeps its store and key in XDG_DATA_HOME
    bob = await peer(start, port, "bob")
    await alice.say("t bob")
    await bob.expect("alice invites you")
    await bob.say("y")
    await alice.expect("talking with bob")
    for person in (alice, bob):
        await person.say("/e")
        assert await person.finish() == 0
    # Another server vouches a different key for "bob".
    second = await start("server2", "p2pchat-server", "--port", "0", "--memory")
    port = (await second.expect(r"listening on .*:(\d+)")).group(1)
    other = str(tmp_path / "another-bob.key")
    impostor = await peer(start, port, "bob", "--identity", other, "--memory")
    alice = await peer(start, port, "alice")
    await alice.say("t bob")
    await alice.expect(r"WARNING: the key of bob changed: remembered [A-Z2-7-]+, now [A-Z2-7-]+")
    await alice.expect(r"trust the new key of bob\? \(yes/no\)")
    await alice.say("no")
    await alice.expect("not trusted")
    await impostor.expect("alice invites you")
    await impostor.expect(r"alice withdrew the invitation \(alice cancelled it\)")
    await alice.say("t bob")
    await alice.expect(r"trust the new key of bob\?")
    await impostor.expect("alice invites you")  # sent while alice is asked
    await alice.say("yes")
    await alice.expect("trusting the new key of bob")
    # The one asked about is withdrawn and another sent after "yes": alice's cancel and
    # her new invitation are two requests, whose news may reach bob in either order.
    await impostor.expect_all("alice withdrew the invitation", "alice invites you")
    await impostor.say("y")
    await alice.expect("talking with bob")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
async def test_a_signal_leaves_cleanly_and_keeps_the_store(
    start: Start, server_port: str, tmp_path: Path, signum: signal.Signals
) -> None:
    alice = await peer(start, server_port, "alice", "--memory")
    db = tmp_path / "bob.sqlite3"
    bob = await peer(start, server_port, "bob", "--db", str(db))
    await alice.say("t bob")
    await bob.expect("alice invites you")
    await bob.say("y")
    await alice.expect("talking with bob")
    await alice.say("keep this")
    await bob.expect("alice: keep this")
    bob.process.send_signal(signum)
    assert await bob.finish() == 0
    # Two pieces of news from two connections (the talk, the server): in either order.
    await alice.expect_all(
        r"bob left the conversation \(bob left: logging out\)", r"\* bob went offline"
    )
    store = SqliteMessageStore(db)  # closed cleanly: readable, with what was said
    await store.start()
    try:
        assert [m.body for m in await store.history("bob", "alice")] == ["keep this"]
    finally:
        await store.close()


async def test_the_benchmarks_run_in_their_quick_form() -> None:
    """make bench's harness, on tiny sizes, so that it cannot rot unnoticed."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks",
        "--quick",
        "--only",
        "awaited,logins",
        "--json",
        "/dev/null",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 120)
    text = output.decode()
    assert process.returncode == 0, text
    assert "one at a time, each awaited until acked" in text
    assert "logins, 200 peers at once" in text
