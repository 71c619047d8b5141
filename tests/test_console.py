"""The console in the hands of a hostile correspondent, and of a user who types."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import termios
from pathlib import Path

import pytest

import p2pchat
from p2pchat.frontends import cli
from p2pchat.frontends.demo import command
from p2pchat.frontends.terminal import CONTINUATION, message_lines, visible

from .conftest import Launch, eventually

HOSTILE = "hi\x1b[2J\x1b]0;pwned\x07\r\nbob: forged\u202etxt.exe\x9b31m"
"""Clears the screen, sets the title, goes back over the line, forges a line from bob,
turns the text around and colours it (C1 CSI): a terminal must obey none of it."""


def test_control_characters_are_shown_not_obeyed() -> None:
    assert visible("a\x1b[2Jb\r\n\x00\x7f\x9b\u202e\u2028\tc") == (
        "a\\x1b[2Jb\\r\\n\\x00\\x7f\\x9b\\u202e\\u2028\tc"
    )
    assert visible("héllo, wörld 👋") == "héllo, wörld 👋"  # letters and emoji stay


def test_a_further_line_cannot_pass_for_a_message() -> None:
    assert message_lines("alice: ", "one\nbob: two\n\x1b[A", " (late)") == [
        "alice: one",
        f"{CONTINUATION}bob: two",
        f"{CONTINUATION}\\x1b[A (late)",
    ]


def assert_harmless(lines: list[str]) -> None:
    for line in lines:
        assert not any(char in line for char in "\x1b\r\x07\x9b\u202e"), repr(line)
        assert not line.startswith("bob: forged"), line


async def test_hostile_text_reaches_the_console_only_as_text(
    launch: Launch, tmp_path: Path
) -> None:
    server = await launch("server", [*command("p2pchat-server"), "--port", "0", "--memory"])
    port = int((await server.expect(r"listening on 127\.0\.0\.1:(\d+)")).group(1))
    where = ("127.0.0.1", port)
    db = str(tmp_path / "bob.sqlite3")
    bob_args = [*command("p2pchat-peer"), "bob", "--server", f"127.0.0.1:{port}", "--db", db]

    bob = await launch("bob", bob_args)
    await bob.expect("logged in as bob")
    await bob.say("e")
    assert await bob.finish() == 0
    async with p2pchat.Peer("alice", server=where) as alice:
        await alice.send("bob", HOSTILE)  # sealed: shown at bob's next login, untouched
        bob = await launch("bob", bob_args)
        await bob.expect(r"alice \(while you were away\): hi\\x1b\[2J\\x1b\]0;pwned\\x07\\r$")
        await bob.expect(r"^  \| bob: forged\\u202etxt\.exe\\x9b31m$")

        talk = asyncio.ensure_future(alice.invite("bob"))
        await bob.expect("alice invites you")
        await bob.say("y")
        chat = await talk
        await chat.send(HOSTILE)
        await bob.expect(r"^alice: hi\\x1b")
        await bob.expect(r"^  \| bob: forged")
        await bob.say("/h alice")
        await bob.expect(r"^\[.*\] alice: hi\\x1b")
        await bob.expect(r"^  \| bob: forged.*\\x9b31m$")

        # A line over the size limit typed in a talk: said, and the talk goes on.
        await bob.say("x" * 17_000)
        await bob.expect("error: message of 17000 bytes is over the limit")
        await bob.say("still here")
        assert (await asyncio.wait_for(chat.receive(), 15)).body == "still here"
    assert_harmless(bob.output)


async def test_ctrl_c_gives_the_terminal_back_as_it_was(launch: Launch, tmp_path: Path) -> None:
    server = await launch("server", [*command("p2pchat-server"), "--port", "0", "--memory"])
    port = (await server.expect(r"listening on 127\.0\.0\.1:(\d+)")).group(1)
    main, tty = os.openpty()
    seen = bytearray()
    try:
        before = termios.tcgetattr(tty)
        env = {**os.environ, "XDG_DATA_HOME": str(tmp_path), "TERM": "xterm"}
        peer = await asyncio.create_subprocess_exec(
            *command("p2pchat-peer"), "carol", "--server", f"127.0.0.1:{port}", "--memory",
            stdin=tty, stdout=tty, stderr=tty, env=env, start_new_session=True,
        )  # fmt: skip
        loop = asyncio.get_running_loop()
        loop.add_reader(main, lambda: seen.extend(os.read(main, 65536)))
        try:
            # The prompt is drawn once readline has taken the terminal (echo and line
            # editing off): the state a Ctrl-C used to leave behind.
            await eventually(lambda: b"> " in seen, timeout=20)
            assert not termios.tcgetattr(tty)[3] & termios.ICANON
            peer.send_signal(signal.SIGINT)
            assert await asyncio.wait_for(peer.wait(), 15) == 0
        finally:
            loop.remove_reader(main)
            if peer.returncode is None:
                peer.kill()
                await peer.wait()
        after = termios.tcgetattr(tty)
        assert after[3] & (termios.ICANON | termios.ECHO) == termios.ICANON | termios.ECHO
        assert after == before
    finally:
        os.close(main)
        os.close(tty)


pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX terminals")


async def test_a_name_outside_the_rule_is_an_error_line_and_the_session_stays(
    launch: Launch,
) -> None:
    server = await launch("server", [*command("p2pchat-server"), "--port", "0", "--memory"])
    port = (await server.expect(r"listening on 127\.0\.0\.1:(\d+)")).group(1)
    carol = await launch(
        "carol", [*command("p2pchat-peer"), "carol", "--server", f"127.0.0.1:{port}", "--memory"]
    )
    await carol.expect("logged in as carol")
    await carol.say("t Bad!Name")
    await carol.expect("error: .*Bad!Name")
    await carol.say("ls")
    await carol.expect("^online: carol$")  # the same session: never dropped, never flapping
    assert not any("reconnecting" in line for line in carol.output)


def test_log_lines_quote_what_others_sent_as_text() -> None:
    # A server's reason in a warning reaches the terminal too (stderr): as text.
    formatter = cli._TerminalFormatter("%(levelname)s %(message)s")
    reason = "bye\x1b[2J\r\nWARNING forged"
    record = logging.LogRecord(
        "p2pchat.peering.link", logging.WARNING, "", 0, "refused: %s", (reason,), None
    )
    assert formatter.format(record) == "WARNING refused: bye\\x1b[2J\\r\\nWARNING forged"


async def test_search_shows_who_when_and_the_match_marked_as_text(
    launch: Launch, tmp_path: Path
) -> None:
    server = await launch("server", [*command("p2pchat-server"), "--port", "0", "--memory"])
    port = int((await server.expect(r"listening on 127\.0\.0\.1:(\d+)")).group(1))
    db = str(tmp_path / "bob.sqlite3")
    bob = await launch(
        "bob", [*command("p2pchat-peer"), "bob", "--server", f"127.0.0.1:{port}", "--db", db]
    )
    await bob.expect("logged in as bob")
    async with p2pchat.Peer("alice", server=("127.0.0.1", port)) as alice:
        talk = asyncio.ensure_future(alice.invite("bob"))
        await bob.expect("alice invites you")
        await bob.say("y")
        chat = await talk
        for body in ("Un café\x1b[2J au lait", "nothing here", "CAFÉ\nbob: forged cafe"):
            await chat.send(body)
        await bob.expect(r"^  \| bob: forged cafe$")
        await bob.say("/s cafe")
        await bob.expect(r"^--- 2 found for cafe, the newest first ---$")
        await bob.expect(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d\] alice to bob: \*\*CAFÉ\*\*$")
        await bob.expect(r"^  \| bob: forged \*\*cafe\*\*$")
        await bob.expect(r"^\[.*\] alice to bob: Un \*\*café\*\*\\x1b\[2J au lait$")
        await bob.expect("^--- end of search ---$")
        await bob.say('/s "au lait" un')
        await bob.expect(r"^\[.*\] alice to bob: \*\*Un\*\* café\\x1b\[2J \*\*au lait\*\*$")
        await bob.say('/s "au lait')
        await bob.expect("error: a quote is left open")
        await bob.say("/s zebra")
        await bob.expect("^--- 0 found for zebra")
    assert_harmless(bob.output)
