"""``python -m p2pchat.frontends.demo`` (``make demo``): a scripted chat between two real peers.

Starts ``p2pchat-server`` and two ``p2pchat-peer`` processes, drives their consoles through
pipes exactly as a person would type, and prints the transcript. Along the way: a list, an
invitation accepted, a talk, a message written while the other side is away, sealed and
left on the server, delivered when they log in again, and the history kept across a
restart.

``ScriptedProcess`` is the small driver it uses; the command-line tests use it too.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["ScriptedProcess", "command", "main", "run_demo"]


class ScriptedProcess:
    """A command whose standard input and output are pipes: write lines, expect lines."""

    def __init__(self, label: str, process: asyncio.subprocess.Process, transcript: list[str]):
        self.label = label
        self.process = process
        self.transcript = transcript
        self.output: list[str] = []

    @classmethod
    async def start(
        cls,
        label: str,
        args: Sequence[str],
        transcript: list[str],
        *,
        env: dict[str, str] | None = None,
    ) -> ScriptedProcess:
        process = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
        )
        return cls(label, process, transcript)

    async def say(self, line: str) -> None:
        """Type ``line`` and Enter."""
        assert self.process.stdin is not None
        self.transcript.append(f"{self.label:>6} < {line}")
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()

    async def expect(self, pattern: str, *, timeout: float = 15.0) -> re.Match[str]:
        """Read output lines until one matches ``pattern``; fail at EOF or after ``timeout``."""
        assert self.process.stdout is not None
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                raw = await asyncio.wait_for(self.process.stdout.readline(), max(remaining, 0))
            except TimeoutError:
                raise AssertionError(self._missing(pattern, "no such line in time")) from None
            if not raw:
                raise AssertionError(self._missing(pattern, "the process ended"))
            line = raw.decode(errors="replace").rstrip("\n")
            self.output.append(line)
            self.transcript.append(f"{self.label:>6} > {line}")
            if match := regex.search(line):
                return match

    async def expect_all(self, *patterns: str, timeout: float = 15.0) -> list[re.Match[str]]:
        """Read lines until each pattern has matched one, in whatever order they come:
        for news from different connections, which have no order between them."""
        found: dict[str, re.Match[str]] = {}
        deadline = time.monotonic() + timeout
        while len(found) < len(patterns):
            waiting = [p for p in patterns if p not in found]
            either = "|".join(f"(?:{p})" for p in waiting)
            line = (await self.expect(either, timeout=max(deadline - time.monotonic(), 0))).string
            for pattern in waiting:
                if match := re.search(pattern, line):
                    found[pattern] = match
                    break
        return [found[p] for p in patterns]

    def _missing(self, pattern: str, why: str) -> str:
        recent = "\n".join(self.output[-15:])
        return f"{self.label}: expected {pattern!r}: {why}. Last lines:\n{recent}"

    async def close_input(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()

    async def finish(self, *, timeout: float = 15.0) -> int:
        """Wait for the process to exit by itself, reading what it still prints."""
        assert self.process.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                while raw := await self.process.stdout.readline():
                    line = raw.decode(errors="replace").rstrip("\n")
                    self.output.append(line)
                    self.transcript.append(f"{self.label:>6} > {line}")
                return await self.process.wait()
        except TimeoutError:
            raise AssertionError(self._missing("the process to exit", "it did not")) from None

    async def stop(self) -> None:
        """Stop it if it is still running (SIGTERM, then SIGKILL)."""
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


def command(name: str) -> list[str]:
    """The installed console script ``name``, or the module run by this interpreter."""
    script = Path(sys.executable).parent / name
    if script.exists():
        return [str(script)]
    entry = {"p2pchat-server": "server_main", "p2pchat-peer": "peer_main"}[name]
    return [sys.executable, "-c", f"import sys, p2pchat.frontends.cli as c; sys.exit(c.{entry}())"]


async def run_demo(workdir: Path, transcript: list[str]) -> None:
    """The scripted chat; raises AssertionError with the recent output if a step fails."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    processes: list[ScriptedProcess] = []

    async def start(label: str, *args: str) -> ScriptedProcess:
        process = await ScriptedProcess.start(label, args, transcript, env=env)
        processes.append(process)
        return process

    try:
        server = await start(
            "server",
            *command("p2pchat-server"),
            "--port",
            "0",
            "--db",
            str(workdir / "server.sqlite3"),
        )
        port = (await server.expect(r"listening on .*:(\d+)")).group(1)

        async def peer(name: str) -> ScriptedProcess:
            process = await start(
                name,
                *command("p2pchat-peer"),
                name,
                "--server",
                f"127.0.0.1:{port}",
                "--db",
                str(workdir / f"{name}.sqlite3"),
                "--identity",
                str(workdir / f"{name}.key"),
            )
            await process.expect(f"logged in as {name}")
            return process

        alice = await peer("alice")
        bob = await peer("bob")
        await alice.say("ls")
        await alice.expect(r"online: alice, bob")

        await alice.say("t bob")
        await bob.expect(r"alice invites you to talk")
        await bob.say("y")
        await bob.expect(r"talking with alice")
        await alice.expect(r"talking with bob")
        await alice.say("Hi Bob! Direct connection, no server in between.")
        await bob.expect(r"alice: Hi Bob!")
        await bob.say("Hi Alice. Every message is acknowledged, so none is lost.")
        await alice.expect(r"bob: Hi Alice")
        await bob.say("/exit")
        await bob.expect(r"left the talk with alice")
        await alice.expect(r"bob left the conversation")

        await bob.say("e")
        await bob.finish()
        await alice.expect(r"bob went offline")
        await alice.say("t bob")
        await alice.expect(r"bob is offline")
        await alice.say("Written while you were away: sealed, the server cannot read it.")
        await alice.say("/exit")
        await alice.expect(r"left the talk with bob")

        bob = await peer("bob")  # restarted on the same store: his mail waited for him
        await bob.expect(r"alice \(while you were away\): Written while you were away")
        await alice.expect(r"\* delivered to bob: 1 message$")  # bob's signed receipt
        await alice.say("t bob")
        await bob.expect(r"alice invites you")
        await bob.say("y")
        await bob.expect(r"talking with alice")  # after the history, shown as it opens
        await alice.expect(r"talking with bob")
        await bob.say("/back")
        await bob.expect(r"^commands \(the talk stays open")
        await bob.say("h alice")
        await bob.expect(r"history with alice: 3 messages")
        await bob.expect(r"end of history")

        await alice.say("/exit")
        await alice.expect(r"left the talk with bob")
        await bob.expect(r"alice left the conversation")
        await alice.say("e")
        await alice.expect(r"^bye$")
        await bob.expect(r"alice went offline")
        await bob.say("e")
        await bob.expect(r"^bye$")
        for person in (alice, bob):
            if await person.finish() != 0:
                raise AssertionError(person._missing("exit status 0", "it failed"))
        await server.stop()
    finally:
        for process in processes:
            await process.stop()


def main() -> int:
    """``python -m p2pchat.frontends.demo``: run the scripted chat, print its transcript."""
    transcript: list[str] = []
    with tempfile.TemporaryDirectory(prefix="p2pchat-demo-") as workdir:
        try:
            asyncio.run(run_demo(Path(workdir), transcript))
        except AssertionError as exc:
            print("\n".join(transcript))
            print(f"\ndemo failed: {exc}", file=sys.stderr)
            return 1
    print("p2pchat demo: a server and two peers, driven through their consoles")
    print("('<' is what was typed into a process, '>' what it printed)\n")
    print("\n".join(transcript))
    print("\ndemo finished: every step above happened as expected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
