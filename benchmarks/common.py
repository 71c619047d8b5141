"""What the benchmark workers share: starting processes, reading their JSON answers, RSS.

Every worker is a separate process (``python -m benchmarks.NAME ...``) that prints one
JSON object per line: ``{"ready": ...}`` when it can be measured, ``{"result": ...}`` at
the end. Everything listens on 127.0.0.1 and every process is stopped by the runner.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import resource
import signal
import socket
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LOGS = Path(tempfile.gettempdir()) / "p2pchat-bench-logs"


def _log(name: str) -> int:
    """Where a worker's stderr goes (a file: a full pipe would stop the worker)."""
    LOGS.mkdir(exist_ok=True)
    return os.open(LOGS / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)


def raise_fd_limit(wanted: int = 65536) -> int:
    """Raise this process's limit on open files to ``wanted`` if it may (root), else the
    soft limit to the hard one; return the limit now. Children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), max(hard, wanted)))
    except (ValueError, OSError):
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)  # Linux


async def connect_from(
    host: str, port: int, source: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """``asyncio.open_connection`` from the address ``source`` (``127.0.0.2``, ...).

    The source port is left to ``connect()`` (``IP_BIND_ADDRESS_NO_PORT``), so that one
    source address has its ~28,000 ephemeral ports for each destination, not in all.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((source, 0))
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock)


def ephemeral_ports() -> int:
    """How many source ports one address has for one destination (Linux: the range in
    ``ip_local_port_range``)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    except (OSError, ValueError):
        return 28_000
    return int(high) - int(low) + 1


def loopback_sources(count: int) -> list[str] | str:
    """``count`` loopback addresses to connect from (127.0.0.2, 127.0.0.3, ...), or why
    they cannot be had here."""
    sources = [f"127.0.0.{2 + n}" for n in range(count)]
    for source in sources:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((source, 0))
            except OSError as exc:
                return f"cannot connect from {source}: {exc}"
    return sources


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` in KiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """User and system time ``pid`` has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def median(values: list[float]) -> float:
    return statistics.median(values)


def say(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


class Worker:
    """A benchmark process: started, read line by line, stopped by its PID."""

    def __init__(self, process: asyncio.subprocess.Process, name: str) -> None:
        self.process = process
        self.name = name

    @classmethod
    async def start(cls, module: str, *args: str, env: dict[str, str] | None = None) -> Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            f"benchmarks.{module}",
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=_log(module),
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )
        return cls(process, module)

    async def tell(self, line: str) -> None:
        """Send the worker a command line."""
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()

    @property
    def pid(self) -> int:
        return self.process.pid

    async def read(self, timeout: float = 120.0) -> dict[str, Any]:
        """The next JSON line; RuntimeError (with its stderr) if the process ended."""
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"{self.name} ended early: see {LOGS}/{self.name}.log")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


_servers = itertools.count()

PROFILE = "P2PCHAT_BENCH_PROFILE"
"""If set (``--profile DIR``), each server runs under cProfile, its profile written to
that folder when it stops: where a row's time goes on the server, measured."""


async def start_server(*args: str) -> tuple[Worker, int]:
    """A real ``p2pchat-server`` process; returns it and its port."""
    run = "sys.exit(c.server_main())"
    if folder := os.environ.get(PROFILE):
        path = Path(folder) / f"server-{os.getpid()}-{next(_servers)}.prof"
        run = f"import cProfile; cProfile.run('c.server_main()', {str(path)!r})"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        f"import sys, p2pchat.frontends.cli as c; {run}",
        "--port",
        "0",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=_log("server"),
        cwd=ROOT,
    )
    worker = Worker(process, "p2pchat-server")
    assert process.stdout is not None
    line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
    if "listening on" not in line:
        raise RuntimeError(f"the server did not start: {line!r}")
    return worker, int(line.rsplit(":", 1)[1].split()[0])
