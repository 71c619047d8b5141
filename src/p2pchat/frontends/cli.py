"""The two commands, ``p2pchat-server`` and ``p2pchat-peer``: argument parsing, logging,
signals, and nothing else (the console is ``console.py``). Everything they do goes through
the public library API.

Both entry points take ``argv`` so that tests can call them directly; both exit 0 on a
clean stop (``e``, end of input, Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import html
import ipaddress
import logging
import os
import signal
import ssl
import sys
import webbrowser
from collections.abc import Awaitable, Sequence
from pathlib import Path

import platformdirs

from .. import (
    DEFAULT_PORT,
    AuthenticationError,
    Identity,
    Mailbox,
    MemoryMailbox,
    MemoryMessageStore,
    MemoryUserStore,
    MessageStore,
    P2PChatError,
    Peer,
    SignallingServer,
    SqliteMailbox,
    SqliteMessageStore,
    SqliteUserStore,
    UserStore,
    __version__,
    check_name,
    tls13_only,
)
from .console import PeerConsole
from .screens import PipeScreen, Screen, TerminalScreen
from .settings import add_server_settings, server_settings
from .terminal import visible

__all__ = ["peer_main", "server_main"]

# Arguments.


def _address(text: str) -> tuple[str, int]:
    """Parse HOST:PORT, [IPV6]:PORT or :PORT (an IPv6 address goes in brackets)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    if host.startswith("[") or host.endswith("]"):
        host = _bracketed(host, text)
    elif ":" in host:
        raise argparse.ArgumentTypeError(
            f"write an IPv6 address in brackets: [{host}]:{port}, got {text!r}"
        )
    return host or "127.0.0.1", int(port)


def _bracketed(host: str, text: str) -> str:
    """The IPv6 address inside ``[...]``."""
    inner = host[1:-1] if host.startswith("[") and host.endswith("]") else ""
    try:
        ipaddress.IPv6Address(inner.partition("%")[0])  # a zone (fe80::1%eth0) is kept
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected [IPV6]:PORT, got {text!r}") from None
    return inner


def _host(text: str) -> str:
    """A host to listen on: a name, an IPv4 address, or an IPv6 one (brackets optional)."""
    return _bracketed(text, text) if text.startswith("[") else text


def _port(text: str) -> int:
    """A TCP port, 0 to 65535 (0: a free one)."""
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {text!r}")
    return int(text)


def _server(text: str) -> tuple[str, int]:
    """HOST[:PORT]: a server; without a port, the default one."""
    if text.isdigit():  # a port alone would be taken for an address (6000 is 0.0.23.112)
        raise argparse.ArgumentTypeError(f"expected HOST[:PORT] or :PORT, got {text!r}")
    if ":" not in text or (text.startswith("[") and text.endswith("]")):
        return _host(text), DEFAULT_PORT
    return _address(text)


def _addresses(text: str) -> list[tuple[str, int]]:
    """Parse HOST[:PORT][,HOST[:PORT]...]."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"expected HOST[:PORT][,HOST[:PORT]...], got {text!r}")
    return [_server(part) for part in parts]


def _data_dir() -> Path:
    return Path(platformdirs.user_data_dir("p2pchat", appauthor=False))


def _add_common(parser: argparse.ArgumentParser) -> None:
    storage = parser.add_mutually_exclusive_group()
    storage.add_argument("--db", type=Path, metavar="PATH", help="SQLite file to keep data in")
    storage.add_argument("--memory", action="store_true", help="keep nothing after exit")
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="log to stderr from this level on (default: warning)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_TerminalFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])


class _TerminalFormatter(logging.Formatter):
    """Log lines bound for a terminal: what others sent that a line quotes (a server's
    reason, a peer's name) shows its control characters, as the console does; a
    traceback keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return visible(super().formatMessage(record))


def _run(main: Awaitable[int]) -> int:
    """Run ``main`` until it ends or a signal stops it, on uvloop when it is installed
    (``pip install p2pchat[speed]``; ``P2PCHAT_LOOP=asyncio`` for the standard loop)."""
    loop_factory = None
    if os.environ.get("P2PCHAT_LOOP", "") != "asyncio":
        with contextlib.suppress(ImportError):
            import uvloop

            loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(_run_until_signalled(main))


async def _run_until_signalled(main: Awaitable[int]) -> int:
    """Run ``main``; SIGINT or SIGTERM cancel it so that it can close cleanly."""
    task = asyncio.ensure_future(main)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        return 0


# p2pchat-server.


def server_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="p2pchat-server",
        usage="%(prog)s [OPTION ...]  (--help lists them)",
        description="The p2pchat signalling server: presence and invitations, never chats.",
    )
    parser.add_argument(
        "--host",
        type=_host,
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; 0.0.0.0 or :: for every interface, "
        "IPv4 and IPv6)",
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help=f"port to listen on (default {DEFAULT_PORT}; 0 picks a free one)",
    )
    parser.add_argument(
        "--tls-cert", type=Path, metavar="PEM", help="serve over TLS with this certificate"
    )
    parser.add_argument(
        "--tls-key", type=Path, metavar="PEM", help="the key of --tls-cert, if in another file"
    )
    cluster = parser.add_argument_group(
        "several nodes", "run as one of several servers sharing one Redis"
    )
    cluster.add_argument(
        "--redis",
        metavar="URL",
        default=os.environ.get("P2PCHAT_REDIS"),
        help="keep users, mail, invitations and presence in this Redis: redis://[:PASSWORD@]"
        "HOST:PORT/DB, rediss://... (TLS) or unix://PATH ($P2PCHAT_REDIS; prefer the "
        "variable: a password in argv is visible to other users)",
    )
    cluster.add_argument(
        "--redis-prefix",
        metavar="PREFIX",
        default=os.environ.get("P2PCHAT_REDIS_PREFIX", "p2pchat"),
        help="the prefix of every key in Redis (default p2pchat; $P2PCHAT_REDIS_PREFIX)",
    )
    cluster.add_argument(
        "--node-id",
        metavar="ID",
        default=os.environ.get("P2PCHAT_NODE_ID"),
        help="this node's name in Redis, logs and metrics (default random; $P2PCHAT_NODE_ID)",
    )
    cluster.add_argument(
        "--advertise",
        type=_address,
        metavar="HOST:PORT",
        default=_env_address("P2PCHAT_ADVERTISE"),
        help="where peers reach this node, named in relay tickets (default with --redis: "
        "the address listened on; required with a wildcard --host; $P2PCHAT_ADVERTISE)",
    )
    parser.add_argument(
        "--metrics",
        type=_address,
        metavar="HOST:PORT",
        default=_env_address("P2PCHAT_METRICS"),
        help="serve Prometheus metrics (/metrics) and /healthz there ($P2PCHAT_METRICS)",
    )
    _add_common(parser)
    add_server_settings(parser)
    args = parser.parse_args(argv)
    if args.tls_key and not args.tls_cert:
        parser.error("--tls-key goes with --tls-cert")
    if args.redis and (args.db or args.memory):
        parser.error("--redis keeps users and mail in Redis: no --db or --memory with it")
    _setup_logging(args.log_level)
    tls: ssl.SSLContext | None = None
    if args.tls_cert:
        tls = tls13_only(ssl.create_default_context(ssl.Purpose.CLIENT_AUTH))
        try:
            tls.load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as exc:
            print(f"p2pchat-server: cannot load the TLS certificate: {exc}", file=sys.stderr)
            return 1
    store: UserStore | None = None
    mailbox: Mailbox | None = None
    if args.redis:
        pass  # the server makes the Redis stores
    elif args.memory:
        store, mailbox = MemoryUserStore(), MemoryMailbox()
    else:
        path = args.db or _data_dir() / "server.sqlite3"
        store, mailbox = SqliteUserStore(path), SqliteMailbox(SqliteMailbox.beside(path))
    try:
        server = SignallingServer(
            host=args.host,
            port=args.port,
            store=store,
            mailbox=mailbox,
            ssl=tls,
            redis=args.redis,
            redis_prefix=args.redis_prefix,
            node_id=args.node_id,
            advertise=args.advertise,
            metrics=args.metrics,
            settings=server_settings(args),
        )
    except (ValueError, P2PChatError) as exc:  # settings that cannot work together
        print(f"p2pchat-server: {exc}", file=sys.stderr)
        return 1

    async def serve() -> int:
        try:
            await server.start()
        except (OSError, P2PChatError) as exc:
            print(f"p2pchat-server: cannot start: {exc}", file=sys.stderr)
            return 1
        _collect_seldom()
        where = ", ".join(server.addresses_text())
        print(f"p2pchat-server listening on {where}{' (TLS)' if tls else ''}", flush=True)
        if args.redis:
            print(f"node {server.node_id} of the cluster in {server.redis!r}", flush=True)
        if args.metrics:
            print(f"metrics on http://{args.metrics[0]}:{server.metrics_port}/metrics", flush=True)
        await server.serve_forever()
        return 0

    return _run(serve())


def _collect_seldom() -> None:
    """Tune the garbage collector for a server: it holds a few dozen long-lived objects
    per logged-in peer, which the default (a young collection every 700 new objects, and
    older ones going through all that survived) visited again and again: 100 us of a
    login's 700 us of CPU at 15,000 peers, 10 us with young collections every 50,000.
    What the server made to start is frozen out of every collection. (The process's
    own setting: the command's, not the library's.)"""
    gc.freeze()
    gc.set_threshold(50_000, 20, 10)


def peer_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="p2pchat-peer",
        description="Chat with other p2pchat users over direct, encrypted connections.",
        epilog=PeerConsole.HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # the epilog's table as written
    )
    parser.add_argument("name", metavar="NAME", help="your user name")
    parser.add_argument(
        "--server",
        type=_addresses,
        default=[("127.0.0.1", DEFAULT_PORT)],
        metavar="HOST[:PORT][,...]",
        help=f"signalling server (default 127.0.0.1:{DEFAULT_PORT}; PORT defaults to "
        f"{DEFAULT_PORT}); several: the nodes of one deployment, tried in turn",
    )
    parser.add_argument(
        "--listen",
        type=_address,
        default=("127.0.0.1", 0),
        metavar="HOST:PORT",
        help="where other peers dial you (default 127.0.0.1 on a free port; "
        "0.0.0.0:PORT or [::]:PORT for other machines, on IPv4 and IPv6)",
    )
    parser.add_argument(
        "--no-traversal",
        action="store_true",
        help="take no part in connection reversal or hole punching (what cannot be "
        "dialled goes through the server's relay)",
    )
    parser.add_argument(
        "--identity",
        type=Path,
        metavar="PATH",
        help="your key file, made on first use (default: identity-NAME.key in the data "
        "directory); the server binds NAME to it",
    )
    parser.add_argument(
        "--web",
        type=_web_address,
        metavar="[HOST:]PORT",
        help="serve this peer's web page instead of the console (HOST defaults to "
        "127.0.0.1; PORT 0 picks a free one); its address, with its secret, is printed",
    )
    parser.add_argument(
        "--open",
        action="store_true",
        help="open the web page in a browser (without --web: serves it on 127.0.0.1, on a "
        "free port)",
    )
    server_tls = parser.add_mutually_exclusive_group()
    server_tls.add_argument(
        "--tls", action="store_true", help="reach the server over TLS, checked with system CAs"
    )
    server_tls.add_argument(
        "--server-cert",
        type=Path,
        metavar="PEM",
        help="reach the server over TLS, trusting only this certificate",
    )
    _add_common(parser)
    args = parser.parse_args(argv)
    if args.open and args.web is None:
        args.web = ("127.0.0.1", 0)  # the page to open: what --open asks for is clear
    _setup_logging(args.log_level)
    try:
        check_name(args.name)  # before the name makes file names
        key_file = args.identity or _data_dir() / f"identity-{args.name}.key"
        identity = Identity.load_or_create(key_file)
        server_ssl = (
            tls13_only(ssl.create_default_context(cafile=args.server_cert))
            if args.tls or args.server_cert
            else None
        )
    except (P2PChatError, OSError, ssl.SSLError) as exc:
        print(f"p2pchat-peer: {exc}", file=sys.stderr)
        return 1
    store: MessageStore
    if args.memory:
        store = MemoryMessageStore()
    else:
        store = SqliteMessageStore(args.db or _data_dir() / f"peer-{args.name}.sqlite3")
    peer = Peer(
        args.name,
        server=args.server,
        listen=args.listen,
        store=store,
        identity=identity,
        server_ssl=server_ssl,
        traversal=not args.no_traversal,
    )
    screen: Screen = TerminalScreen() if sys.stdin.isatty() else PipeScreen()

    async def chat() -> int:
        try:
            await peer.start()
        except (OSError, P2PChatError) as exc:
            mine = ""
            if isinstance(exc, AuthenticationError):
                mine = f" (your key: {key_file}; --identity PATH names another)"
            print(f"p2pchat-peer: cannot log in as {args.name}: {exc}{mine}", file=sys.stderr)
            return 1
        try:
            if args.web is not None:
                return await _serve_web(peer, *args.web, open_browser=args.open)
            await PeerConsole(peer, screen).run()
        finally:
            await peer.close()
        return 0

    try:
        status = _run(chat())
    finally:
        if isinstance(screen, TerminalScreen):
            screen.restore()
    if isinstance(screen, TerminalScreen):
        print()
    return status


def _env_address(variable: str) -> tuple[str, int] | None:
    """HOST:PORT from the environment, if set."""
    text = os.environ.get(variable)
    if not text:
        return None
    try:
        return _address(text)
    except argparse.ArgumentTypeError as exc:
        raise SystemExit(f"p2pchat-server: ${variable}: {exc}") from None


def _web_address(text: str) -> tuple[str, int]:
    """Parse [HOST:]PORT."""
    if ":" in text:
        return _address(text)
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected [HOST:]PORT, got {text!r}")
    return "127.0.0.1", int(text)


async def _serve_web(peer: Peer, host: str, port: int, *, open_browser: bool) -> int:
    """Run the peer with its web page until Ctrl-C / SIGTERM."""
    from .web import WebUI  # only this mode needs aiohttp

    ui = WebUI(peer, host, port)
    try:
        await ui.start()
    except OSError as exc:
        print(f"p2pchat-peer: cannot serve the web page: {exc}", file=sys.stderr)
        return 1
    try:
        print(f"web page: {ui.url}", flush=True)
        if open_browser:
            try:
                webbrowser.open(_launcher(ui.url, peer.name).as_uri())
            except (OSError, ValueError) as exc:  # $BROWSER names no command that runs
                print(f"p2pchat-peer: cannot open a browser ({exc}): open the page above")
        await asyncio.Event().wait()  # until a signal cancels us
    finally:
        if open_browser:
            with contextlib.suppress(OSError):
                _launcher_path(peer.name).unlink()
        await ui.close()
    return 0


def _launcher_path(name: str) -> Path:
    return _data_dir() / f"web-{name}.html"


def _launcher(url: str, name: str) -> Path:
    """A private (0600) page that sends the browser on to ``url``, to open instead of it:
    a browser's command line is there for every local user to read (``ps``), so it names
    this file, never the page's token."""
    path = _launcher_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # then made anew, ours alone (O_EXCL: never through a planted link)
    target = html.escape(url, quote=True)
    page = (
        f'<!doctype html><html><head><meta charset="utf-8"><title>p2pchat</title>'
        f'<meta http-equiv="refresh" content="0;url={target}"></head>'
        f'<body><a href="{target}">Open the p2pchat page</a></body></html>\n'
    )
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
        file.write(page)
    return path


if __name__ == "__main__":  # pragma: no cover
    sys.exit(peer_main())
