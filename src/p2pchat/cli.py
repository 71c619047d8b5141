"""The two commands, ``p2pchat-server`` and ``p2pchat-peer``: argument parsing, logging,
the console, and nothing else. Everything they do goes through the public library API.

Both entry points take ``argv`` so that tests can call them directly; both exit 0 on a
clean stop (``e``, end of input, Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import aioconsole
import platformdirs

from . import (
    DEFAULT_PORT,
    Conversation,
    Identity,
    Invitation,
    KeyChanged,
    MemoryMessageStore,
    MemoryUserStore,
    Message,
    MessageStore,
    P2PChatError,
    Peer,
    SignallingServer,
    SqliteMessageStore,
    SqliteUserStore,
    UserOffline,
    UserStore,
    __version__,
    check_name,
    fingerprint,
)

__all__ = ["peer_main", "server_main"]

HISTORY_SHOWN = 20
"""How many past messages are shown when a talk starts."""


# Arguments.


def _address(text: str) -> tuple[str, int]:
    """Parse HOST:PORT, [IPv6]:PORT or :PORT."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


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
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


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
        description="The p2pchat signalling server: presence and invitations, never chats.",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port to listen on (default {DEFAULT_PORT}; 0 picks a free one)",
    )
    parser.add_argument(
        "--tls-cert", type=Path, metavar="PEM", help="serve over TLS with this certificate"
    )
    parser.add_argument(
        "--tls-key", type=Path, metavar="PEM", help="the key of --tls-cert, if in another file"
    )
    _add_common(parser)
    args = parser.parse_args(argv)
    if args.tls_key and not args.tls_cert:
        parser.error("--tls-key goes with --tls-cert")
    _setup_logging(args.log_level)
    tls: ssl.SSLContext | None = None
    if args.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            tls.load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as exc:
            print(f"p2pchat-server: cannot load the TLS certificate: {exc}", file=sys.stderr)
            return 1
    store: UserStore
    if args.memory:
        store = MemoryUserStore()
    else:
        store = SqliteUserStore(args.db or _data_dir() / "server.sqlite3")
    server = SignallingServer(host=args.host, port=args.port, store=store, ssl=tls)

    async def serve() -> int:
        try:
            await server.start()
        except (OSError, P2PChatError) as exc:
            print(f"p2pchat-server: cannot start: {exc}", file=sys.stderr)
            return 1
        where = ", ".join(server.addresses_text())
        print(f"p2pchat-server listening on {where}{' (TLS)' if tls else ''}", flush=True)
        await server.serve_forever()
        return 0

    return asyncio.run(_run_until_signalled(serve()))


# p2pchat-peer: the console.


class Screen:
    """Where the console reads lines and shows news."""

    prompt = ""

    async def read_line(self) -> str | None:
        """The next line typed, or None at the end of input."""
        raise NotImplementedError

    async def show(self, text: str) -> None:
        raise NotImplementedError


class PipeScreen(Screen):
    """Standard input and output are pipes or files: no prompt, one line per event."""

    async def read_line(self) -> str | None:
        try:
            return str(await aioconsole.ainput(""))
        except EOFError:
            return None

    async def show(self, text: str) -> None:
        await aioconsole.aprint(text)


class TerminalScreen(Screen):
    """A terminal: line editing with readline; news is printed above the line being
    typed, which is then drawn again as it was."""

    def __init__(self) -> None:
        try:
            import readline
        except ImportError:  # no readline on this platform: plain input()
            self._readline = None
        else:
            self._readline = readline
        self.prompt = "> "
        self._reading = False  # an input() is waiting for a line

    async def read_line(self) -> str | None:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[str | None] = loop.create_future()

        def read() -> None:  # a daemon thread: exiting never waits for a pending input()
            try:
                self._reading = True
                line: str | None = input(self.prompt)
            except (EOFError, KeyboardInterrupt):
                line = None
            except Exception as exc:  # stdin closed: report as end of input
                logging.getLogger(__name__).debug("reading the terminal failed: %s", exc)
                line = None
            finally:
                self._reading = False

            def deliver() -> None:
                if not answer.done():
                    answer.set_result(line)

            with contextlib.suppress(RuntimeError):  # the loop may be gone at exit
                loop.call_soon_threadsafe(deliver)

        threading.Thread(target=read, name="p2pchat-input", daemon=True).start()
        return await answer

    async def show(self, text: str) -> None:
        if not self._reading:
            sys.stdout.write(f"{text}\n")
        else:  # clear the line being typed, print above it, then draw it again
            typed = self._readline.get_line_buffer() if self._readline is not None else ""
            sys.stdout.write(f"\r\x1b[2K{text}\n{self.prompt}{typed}")
        sys.stdout.flush()


class PeerConsole:
    """The ``p2pchat-peer`` commands on top of a started Peer."""

    HELP = (
        "commands: ls (who is online) | t NAME (talk to NAME) | y [NAME] (accept) | "
        "n [NAME] (refuse) | h NAME (history) | whois NAME (their key) | d (debug) | "
        "e (exit)\n"
        "in a talk every line is sent; /exit leaves it, /back returns to commands with the "
        "talk kept open, /CMD runs a command (e.g. /y, /ls)"
    )

    def __init__(self, peer: Peer, screen: Screen, *, invite_timeout: float = 60.0) -> None:
        self.peer = peer
        self.screen = screen
        self.invite_timeout = invite_timeout
        self.focus: str | None = None  # the user the current talk is with
        self._readers: dict[Conversation, asyncio.Task[None]] = {}
        self._commands: dict[str, Callable[[str], Awaitable[bool]]] = {
            "ls": self.cmd_list,
            "t": self.cmd_talk,
            "y": self.cmd_accept,
            "n": self.cmd_refuse,
            "h": self.cmd_history,
            "d": self.cmd_debug,
            "whois": self.cmd_whois,
            "e": self.cmd_exit,
            "exit": self.cmd_leave,
            "back": self.cmd_back,
            "help": self.cmd_help,
            "?": self.cmd_help,
        }

    async def run(self) -> None:
        peer = self.peer
        peer.on_presence = self._presence
        peer.on_invitation_cancelled = self._invitation_cancelled
        peer.on_state = self._state
        watcher = asyncio.create_task(self._watch_invitations())
        await self.show(f"logged in as {peer.name}, fingerprint {peer.fingerprint}; ? for help")
        try:
            while (line := await self.screen.read_line()) is not None:
                if not await self.handle(line.strip()):
                    break
        finally:
            watcher.cancel()
            for task in self._readers.values():
                task.cancel()
            await asyncio.gather(watcher, *self._readers.values(), return_exceptions=True)

    async def show(self, text: str) -> None:
        await self.screen.show(text)

    def _set_focus(self, user: str | None) -> None:
        self.focus = user
        if isinstance(self.screen, TerminalScreen):
            self.screen.prompt = f"[{user}] > " if user else "> "

    async def handle(self, line: str) -> bool:
        """Act on one line; False when the console should stop."""
        if not line:
            return True
        if self.focus is not None and not line.startswith("/"):
            await self.say(self.focus, line)
            return True
        name, _, argument = line.removeprefix("/").partition(" ")
        command = self._commands.get(name.lower())
        if command is None:
            await self.show(f"unknown command {name!r}; type ? for help")
            return True
        try:
            return await command(argument.strip())
        except P2PChatError as exc:
            await self.show(f"error: {exc}")
            return True

    # Talking.

    async def say(self, user: str, body: str) -> None:
        """Send to ``user`` now, or keep it for them if no conversation is open."""
        await self.peer.send(user, body)

    async def _show_history(self, user: str, history: list[Message]) -> None:
        await self.show(f"--- history with {user}: {len(history)} messages ---")
        for message in history:
            await self.show(self._format(message, history=True))
        await self.show("--- end of history ---")

    async def _talk(self, user: str, opening: Awaitable[Conversation]) -> None:
        """Open a conversation with ``user`` and make it the current talk.

        The history is read first, so what arrives once it is open is shown exactly once.
        """
        history = await self.peer.history(user, limit=HISTORY_SHOWN)
        chat = await opening
        if history:
            await self._show_history(user, history)
        self._set_focus(chat.peer)
        await self.show(f"talking with {chat.peer} (/exit to leave, /back for commands)")
        self._readers[chat] = asyncio.create_task(self._read_conversation(chat))

    async def _read_conversation(self, chat: Conversation) -> None:
        async for message in chat:
            await self.show(self._format(message))
        self._readers.pop(chat, None)
        if chat.close_reason in ("closed", "logging out"):
            return  # we left: said already
        if self.focus == chat.peer:
            self._set_focus(None)
        await self.show(
            f"{chat.peer} left the conversation ({chat.close_reason}); "
            f"t {chat.peer} to write to them anyway"
        )

    def _format(self, message: Message, *, history: bool = False) -> str:
        if not history:
            return f"{message.sender}: {message.body}"
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(message.sent_at))
        pending = "" if message.shipped else "  (not delivered yet)"
        return f"[{when}] {message.sender}: {message.body}{pending}"

    # Commands. Each returns False to stop the console.

    async def cmd_list(self, _: str) -> bool:
        users = await self.peer.online()
        await self.show("online: " + ", ".join(users))
        return True

    async def cmd_talk(self, user: str) -> bool:
        if not user:
            line = await self._ask("talk to whom? ")
            if not line:
                return True
            user = line.strip()
        if (chat := self.peer.conversations.get(user)) is not None:
            self._set_focus(chat.peer)
            await self.show(f"back to talking with {user}")
            return True
        await self.show(f"inviting {user}...")
        try:
            try:
                await self._talk(user, self.peer.invite(user, timeout=self.invite_timeout))
            except KeyChanged as changed:
                if not await self._trust_new_key(changed):
                    return True
                await self._talk(
                    user,
                    self.peer.invite(user, timeout=self.invite_timeout, trust_new_key=True),
                )
        except UserOffline:
            self._set_focus(user)
            await self.show(
                f"{user} is offline: what you write now is kept and delivered "
                "when you next talk (/exit to stop)"
            )
        return True

    async def _ask(self, prompt: str) -> str | None:
        saved = self.screen.prompt
        self.screen.prompt = prompt
        try:
            if not isinstance(self.screen, TerminalScreen):
                await self.show(prompt.strip())
            return await self.screen.read_line()
        finally:
            self.screen.prompt = saved

    def _pick(self, user: str) -> Invitation | None:
        pending = self.peer.pending_invitations()
        if user:
            pending = [i for i in pending if i.sender == user]
        return pending[-1] if pending else None

    async def cmd_accept(self, user: str) -> bool:
        invitation = self._pick(user)
        if invitation is None:
            await self.show("no pending invitation" + (f" from {user}" if user else ""))
            return True
        try:
            await self._talk(invitation.sender, invitation.accept())
        except KeyChanged as changed:
            if not await self._trust_new_key(changed):
                await invitation.refuse("key changed")
                await self.show(f"refused {invitation.sender}")
                return True
            await self._talk(invitation.sender, invitation.accept(trust_new_key=True))
        return True

    async def _trust_new_key(self, changed: KeyChanged) -> bool:
        """Tell the user a contact's key changed; True only if they type "yes"."""
        await self.show(f"WARNING: {changed}")
        answer = await self._ask(f"trust the new key of {changed.user}? (yes/no) ")
        trusted = (answer or "").strip().lower() == "yes"
        await self.show(f"trusting the new key of {changed.user}" if trusted else "not trusted")
        return trusted

    async def cmd_refuse(self, user: str) -> bool:
        invitation = self._pick(user)
        if invitation is None:
            await self.show("no pending invitation" + (f" from {user}" if user else ""))
            return True
        await invitation.refuse("no thanks")
        await self.show(f"refused {invitation.sender}")
        return True

    async def cmd_history(self, user: str) -> bool:
        if not user:
            await self.show("usage: h NAME")
            return True
        await self._show_history(user, await self.peer.history(user))
        return True

    async def cmd_debug(self, _: str) -> bool:
        peer = self.peer
        store = peer.store
        where = getattr(store, "path", "memory")
        lines = [
            f"name: {peer.name}",
            f"fingerprint: {peer.fingerprint}",
            f"server: {peer.server_address[0]}:{peer.server_address[1]} ({peer.state})",
            f"listening: {', '.join(f'{h}:{p}' for h, p in peer.listening)}",
            f"store: {where}",
            f"talk: {self.focus or '-'}",
            f"conversations: {', '.join(peer.conversations) or '-'}",
            "pending invitations: "
            + (", ".join(i.sender for i in peer.pending_invitations()) or "-"),
        ]
        for line in lines:
            await self.show(line)
        return True

    async def cmd_whois(self, user: str) -> bool:
        if not user:
            await self.show("usage: whois NAME")
            return True
        key = await self.peer.whois(user)
        known = await self.peer.known_key(user)
        if known is None:
            verdict = "not talked with yet: compare it with them"
        elif known == key:
            verdict = "matches the key remembered"
        else:
            verdict = f"DIFFERS from the key remembered, {fingerprint(known)}"
        await self.show(f"{user}: {fingerprint(key)} ({verdict})")
        return True

    async def cmd_exit(self, _: str) -> bool:
        await self.show("bye")
        return False

    async def cmd_leave(self, _: str) -> bool:
        if self.focus is None:
            await self.show("not in a talk (e exits the program)")
            return True
        user = self.focus
        self._set_focus(None)
        if (chat := self.peer.conversations.get(user)) is not None:
            await chat.close()
        await self.show(f"left the talk with {user}")
        return True

    async def cmd_back(self, _: str) -> bool:
        self._set_focus(None)
        await self.show("commands (the talk stays open; t NAME to return)")
        return True

    async def cmd_help(self, _: str) -> bool:
        await self.show(self.HELP)
        return True

    # News.

    async def _watch_invitations(self) -> None:
        while True:
            invitation = await self.peer.next_invitation()
            await self.show(f"{invitation.sender} invites you to talk: y to accept, n to refuse")

    def _presence(self, user: str, online: bool) -> None:
        self._show_soon(f"* {user} is online" if online else f"* {user} went offline")

    def _state(self, state: str) -> None:
        if state == "reconnecting":
            self._show_soon("* lost the server; reconnecting (talks go on meanwhile)")
        elif state == "connected":
            self._show_soon("* connected to the server again")

    def _invitation_cancelled(self, invitation: Invitation) -> None:
        self._show_soon(f"{invitation.sender} withdrew the invitation ({invitation.cancelled})")

    def _show_soon(self, text: str) -> None:
        """Show ``text`` from a callback, which cannot await."""
        task = asyncio.ensure_future(self.show(text))
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)


def peer_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="p2pchat-peer",
        description="Chat with other p2pchat users over direct, encrypted connections.",
        epilog=PeerConsole.HELP,
    )
    parser.add_argument("name", metavar="NAME", help="your user name")
    parser.add_argument(
        "--server",
        type=_address,
        default=("127.0.0.1", DEFAULT_PORT),
        metavar="HOST:PORT",
        help=f"signalling server (default 127.0.0.1:{DEFAULT_PORT})",
    )
    parser.add_argument(
        "--listen",
        type=_address,
        default=("127.0.0.1", 0),
        metavar="HOST:PORT",
        help="where other peers dial you (default 127.0.0.1 on a free port; "
        "0.0.0.0:PORT for other machines)",
    )
    parser.add_argument(
        "--identity",
        type=Path,
        metavar="PATH",
        help="your key file, made on first use (default: identity-NAME.key in the data "
        "directory); the server binds NAME to it",
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
    _setup_logging(args.log_level)
    try:
        check_name(args.name)  # before the name makes file names
        identity = Identity.load_or_create(
            args.identity or _data_dir() / f"identity-{args.name}.key"
        )
        server_ssl = (
            ssl.create_default_context(cafile=args.server_cert)
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
    )
    screen: Screen = TerminalScreen() if sys.stdin.isatty() else PipeScreen()

    async def chat() -> int:
        try:
            await peer.start()
        except (OSError, P2PChatError) as exc:
            print(f"p2pchat-peer: cannot log in as {args.name}: {exc}", file=sys.stderr)
            return 1
        try:
            await PeerConsole(peer, screen).run()
        finally:
            await peer.close()
        return 0

    status = asyncio.run(_run_until_signalled(chat()))
    if isinstance(screen, TerminalScreen):
        print()
    return status


def demo_main() -> int:
    """``python -m p2pchat.demo`` (``make demo``): run the scripted chat, print its transcript."""
    from .demo import run_demo  # the demo drives the two commands as processes

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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(peer_main())
