"""Files through the console, as a user drives it: two real ``p2pchat-peer`` processes on
pipes, one sends a file, the other accepts it; progress one line per 10% on a pipe, and
redrawn in place on a terminal."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pytest

from p2pchat.frontends.console import TerminalScreen
from p2pchat.frontends.demo import ScriptedProcess, command

from .conftest import Launch

SIZE = 24 * 1024 * 1024 + 5  # a dozen acknowledgements at the default window


async def two_consoles(
    launch: Launch, tmp_path: Path, bob_env: dict[str, str] | None = None
) -> tuple[ScriptedProcess, ScriptedProcess]:
    server = await launch("server", [*command("p2pchat-server"), "--port", "0", "--memory"])
    port = int((await server.expect(r"listening on 127\.0\.0\.1:(\d+)")).group(1))
    where = ["--server", f"127.0.0.1:{port}", "--memory"]
    alice = await launch("alice", [*command("p2pchat-peer"), "alice", *where])
    bob = await launch("bob", [*command("p2pchat-peer"), "bob", *where], env=bob_env)
    await alice.expect("logged in as alice")
    await bob.expect("logged in as bob")
    await alice.say("t bob")
    await bob.expect("alice invites you")
    await bob.say("y")
    await alice.expect("talking with bob")
    await bob.expect("talking with alice")
    return alice, bob


def percentages(lines: list[str], pattern: str) -> list[int]:
    return [int(m.group(1)) for line in lines if (m := re.search(pattern, line))]


async def test_a_file_sent_and_accepted_in_the_console(launch: Launch, tmp_path: Path) -> None:
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(SIZE))
    alice, bob = await two_consoles(launch, tmp_path)
    await alice.say(f"/f bob {source}")
    await alice.expect(r"offered data\.bin \(24\.0 MiB\) to bob")
    await bob.expect(r"alice offers data\.bin \(24\.0 MiB\): fy \[DIR\] to accept")
    await bob.say(f"/fy {tmp_path / 'in'}")
    await bob.expect(rf"accepted data\.bin from alice, into {re.escape(str(tmp_path / 'in'))}")
    done = await bob.expect(r"data\.bin: done, SHA-256 checked; saved as (.*)$", timeout=60)
    assert done.group(1) == str(tmp_path / "in" / "data.bin")
    await alice.expect(r"data\.bin: done, SHA-256 checked; bob has it", timeout=30)
    assert (tmp_path / "in" / "data.bin").read_bytes() == source.read_bytes()
    for side, way in ((bob, "from alice"), (alice, "to bob")):
        shown = percentages(side.output, rf"^data\.bin {way}: .* \((\d+)%\)")
        # One line per tenth at most, in order, up to the whole file.
        assert shown == sorted(set(shown)), shown
        assert len({p // 10 for p in shown}) == len(shown), shown
        assert shown[-1] == 100
        assert len(shown) >= 5, shown
    progress = [line for line in bob.output if "from alice:" in line]
    assert re.search(
        r"MiB of 24\.0 MiB \(\d+%\), [\d.,]+ [KMG]i?B/s, \d\d:\d\d:\d\d left", "\n".join(progress)
    )


async def test_an_offer_refused_in_the_console_reaches_the_sender(
    launch: Launch, tmp_path: Path
) -> None:
    source = tmp_path / "x.txt"
    source.write_text("hello")
    alice, bob = await two_consoles(launch, tmp_path)
    await alice.say(f"/f bob {source}")
    await bob.expect(r"alice offers x\.txt")
    await bob.say("/fn")
    await bob.expect(r"refused x\.txt from alice")
    await alice.expect(r"x\.txt: bob: no thanks")
    await bob.say("/h alice")  # the offer keeps a line in the history, said plainly
    await bob.expect(r"^\[.*\] alice: \[file offered: x\.txt, 5 bytes\]$")


async def test_accept_goes_to_the_downloads_directory_by_default(
    launch: Launch, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    alice, bob = await two_consoles(launch, tmp_path, bob_env=env)
    source = tmp_path / "x.txt"
    source.write_text("hello")
    await alice.say(f"/f bob {source}")
    await bob.expect(r"alice offers x\.txt")
    await bob.say("/fy")
    await bob.expect(r"done, SHA-256 checked; saved as .*/home/Downloads/x\.txt$")
    assert (home / "Downloads" / "x.txt").read_text() == "hello"


async def test_a_progress_line_is_redrawn_in_place_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    screen = TerminalScreen()
    await screen.show("news")
    await screen.show_progress("x: 10%")
    await screen.show_progress("x: 20%")
    await screen.show("other news")
    await screen.show_progress("x: 30%")
    assert out.getvalue() == ("news\nx: 10%\n\x1b[1A\r\x1b[2Kx: 20%\nother news\nx: 30%\n")
