"""The console of ``p2pchat-peer``: commands typed, news shown, several talks at once.

``PeerConsole`` drives a started ``Peer`` through the public API only. A ``Screen``
(screens.py) is where it reads and writes: a terminal or pipes. Its groups' commands and
news are ``ConsoleGroups``' (consolegroups.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from .. import (
    Conversation,
    Group,
    Invitation,
    KeyChanged,
    Message,
    P2PChatError,
    Peer,
    UserOffline,
    fingerprint,
    format_address,
    search_spans,
    shown_text,
)
from .consolegroups import ConsoleGroups
from .screens import PipeScreen, Screen, TerminalScreen
from .terminal import message_lines, visible
from .transfers import HELP as FILE_HELP
from .transfers import FileCommands

__all__ = ["PeerConsole", "PipeScreen", "Screen", "TerminalScreen"]

HISTORY_SHOWN = 20
"""How many past messages are shown when a talk starts."""
LETTERS_CHECKED = 1000
"""A receipt is told as a letter delivered if it names one of the newest this many
one-to-one messages with its sender."""
SEARCH_SHOWN = 20
"""How many matches a search shows, the newest."""
MARK = "**"
"""What a search's matches are put between, in the body shown."""


def _going_on(command: Callable[[str], Awaitable[None]]) -> Callable[[str], Awaitable[bool]]:
    """``command`` as a console command that never stops the console."""

    async def run(argument: str) -> bool:
        await command(argument)
        return True

    return run


def _route(chat: Conversation) -> str:
    """``bob (direct, punched, from 198.18.0.3:4001)``."""
    where = f", from {format_address(*chat.remote_address)}" if chat.remote_address else ""
    return f"{chat.peer} ({chat.route}, {chat.via}{where})"


def _marked(text: str, body: str) -> str:
    """``body`` with what the search ``text`` matched in it between MARKs."""
    parts, done = [], 0
    for start, end in search_spans(text, body):
        parts += [body[done:start], MARK, body[start:end], MARK]
        done = end
    return "".join(parts) + body[done:]


class PeerConsole:
    """The ``p2pchat-peer`` commands on top of a started Peer."""

    HELP = (
        "commands:\n"
        "  ls          who is online\n"
        "  t NAME      talk to NAME (or write to them, if they are away)\n"
        "  y [NAME]    accept an invitation\n"
        "  n [NAME]    refuse an invitation\n"
        "  h NAME      history with NAME\n"
        '  s WORDS     search every talk: hel* a word\'s beginning, "two words" a phrase\n'
        "  whois NAME  NAME's key fingerprint\n"
        "  g NAME MEMBER...  make a group of you and them (you are its admin)\n"
        "  gs          your groups: number, name, members, admin\n"
        "  t #GROUP    talk in a group (#NAME or #NUMBER from gs); h #GROUP its history\n"
        "  add #GROUP NAME, rm #GROUP NAME  add, remove a member (the admin only)\n"
        "  leave #GROUP  leave a group for good\n"
        + FILE_HELP
        + "  d           debug: addresses, server, conversations\n"
        "  e           exit\n"
        "in a talk every line is sent; /exit leaves it, /back returns to commands with the\n"
        "talk kept open, /CMD runs a command (e.g. /y, /ls; in a group /add NAME, /rm NAME,\n"
        "/leave)"
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
        self.groups = ConsoleGroups(peer, self.show, self._set_group_focus)
        self._commands: dict[str, Callable[[str], Awaitable[bool]]] = {
            "ls": self.cmd_list,
            "t": self.cmd_talk,
            "y": self.cmd_accept,
            "n": self.cmd_refuse,
            "h": self.cmd_history,
            "s": self.cmd_search,
            "d": self.cmd_debug,
            "whois": self.cmd_whois,
            "g": _going_on(self.groups.create),
            "gs": _going_on(self.groups.list),
            "add": _going_on(self.groups.add),
            "rm": _going_on(self.groups.remove),
            "leave": _going_on(self.groups.leave),
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
            self._watch_invitations(),
            self._watch_mail(),
            self.files.watch_offers(),
            self.groups.run(),
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
        self.groups.focus = None
        if isinstance(self.screen, TerminalScreen):
            self.screen.prompt = f"[{visible(user)}] > " if user else "> "

    def _set_group_focus(self, group: Group | None) -> None:
        self._set_focus(None)
        self.groups.focus = group
        if isinstance(self.screen, TerminalScreen) and group is not None:
            self.screen.prompt = f"[{visible(self.groups.label(group))}] > "

    async def handle(self, line: str) -> bool:
        """Act on one line; False when the console should stop."""
        if not line:
            return True
        try:
            if self.focus is not None and not line.startswith("/"):
                await self.say(self.focus, line)
                return True
            if self.groups.focus is not None and not line.startswith("/"):
                await self.groups.say(line)
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
        if user.startswith("#"):
            await self.groups.talk(user)
            return True
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
            await self.show("usage: h NAME or h #GROUP")
            return True
        if user.startswith("#"):
            await self.groups.history(user)
            return True
        await self._show_history(user, await self.peer.history(user))
        return True

    async def cmd_search(self, text: str) -> bool:
        if not text:
            await self.show("usage: s WORDS")
            return True
        found = await self.peer.search(text, limit=SEARCH_SHOWN)
        await self.show(f"--- {len(found)} found for {text}, the newest first ---")
        for message in found:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(message.sent_at))
            if message.group is not None:  # in a group: named as its talk is (t #NAME)
                who = f"{message.sender} in {await self.groups.label_of(message.group)}"
                body = message.body  # a group's: text as it came
            else:
                who = f"{message.sender} to {message.recipient}"
                body = shown_text(message.body)  # an offer: the line it is
            # Off the event loop: a body of thousands of strange characters takes ms
            # to read (stores.search.Folding), and the other talks go on meanwhile.
            body = await asyncio.to_thread(_marked, text, body)
            await self.show(*message_lines(f"[{when}] {who}: ", body))
        await self.show("--- end of search ---")
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
            f"talk: {self.focus or (self.groups.label(g) if (g := self.groups.focus) else '-')}",
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
        if (group := self.groups.focus) is not None:
            self._set_group_focus(None)
            await self.show(
                f"left the talk of {self.groups.label(group)}: you are still in the group "
                f"(leave {self.groups.label(group)} to leave it)"
            )
            return True
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
        ids = [i for i in ids if i not in self.groups.ours]  # a group's: no letter
        if ids and contact not in self.peer.conversations:
            task = asyncio.ensure_future(self._delivered(contact, ids))
            task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    async def _delivered(self, contact: str, ids: list[str]) -> None:
        """Tell of the letters among ``ids``: a receipt for a group message (or notice)
        can come before the console knew it as ours, and a group's is no letter."""
        letters = {m.id for m in await self.peer.history(contact, limit=LETTERS_CHECKED)}
        if count := sum(i in letters for i in ids):
            plural = "" if count == 1 else "s"
            await self.show(f"* delivered to {contact}: {count} message{plural}")

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
