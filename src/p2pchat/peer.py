"""A chat peer: logs in to a signalling server and talks to other peers directly.

``Peer`` is the facade an application holds: it starts and stops the parts, keeps the
invitations and the conversations, and offers the public API. The parts, each in its own
module: the server session (``link.py``), getting connected for an invitation
(``reach.py``), one conversation (``conversation.py``) and its delivery rules
(``delivery.py``, no I/O). ``Invitation`` is one received invitation, to accept or refuse.
Its calls about messages, files, groups and other users are parts of ``Peer`` in their own
modules (``peering/peer_messages.py``, ``peer_files.py``, ``peer_groups.py``,
``peer_contacts.py``); here are its making, its start and end, and invitations.

Every peer has an Identity (an Ed25519 key). It proves its name to the server by signing a
challenge; direct connections are TLS 1.3 where each side accepts only the certificate the
server vouched for in that invitation; and each peer remembers its contacts' keys, refusing
a changed one (KeyChanged) unless told to trust it.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Unpack

from .errors import AuthenticationError, ConnectionClosed, IdentityError, KeyChanged
from .peering.conversation import Conversation
from .peering.files import check_file_name, shown_text
from .peering.group import Group
from .peering.groups import Groups
from .peering.invitation import Invitation, InvitationDesk
from .peering.link import ServerLink, ServerSession, server_list
from .peering.peer_contacts import PeerContacts
from .peering.peer_files import PeerFiles, transfer_store
from .peering.peer_groups import PeerGroups
from .peering.peer_messages import PeerMessages
from .peering.postbox import Postbox
from .peering.reach import Reach
from .peering.settings import PEER_DEFAULTS, ChatSettings, PeerLimits, PeerSettings
from .peering.talks import Talks
from .peering.transfer import FileOffer, Transfer
from .peering.transfers import FileDesk
from .peering.upgrade import Upgrades, upgrades
from .peering.watchlist import WATCHED, WatchList
from .protocol import (
    DEFAULT_PORT,
    Accepted,
    Cancelled,
    Invited,
    Mail,
    Presence,
    PunchNote,
    Refused,
    RelayOffer,
    WireMessage,
    check_name,
)
from .shared.connection import Connection
from .shared.identity import NEW_KEY_EACH_RUN, Identity, fingerprint
from .store import MessageStore
from .stores.memory import MemoryMessageStore
from .stores.transfers import TransferStore

__all__ = [
    "Conversation",
    "FileOffer",
    "Group",
    "Invitation",
    "Peer",
    "PeerLimits",
    "PeerSettings",
    "Transfer",
    "check_file_name",
    "shown_text",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_SIZE = PEER_DEFAULTS.max_message_size
"""Largest chat message body, in UTF-8 bytes; well under the frame limit."""


class Peer(PeerMessages, PeerFiles, PeerGroups, PeerContacts):
    """One user of p2pchat: a session with the signalling server and direct conversations.

    ``store`` (default: a new MemoryMessageStore) is opened by ``start()`` and closed by
    ``close()``. ``identity`` is the key the name is bound to on the server. Without one, a
    peer with a persistent store keeps its identity beside it (``store.identity_file``,
    made on first start, readable by its owner only), so that it keeps its name across
    restarts; with a memory store it makes an ephemeral one. ``server`` is one
    ``(host, port)`` or a list of them (the nodes of one deployment: the peer logs in to the
    first that takes it, and moves on to the next when it loses one). ``server_ssl`` runs
    the server connection over TLS with that context. ``listen`` is where other peers dial
    in (a wildcard host, ``0.0.0.0`` or ``::``: on IPv4 and IPv6 both); ``advertise``
    overrides the addresses given to the server (default: the listener's own, a wildcard
    host replaced by the one the server sees). With ``traversal`` (the default) the peer
    takes part in connection reversal and hole punching, and connects to the server from
    its listening port; without, an invitee that cannot dial the inviter goes straight to
    the relay, as before.

    ``transfers`` keeps the file transfers (default: with a persistent store, an SQLite
    file beside it, ``NAME.transfers.sqlite3``, so that they go on after a restart; else in
    memory).

    Limits and timeouts are keywords (``PeerLimits``; defaults and ranges in
    ``PeerSettings``), or one ``settings=PeerSettings(...)`` that keywords beside it
    override; checked once, kept as ``peer.settings`` and handed to the parts.
    """

    def __init__(
        self,
        name: str,
        server: tuple[str, int] | Sequence[tuple[str, int]] = ("127.0.0.1", DEFAULT_PORT),
        listen: tuple[str, int] = ("127.0.0.1", 0),
        store: MessageStore | None = None,
        *,
        identity: Identity | None = None,
        server_ssl: ssl.SSLContext | None = None,
        advertise: Sequence[tuple[str, int]] | None = None,
        traversal: bool = True,
        settings: PeerSettings | None = None,
        transfers: TransferStore | None = None,
        **limits: Unpack[PeerLimits],
    ) -> None:
        self.settings = PeerSettings.build(settings, limits)
        """Every limit and timeout, checked once (ValueError for one out of range): each a
        keyword (``PeerLimits``), or all in ``settings``, which keywords given beside
        override. Each part reads its own from it."""
        self.name = check_name(name)
        self.servers = server_list(server)
        """The servers this peer may log in to, in the order it tries them."""
        self.listen_address = listen
        self.store: MessageStore = store if store is not None else MemoryMessageStore()
        self._made_key = identity is None and self.store.identity_file is None
        if self._made_key:
            identity = Identity.generate()  # nothing persistent to keep it with
        self._identity = identity
        self.server_ssl = server_ssl
        self.advertise = list(advertise) if advertise is not None else None
        self.traversal = traversal
        self.on_presence: Callable[[str, bool], None] | None = None
        """Called with (user, online) when the server says someone logged in or out."""
        self.on_state: Callable[[str], None] | None = None
        """Called with the new ``state`` when the server connection is lost or back."""
        self.on_invitation_cancelled: Callable[[Invitation], None] | None = None
        """Called when a received invitation is withdrawn (``invitation.cancelled`` says why)."""
        self.on_route: Callable[[Conversation], None] | None = None
        """Called with a conversation whose route changed: a relayed talk that moved onto a
        direct connection (``chat.route``, ``chat.via`` say the new one)."""
        self.on_shipped: Callable[[str, list[str]], None] | None = None
        """Called with (contact, message ids) once ``contact`` has acknowledged (stored)
        those messages of ours: their ``shipped`` flag is now set in the store."""
        self._session: ServerSession | None = None
        self._reach: Reach | None = None
        self._desk = InvitationDesk(self, settings=self.settings)
        self._postbox = Postbox(self)
        self._files = FileDesk(
            self.name,
            transfers if transfers is not None else transfer_store(self.store),
            self.settings,
            send=self._send_stored,
            talk=self._open_talk,
            spawn=lambda work: self._spawn(work),
        )
        self._upgrades = Upgrades(
            self.name,
            invite=lambda user, timeout: self._desk.invite(user, timeout),
            spawn=lambda work: self._spawn(work),
            settings=self.settings,
        )
        self._talks = Talks(
            self.name,
            self.store,
            self._settings,
            watch=self._watch_also,
            kick=lambda: self._postbox.kick(),
            opened=self._talk_opened,
            moved=self._talk_moved,
        )
        self._groups = Groups(
            self,
            keys=self._postbox.keys,
            fanout=self._talks.unsent,
            check_recipient=self._postbox.check_recipient,
        )
        self._watchlist = WatchList(
            lambda: self._link(),
            lambda: self.correspondents(limit=WATCHED),
            lambda work: self._spawn(work),
        )

    def __repr__(self) -> str:
        return f"<Peer {self.name} {'online' if self.connected else 'offline'}>"

    # Lifecycle.

    async def start(self) -> None:
        """Open the store, listen for direct connections, log in to the server."""
        if self._session is not None:
            return
        await self.store.start()
        files_started = False
        try:
            await self._files.start()
            files_started = True
            await self._groups.load()
            if self._identity is None:
                path = self.store.identity_file
                assert path is not None
                self._identity = await asyncio.to_thread(Identity.load_or_create, path)
            self._reach = self._make_reach()
            await self._reach.listen(*self.listen_address)
            session = self._make_session()
            await session.start()
        except BaseException as exc:
            if self._reach is not None:
                await self._reach.close()
                self._reach = None
            if files_started:
                await self._files.close()
            await self.store.close()
            if isinstance(exc, AuthenticationError) and self._made_key:
                raise AuthenticationError(f"{exc}. {NEW_KEY_EACH_RUN}") from exc
            raise
        self._session = session
        logger.info("%s logged in; listening on %s", self.name, self.listening)

    @property
    def server_address(self) -> tuple[str, int]:
        """The server this peer is logged in to now (or tries next)."""
        return self._session.server if self._session is not None else self.servers[0]

    def _make_reach(self) -> Reach:
        return Reach(
            self.name,
            self.identity,
            server=lambda: self.server_address,
            servers=self.servers,
            server_ssl=self.server_ssl,
            link=lambda: self._link(),
            opened=self._open_conversation,
            traversal=self.traversal,
            settings=self.settings,
        )

    def _make_session(self) -> ServerSession:
        session = ServerSession(
            self.name,
            self.identity,
            self.servers,
            addresses=lambda: self.advertise if self.advertise is not None else self.listening,
            sources=lambda: self.listening if self.traversal else [],
            traversal=self.traversal,
            on_push=self._on_push,
            ssl=self.server_ssl,
            settings=self.settings,
        )
        session.on_state = lambda state: self.on_state(state) if self.on_state else None
        session.on_login = self._logged_in
        return session

    def _logged_in(self) -> None:
        self._postbox.logged_in()
        self._spawn(self._watchlist.send())

    async def close(self) -> None:
        """Leave every conversation, log out, stop listening, close the store."""
        await self._talks.close("logging out")
        await self._files.close()
        await self._postbox.close()
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
        if self._reach is not None:
            reach, self._reach = self._reach, None
            await reach.close()
        await self.store.close()

    async def __aenter__(self) -> Peer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def identity(self) -> Identity:
        """The key pair this peer logs in with (with a persistent store and none given:
        known once ``start()`` has loaded or made it)."""
        if self._identity is None:
            raise IdentityError(f"{self.name}'s identity is loaded by start(): call it first")
        return self._identity

    @property
    def fingerprint(self) -> str:
        """This peer's fingerprint, for others to compare with what their server shows."""
        return self.identity.fingerprint

    @property
    def state(self) -> str:
        """``connected``, ``reconnecting`` (conversations go on meanwhile) or ``offline``."""
        return self._session.state if self._session is not None else "offline"

    @property
    def connected(self) -> bool:
        """True while the session with the signalling server is up."""
        return self._session is not None and self._session.connected

    @property
    def observed(self) -> tuple[str, int] | None:
        """Where the server saw our connection come from at the last login (behind a NAT:
        the NAT's mapping; with ``traversal``, the mapping of the listening port)."""
        return self._session.observed if self._session is not None else None

    @property
    def listening(self) -> list[tuple[str, int]]:
        """The addresses the direct-connection listener is bound to."""
        return self._reach.listening if self._reach is not None else []

    @property
    def conversations(self) -> dict[str, Conversation]:
        """Open conversations by the other user's name (a copy)."""
        return dict(self._talks.open)

    # Server requests.

    def _link(self) -> ServerLink:
        if self._session is None:
            raise ConnectionClosed(f"{self.name} is not started")
        return self._session.link()

    def _dialler(self) -> Reach:
        if self._reach is None:
            raise ConnectionClosed(f"{self.name} is not started")
        return self._reach

    async def _vet_key(self, user: str, key: str, *, trust_new_key: bool) -> None:
        """Raise KeyChanged if ``user`` is known with another key (and that is not trusted)."""
        known = await self.known_key(user)
        if known is None or known == key:
            return
        if trust_new_key:
            logger.warning("%s: trusting a new key for %s: %s", self.name, user, fingerprint(key))
            await self.trust_key(user, key)
            return
        raise KeyChanged(user, fingerprint(known), fingerprint(key), key)

    # Invitations sent.

    async def invite(
        self, user: str, timeout: float | None = 30.0, *, trust_new_key: bool = False
    ) -> Conversation:
        """Invite ``user`` and return the conversation once they accept and dial in.

        If ``user`` has invited us already, their invitation is accepted instead; if both
        invite each other at once, both get the same one conversation. Raises UnknownUser,
        UserOffline, InviteRefused, KeyChanged (the invitation is cancelled) if ``user``'s
        key is not the one remembered, unless ``trust_new_key``, or InviteTimeout (after
        cancelling) if there is no answer within ``timeout`` seconds. Raises InvalidName
        (nothing is sent) for a name outside the rule.
        """
        return await self._desk.invite(check_name(user), timeout, trust_new_key=trust_new_key)

    async def next_invitation(self) -> Invitation:
        """Wait for the next invitation received."""
        return await self._desk.next()

    def pending_invitations(self) -> list[Invitation]:
        """Invitations received and neither answered nor cancelled, oldest first."""
        return self._desk.pending()

    def _on_push(self, message: WireMessage) -> None:
        if isinstance(message, Invited | Cancelled | Refused):
            self._desk.on_push(message)
        elif isinstance(message, Accepted):
            pass  # a notice only: the invitee's dial-in (or relay) is what opens the talk
        elif isinstance(message, RelayOffer):
            if self._reach is not None:
                self._reach.relay_offered(message)
        elif isinstance(message, PunchNote):
            if self._reach is not None:
                self._reach.punch_noted(message)
        elif isinstance(message, Mail):
            self._postbox.pushed(message)
        elif isinstance(message, Presence):
            if self.on_presence is not None:
                self.on_presence(message.user, message.online)
        else:
            logger.warning("ignoring unexpected %s from the server", type(message).__name__)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in the background, until done or until this peer closes."""
        task = asyncio.ensure_future(work)
        if self._reach is not None:
            self._reach.track(task)

    # Conversations.

    async def _open_conversation(
        self, contact: str, connection: Connection, key: str, via: str = "dialled"
    ) -> Conversation:
        return await self._talks.start(contact, connection, key, via)

    def _settings(self) -> ChatSettings:
        return ChatSettings(
            limits=self.settings,
            on_shipped=lambda contact, ids: (
                self.on_shipped(contact, ids) if self.on_shipped else None
            ),
            on_frame=self._files.frame,
            deliverable=self._files.deliverable,
            group_note=self._group_note,
            admit_group=self._admit_group,
            on_group_stored=self._group_stored,
        )

    def _talk_opened(self, chat: Conversation) -> None:
        self._files.opened(chat)
        self._upgrades.opened(chat)

    def _talk_moved(self, chat: Conversation) -> None:
        self._files.moved(chat)
        if self.on_route is not None:
            self.on_route(chat)

    def _upgrading(self, user: str) -> bool:
        """Whether an invitation from ``user`` is their attempt to take our relayed talk
        direct (``upgrade.py``): accepted at once, without the relay."""
        chat = self._talks.open.get(user)
        return (
            chat is not None
            and not chat.closed
            and chat.route == "relay"
            and upgrades(user, self.name)
        )

    def _talking_with(self, user: str) -> bool:
        return self._talks.talking_with(user)
