"""The README's examples run as written: each is taken from README.md itself, not copied."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import p2pchat

from .conftest import Launch, PeerFactory, eventually

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"


def python_examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


def test_every_python_example_is_run_here() -> None:
    # The first runs on its own, the second is the bot: a new example needs a test here.
    assert len(python_examples()) == 2


def test_the_library_example_runs_as_written(tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(python_examples()[0], encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "online: ['alice', 'bob']" in result.stdout
    assert "bob: you said: hello, bob" in result.stdout
    assert "alice -> bob: hello, bob" in result.stdout


async def test_the_bot_outlives_an_invitation_whose_inviter_gave_up(
    tmp_path: Path,
    server: p2pchat.SignallingServer,
    make_peer: PeerFactory,
    launch: Launch,
) -> None:
    bot_source = python_examples()[1]
    assert '("127.0.0.1", 5535)' in bot_source  # the default server, here the test's own
    script = tmp_path / "bot.py"
    script.write_text(
        bot_source.replace('("127.0.0.1", 5535)', f'("127.0.0.1", {server.port})'),
        encoding="utf-8",
    )
    # In the test's folder, where it keeps its store and key (exec: the same process).
    in_folder = 'cd "$1" && exec "$2" bot.py'
    bot = await launch("bot", ["/bin/sh", "-c", in_folder, "sh", str(tmp_path), sys.executable])
    alice = await make_peer("alice")

    async def bot_online() -> bool:
        return "echo-bot" in await alice.online()

    await eventually(bot_online, timeout=20)

    # The bot is stopped while alice's invitation comes and goes: when it runs again, the
    # invitation it takes is gone (the README's first bot died of this, silently).
    os.kill(bot.process.pid, signal.SIGSTOP)
    try:
        with pytest.raises(p2pchat.InviteTimeout):
            await alice.invite("echo-bot", timeout=0.5)
    finally:
        os.kill(bot.process.pid, signal.SIGCONT)
    await bot.expect(r"invitation from alice: .*gone")

    chat = await alice.invite("echo-bot", timeout=30.0)
    await chat.send("hello, bot")
    assert (await asyncio.wait_for(chat.receive(), 15)).body == "you said: hello, bot"
    await chat.close()
    assert (tmp_path / "echo-bot.key").exists()  # its name stays its own at the next start
    assert bot.process.returncode is None
