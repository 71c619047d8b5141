"""The console of ``p2pchat-peer``: commands typed, news shown, several talks at once.

``PeerConsole`` drives a started ``Peer`` through the public API only. A ``Screen`` is where
it reads and writes: a terminal (readline, news printed above the line being typed) or
pipes (no prompt, one line per event, so that the command can be scripted).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aioconsole

from .. import (
    Conversation,
    Invitation,
    KeyChanged,
    Message,
    P2PChatError,
    Peer,
    UserOffline,
    fingerprint,
    format_address,
    shown_text,
)
from .terminal import message_lines, visible
from .transfers import HELP as FILE_HELP
from .transfers import FileCommands

__all__ = ["PeerConsole", "PipeScreen", "Screen", "TerminalScreen"]

HISTORY_SHOWN = 20
"""How many past messages are shown when a talk starts."""


def _route(chat: Conversation) -> str:
    """``bob (direct, punched, from 198.18.0.3:4001)``."""
    where = f", from {format_address(*chat.remote_address)}" if chat.remote_address else ""
    return f"{chat.peer} ({chat.route}, {chat.via}{where})"


class Screen:
    """Where the console reads lines and shows news."""

    prompt = ""

    async def read_line(self) -> str | None:
        """The next line typed, or None at the end of input."""
        raise NotImplementedError

    async def show(self, text: str) -> None:
        raise NotImplementedError

    async def show_progress(self, text: str) -> None:
        """A progress line: where the screen can, it replaces the one shown before."""
        await self.show(text)


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
        self._progress_last = False  # the last line shown is a progress line
        self._mode = _terminal_mode()  # as found, for restore()

    def restore(self) -> None:
        """Put the terminal back in the mode it was found in. Ctrl-C ends the console
        while readline, in its thread, holds the terminal with echo and line editing off;
        nothing else would turn them on again for the next program."""
        if self._mode is not None:
            import termios  # found it: a POSIX terminal

            with contextlib.suppress(OSError, termios.error):
                termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self._mode)

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
                self._progress_last = False  # the line typed came after it

            def deliver() -> None:
                if not answer.done():
                    answer.set_result(line)

            with contextlib.suppress(RuntimeError):  # the loop may be gone at exit
                loop.call_soon_threadsafe(deliver)

        threading.Thread(target=read, name="p2pchat-input", daemon=True).start()
        return await answer

    async def show(self, text: str) -> None:
        self._write(text, over="")
        self._progress_last = False

    async def show_progress(self, text: str) -> None:
        """Redraw the progress line in place if it is the last line shown."""
        self._write(text, over="\x1b[1A\r\x1b[2K" if self._progress_last else "")
        self._progress_last = True

    def _write(self, text: str, *, over: str) -> None:
        """Write ``text`` as a line, after ``over`` (to go back over the last one)."""
        if not self._reading:
            sys.stdout.write(f"{over}{text}\n")
        else:  # clear the line being typed, print above it, then draw it again
            typed = self._readline.get_line_buffer() if self._readline is not None else ""
            sys.stdout.write(f"\r\x1b[2K{over}{text}\n{self.prompt}{typed}")
        sys.stdout.flush()


def _terminal_mode() -> list[Any] | None:
    """The mode of the terminal on standard input, if it is one (and POSIX)."""
    try:
        import termios
    except ImportError:
        return None
    try:
        return termios.tcgetattr(sys.stdin.fileno())
    except (OSError, ValueError, termios.error):
        return None


class PeerConsole:
    """The ``p2pchat-peer`` commands on top of a started Peer."""

    HELP = (
        "commands:\n"
        "  ls          who is online\n"
        "  t NAME      talk to NAME (or write to them, if they are away)\n"
        "  y [NAME]    accept an invitation\n"
        "  n [NAME]    refuse an invitation\n"
        "  h NAME      history with NAME\n"
        "  whois NAME  NAME's key fingerprint\n"
        + FILE_HELP
        + "  d           debug: addresses, server, conversations\n"
        "  e           exit\n"
        "in a talk every line is sent; /exit leaves it, /back returns to commands with the\n"
        "talk kept open, /CMD runs a command (e.g. /y, /ls)"
    )

    def __init__(
        self,
        peer: Peer,
        screen: Screen,
        *,
        invite_timeout: float = 60.0,
        downloads: Path | None = None,
    ) -> None:
        self.peer = peer
        self.screen = screen
        self.invite_timeout = invite_timeout
        self.files = FileCommands(
            peer,
            self.show,
            lambda line: screen.show_progress(visible(line)),  # made safe as show() does
            redraws=isinstance(screen, TerminalScreen),
            downloads=downloads,
        )
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
            **self.files.commands(),
        }

    async def run(self) -> None:
        peer = self.peer
        peer.on_presence = self._presence
        peer.on_invitation_cancelled = self._invitation_cancelled
        peer.on_state = self._state
        peer.on_shipped = self._shipped
        peer.on_route = lambda chat: self._show_soon(f"* the talk is direct now: {_route(chat)}")
        self._since = time.time()
        await self.show(f"logged in as {peer.name}, fingerprint {peer.fingerprint}; ? for help")
        watcher = asyncio.gather(
            self._watch_invitations(), self._watch_mail(), self.files.watch_offers()
        )
        try:
            while (line := await self.screen.read_line()) is not None:
                if not await self.handle(line.strip()):
                    break
        finally:
            watcher.cancel()
            for task in self._readers.values():
                task.cancel()
            await asyncio.gather(watcher, *self._readers.values(), return_exceptions=True)
            await self.files.close()

    async def show(self, *lines: str) -> None:
        """Show each of ``lines`` as one line: what others wrote in them (names, bodies,
        reasons) can reach the terminal only with its control characters made visible."""
        await self.screen.show("\n".join(visible(line) for line in lines))

    def _set_focus(self, user: str | None) -> None:
        self.focus = user
        if isinstance(self.screen, TerminalScreen):
            self.screen.prompt = f"[{user}] > " if user else "> "

    async def handle(self, line: str) -> bool:
        """Act on one line; False when the console should stop."""
        if not line:
            return True
        try:
            if self.focus is not None and not line.startswith("/"):
                await self.say(self.focus, line)
                return True
            name, _, argument = line.removeprefix("/").partition(" ")
            command = self._commands.get(name.lower())
            if command is None:
                await self.show(f"unknown command {name!r}; type ? for help")
                return True
            return await command(argument.strip())
        except P2PChatError as exc:  # MessageTooLarge too: say so and go on
            await self.show(f"error: {exc}")
            return True

    # Talking.

    async def say(self, user: str, body: str) -> None:
        """Send to ``user`` now, or keep it for them if no conversation is open."""
        await self.peer.send(user, body)

    async def _show_history(self, user: str, history: list[Message]) -> None:
        await self.show(f"--- history with {user}: {len(history)} messages ---")
        for message in history:
            await self.show(*self._format(message, history=True))
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
            await self.show(*self._format(message))
        self._readers.pop(chat, None)
        if chat.close_reason in ("closed", "logging out"):
            return  # we left: said already
        if self.focus == chat.peer:
            self._set_focus(None)
        await self.show(
            f"{chat.peer} left the conversation ({chat.close_reason}); "
            f"t {chat.peer} to write to them anyway"
        )

    def _format(self, message: Message, *, history: bool = False) -> list[str]:
        """A message as the lines that show it (a body's further lines under a bar)."""
        sender, body = visible(message.sender), shown_text(message.body)  # offers: a line
        if not history:
            return message_lines(f"{sender}: ", body)
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(message.sent_at))
        pending = "" if message.shipped else "  (not delivered yet)"
        return message_lines(f"[{when}] {sender}: ", body, pending)

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
                f"{user} is offline: what you write now is sealed to them and left on the "
                "server, delivered when they log in (/exit to stop)"
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
            f"server: {format_address(*peer.server_address)} ({peer.state})",
            f"listening: {', '.join(format_address(h, p) for h, p in peer.listening)}",
            f"seen by the server at: {format_address(*seen) if (seen := peer.observed) else '-'}",
            f"store: {where}",
            f"talk: {self.focus or '-'}",
            "conversations: "
            + (", ".join(_route(chat) for chat in peer.conversations.values()) or "-"),
            "pending invitations: "
            + (", ".join(i.sender for i in peer.pending_invitations()) or "-"),
        ]
        await self.show(*lines)
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
        await self.show(*self.HELP.split("\n"))
        return True

    # News.

    async def _watch_invitations(self) -> None:
        while True:
            invitation = await self.peer.next_invitation()
            await self.show(f"{invitation.sender} invites you to talk: y to accept, n to refuse")

    async def _watch_mail(self) -> None:
        """Messages that came through the mailbox, outside any talk."""
        while True:
            message = await self.peer.next_message()
            when = "while you were away" if message.sent_at < self._since else "mail"
            await self.show(*message_lines(f"{visible(message.sender)} ({when}): ", message.body))

    def _presence(self, user: str, online: bool) -> None:
        self._show_soon(f"* {user} is online" if online else f"* {user} went offline")

    def _shipped(self, contact: str, ids: list[str]) -> None:
        """Messages acknowledged outside a talk: mail left for someone away has reached them
        (in a talk, every message is acknowledged as it goes: nothing to say)."""
        if contact not in self.peer.conversations:
            plural = "" if len(ids) == 1 else "s"
            self._show_soon(f"* delivered to {contact}: {len(ids)} message{plural}")

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
