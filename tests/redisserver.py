"""A real ``redis-server`` for the tests: started on a free port of 127.0.0.1 in a
directory of its own, with a password, no persistence unless asked, stopped by its PID.

``RedisServer`` runs it as a subprocess. ``start()`` / ``stop()`` are plain calls for the
session-wide fixture; ``astart()`` / ``kill()`` are for a test that kills it and starts it
again on the same port (with asyncio's subprocesses, so nothing blocks the event loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def redis_available() -> bool:
    return os.access(REDIS_SERVER, os.X_OK)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """One redis-server process bound to 127.0.0.1 only."""

    def __init__(
        self,
        directory: Path,
        *,
        port: int | None = None,
        persistent: bool = False,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.persistent = persistent
        self.tls = tls
        self.password = secrets.token_hex(12)
        self.pid: int | None = None
        self._popen: subprocess.Popen[bytes] | None = None
        self._process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        query = f"?ssl_ca_certs={self.tls[0]}" if self.tls else ""
        return f"{scheme}://:{self.password}@127.0.0.1:{self.port}/0{query}"

    def _config(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        lines = [
            "bind 127.0.0.1",
            "protected-mode yes",
            f"dir {self.directory}",
            f"requirepass {self.password}",
            f"logfile {self.directory / 'redis.log'}",
            'save ""',
            "daemonize no",
            "appendonly yes" if self.persistent else "appendonly no",
            "appendfsync always",
        ]
        if self.tls:
            cert, key = self.tls
            lines += [
                "port 0",
                f"tls-port {self.port}",
                f"tls-cert-file {cert}",
                f"tls-key-file {key}",
                f"tls-ca-cert-file {cert}",
                "tls-auth-clients no",
            ]
        else:
            lines.append(f"port {self.port}")
        path = self.directory / "redis.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def _answers(self) -> bool:
        """True once it accepts a TCP connection on its port."""
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
            return True
        return False

    def _log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.directory / "redis.log").read_text()[-2000:]
        return ""

    async def _answers_now(self) -> bool:
        return await answers(self.port)

    # Plain calls, for the session fixture.

    def start(self, timeout: float = 10.0) -> None:
        self._popen = subprocess.Popen(
            [REDIS_SERVER, str(self._config())],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.pid = self._popen.pid
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self._popen.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start:\n{self._log()}")
            time.sleep(0.02)  # a separate process starting up: nothing to wait on but it

    def stop(self) -> None:
        if self._popen is None:
            return
        if self._popen.poll() is None:
            os.kill(self._popen.pid, signal.SIGTERM)
            try:
                self._popen.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self._popen.pid, signal.SIGKILL)
                self._popen.wait()
        self._popen = None

    # Asyncio calls, for a test that kills it and starts it again.

    async def astart(self, timeout: float = 10.0) -> None:
        self._process = await asyncio.create_subprocess_exec(
            REDIS_SERVER,
            str(self._config()),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        self.pid = self._process.pid
        deadline = time.monotonic() + timeout
        while not await self._answers_now():
            if self._process.returncode is not None or time.monotonic() > deadline:
                await self.kill()
                raise RuntimeError(f"redis-server did not start:\n{self._log()}")
            await asyncio.sleep(0.02)

    async def kill(self, signum: int = signal.SIGKILL) -> None:
        """Stop it by its PID (SIGKILL by default: a crash) and wait until it is gone."""
        if self._process is None:
            return
        if self._process.returncode is None:
            os.kill(self._process.pid, signum)
            await self._process.wait()
        self._process = None


async def answers(port: int) -> bool:
    """True once something listens on 127.0.0.1:``port``."""
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
