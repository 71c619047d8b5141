"""Groups on the console: real ``p2pchat-peer`` processes over pipes, a real server."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import p2pchat
from p2pchat.frontends.demo import ScriptedProcess, command

from .conftest import Launch
from .test_console import HOSTILE, assert_harmless

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX pipes")


async def start_server(launch: Launch) -> int:
    server = await launch("server", [*command("p2pchat-server"), "--port", "0", "--memory"])
    return int((await server.expect(r"listening on 127\.0\.0\.1:(\d+)")).group(1))


async def console(launch: Launch, port: int, name: str, tmp_path: Path) -> ScriptedProcess:
    db = str(tmp_path / f"{name}.sqlite3")
    peer = await launch(
        name, [*command("p2pchat-peer"), name, "--server", f"127.0.0.1:{port}", "--db", db]
    )
    await peer.expect(f"logged in as {name}")
    return peer


async def test_a_group_made_talked_in_changed_and_left_on_the_console(
    launch: Launch, tmp_path: Path
) -> None:
    port = await start_server(launch)
    alice, bob, carol, dave = [
        await console(launch, port, name, tmp_path) for name in ("alice", "bob", "carol", "dave")
    ]
    await alice.say("g friends bob carol")
    await alice.expect(r"^created the group #friends \(number 1\): alice \(admin\), bob, carol;")
    for member in (bob, carol):
        await member.expect(
            r"^\* alice added you to the group #friends \(alice \(admin\), bob, carol\)"
        )
    await bob.say("gs")
    await bob.expect(r"^#1 friends: alice \(admin\), bob, carol$")

    await alice.say("t #friends")
    await alice.expect(r"^talking in #friends with alice \(admin\), bob, carol")
    await alice.say("hello, friends")
    await bob.say("t #1")
    await bob.expect(r"^talking in #friends")
    await bob.say("bob here")
    await bob.expect(r"^\[#friends\] alice: hello, friends$")
    await carol.expect_all(r"^\[#friends\] alice: hello, friends$", r"^\[#friends\] bob: bob here$")
    await alice.expect(r"^\[#friends\] bob: bob here$")
    # A search finds a group's message, and names the group as its talk is named.
    await carol.say("s here")
    await carol.expect(r"^--- 1 found for here, the newest first ---$")
    await carol.expect(r"^\[[\d :-]+\] bob in #friends: bob \*\*here\*\*$")

    # Only the admin changes the group: bob's add is refused, in one line.
    await bob.say("/add dave")
    await bob.expect(r"^error: ")
    await bob.say("/gs")
    await bob.expect(r"^#1 friends: alice \(admin\), bob, carol")  # unchanged, still there
    await alice.say("/add dave")
    await alice.expect(r"^added dave to #friends: alice \(admin\), bob, carol, dave$")
    await dave.expect(r"^\* alice added you to the group #friends")
    await alice.say("/rm carol")
    await alice.expect(r"^removed carol from #friends: alice \(admin\), bob, dave$")
    await carol.expect(r"^\* you are no longer in the group #friends$")
    await carol.say("t #friends")  # gone from her groups: one line says so
    await carol.expect(r"^no group #friends")
    await alice.say("without carol")
    await bob.expect(r"^\* dave is now in the group #friends$")  # alice's changes, in order
    await bob.expect(r"^\* carol is no longer in the group #friends$")
    await bob.expect(r"^\[#friends\] alice: without carol$")
    await dave.expect(r"^\[#friends\] alice: without carol$")

    # dave leaves for good; an unknown user is an error line; nothing else was printed.
    await dave.say("leave #friends")
    await dave.expect(r"^you left the group #friends$")
    await alice.say("/exit")
    await alice.expect(r"^left the talk of #friends: you are still in the group")
    await alice.say("g others nobody-such")
    await alice.expect(r"^error: .*nobody-such")
    await bob.say("/h #friends")
    await bob.expect(r"^--- history of #friends: \d+ messages ---$")
    await bob.expect(r"^\[.*\] \[#friends\] alice: without carol")
    for peer in (alice, bob, carol, dave):
        assert not any("Traceback" in line for line in peer.output), peer.label
        # Receipts of group messages and notices are no news of one-to-one letters.
        assert not any(line.startswith("* delivered to") for line in peer.output), peer.label


async def test_a_hostile_group_name_and_body_reach_the_console_only_as_text(
    launch: Launch, tmp_path: Path
) -> None:
    port = await start_server(launch)
    bob = await console(launch, port, "bob", tmp_path)
    async with p2pchat.Peer("mallory", server=("127.0.0.1", port)) as mallory:
        # A name that would close the brackets and pass for bob's line: it is quoted.
        group = await mallory.create_group("x] bob: forged", ["bob"])
        await bob.expect(r'^\* mallory added you to the group #"x\] bob: forged" ')
        await group.send(HOSTILE)
        await bob.expect(r'^\[#"x\] bob: forged"\] mallory: hi\\x1b\[2J')
        await bob.expect(r"^  \| bob: forged\\u202etxt\.exe\\x9b31m$")
    assert_harmless(bob.output)
