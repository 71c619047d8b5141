"""A login to the signalling server: the peer proves its key, and the name is bound to it.

::

    -> hello{version, name, addresses, certificate, mailbox_key, mailbox_sig}
                                             <- challenge{nonce}
    -> auth{signature}                       (then the server answers welcome, or an error)

The peer signs a fresh 32-byte nonce with the key of its certificate, so a login cannot be
replayed. The first key to log in with a name is bound to it (names are unique whatever
their case), and every other key is refused. New names are bounded per address. The
mailbox key the peer publishes must be a 32-byte key signed by its identity key: checked
here, where it enters, so that a login with a bad one fails at once with a reason (rather
than every sender failing later to seal to it); whoever seals to it checks the signature
again, against the key it knows for this user, since nobody need trust the server. A
returning user who publishes the very key and signature stored already is not checked
again (they were, before they were written): one signature check per login instead of
two, 120 us of CPU each here; a login proves its key every time.

``LoginDesk`` runs a login from the first message to the welcomed session: the proof
(``authenticate``), the name taken across the cluster (a second login of a logged-in name
is refused on every node), ``welcome`` queued first, and only then what was pushed to
the user meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable
from typing import Final

from ..cluster.base import Cluster, Entry
from ..errors import (
    AuthenticationError,
    IdentityError,
    NameTaken,
    P2PChatError,
    ProtocolError,
    RateLimited,
    ServerRefused,
    ServerUnavailable,
    StoreError,
)
from ..protocol import PROTOCOL_VERSION, Auth, Challenge, Hello, Welcome, WireMessage
from ..shared.connection import Connection
from ..shared.identity import (
    b64decode,
    b64encode,
    certificate_key,
    fingerprint,
    login_challenge_payload,
    mailbox_key_payload,
    verify_signature,
)
from ..store import Binding, UserStore
from .limits import AddressLimits
from .session import PresenceLog, Session, Sessions, dial_addresses
from .settings import ServerSettings
from .stats import ServerStats

__all__ = ["FEATURES", "LoginDesk", "authenticate"]

MAILBOX_KEY_BYTES: Final = 32

FEATURES: Final = ("watch",)
"""What this server understands beyond version 3's first messages, told in ``welcome``."""


async def authenticate(
    connection: Connection,
    hello: WireMessage,
    *,
    store: UserStore,
    limits: AddressLimits,
    clock: Callable[[], float],
) -> tuple[Hello | None, str]:
    """Check hello's certificate, have the peer sign a fresh challenge, bind the name.

    Returns (hello, key); (None, "") if the connection was told its version is not
    spoken. Raises AuthenticationError, RateLimited or ProtocolError otherwise.
    """
    if not isinstance(hello, Hello) or hello.invitation is not None:
        raise ProtocolError(f"expected a login hello, got {type(hello).__name__.lower()}")
    if hello.version != PROTOCOL_VERSION:
        await connection.fail(
            f"protocol version {hello.version} is not supported (this server speaks "
            f"{PROTOCOL_VERSION})",
            code="unsupported_version",
        )
        return None, ""
    if not hello.certificate:
        raise AuthenticationError("a login must carry the peer's certificate")
    try:
        # Not the certificate's own signature: the peer proves the key below, and every
        # peer that is given this certificate checks it itself.
        key = certificate_key(b64decode(hello.certificate), check=False)
    except IdentityError as exc:
        raise AuthenticationError(f"bad certificate: {exc}") from None
    mailbox = None
    if hello.mailbox_key is not None:
        if hello.mailbox_sig is None:
            raise AuthenticationError("a mailbox key must come with its signature")
        mailbox = (hello.mailbox_key, hello.mailbox_sig)
    nonce = b64encode(secrets.token_bytes(32))
    await connection.send(Challenge(nonce=nonce))
    auth = await connection.recv()
    if not isinstance(auth, Auth):
        raise ProtocolError(f"expected auth, got {type(auth).__name__.lower()}")
    if not verify_signature(key, login_challenge_payload(nonce, hello.name, key), auth.signature):
        connection.log.warning("refused a login as %s: bad signature", hello.name)
        raise AuthenticationError("the signature does not prove that key")
    # The key is proven before the name's presence is looked at: an impostor learns
    # nothing more. A returning user's name is found without a new one reserved.
    binding = await store.bind_key(hello.name, key, now=clock(), create=False)
    vouched = False
    if binding is None:  # a new name: its mailbox key is checked before it is written
        if mailbox is not None and not _vouched(key, *mailbox):
            raise _bad_mailbox(connection, hello.name)
        vouched = True
        binding = await _register(hello.name, key, mailbox, connection, store, limits, clock)
    if binding.name != hello.name:
        raise AuthenticationError(f"that name is registered as {binding.name}")
    if binding.key != key:
        connection.log.warning(
            "refused a login as %s: key %s presented, %s registered",
            hello.name,
            fingerprint(key),
            fingerprint(binding.key),
        )
        raise AuthenticationError(
            f"{hello.name} is registered to another key: log in with the key it was "
            "registered with, or choose another name"
        )
    if mailbox is not None and (binding.mailbox_key, binding.mailbox_sig) != mailbox:
        # Published anew (or in a race with its own first login): checked first. The same
        # key and signature as those published were checked when they were written.
        if not vouched and not _vouched(key, *mailbox):
            raise _bad_mailbox(connection, hello.name)
        await store.set_mailbox_key(hello.name, *mailbox)
    return hello, key


async def _register(
    name: str,
    key: str,
    mailbox: tuple[str, str] | None,
    connection: Connection,
    store: UserStore,
    limits: AddressLimits,
    clock: Callable[[], float],
) -> Binding:
    """Bind ``name`` to ``key`` (or find who registered it meanwhile), within the bound on
    new names per address."""
    host = connection.remote_address[0] if connection.remote_address else ""
    may_create = limits.reserve_registration(host)
    binding = None
    try:
        binding = await store.bind_key(name, key, now=clock(), create=may_create, mailbox=mailbox)
    finally:
        if may_create and (binding is None or not binding.created):
            limits.unreserve_registration(host)  # no new name: the right is not used up
    if binding is None:
        raise RateLimited(f"too many new names from {host}; try again later")
    return binding


def _bad_mailbox(connection: Connection, name: str) -> AuthenticationError:
    connection.log.warning("refused a login as %s: bad mailbox key", name)
    return AuthenticationError("the mailbox key is not a key signed by the login's key")


def _vouched(key: str, mailbox_key: str, signature: str) -> bool:
    """True if ``mailbox_key`` is an X25519 key (32 bytes) signed by ``key``."""
    try:
        if len(b64decode(mailbox_key)) != MAILBOX_KEY_BYTES:
            return False
    except IdentityError:
        return False
    return verify_signature(key, mailbox_key_payload(mailbox_key), signature)


class LoginDesk:
    """A server's logins: from a connection's first message to a welcomed session."""

    def __init__(
        self,
        *,
        store: UserStore,
        limits: AddressLimits,
        sessions: Sessions,
        cluster: Cluster,
        presence: PresenceLog,
        stats: ServerStats,
        settings: ServerSettings,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.limits = limits
        self.sessions = sessions
        self.cluster = cluster
        self.presence = presence
        self.stats = stats
        self.settings = settings
        self.clock = clock

    async def first_message(self, connection: Connection) -> WireMessage | None:
        """The first message (hello, or relay), or None if none came in time."""
        try:
            async with asyncio.timeout(self.settings.hello_timeout):
                return await connection.recv()
        except TimeoutError:
            self.stats.refusals["timeout"] += 1
            await connection.fail("no login in time", code="timeout")
            return None

    async def login(self, connection: Connection, first: WireMessage) -> Session | None:
        """hello, challenge, auth, welcome; None (the connection told why) if refused."""
        try:
            async with asyncio.timeout(self.settings.hello_timeout):
                hello, key = await authenticate(
                    connection, first, store=self.store, limits=self.limits, clock=self.clock
                )
            if hello is None:
                self.stats.refusals["unsupported_version"] += 1
                return None
            if hello.name in self.sessions:
                raise NameTaken(f"{hello.name} is logged in already")
            session = Session(
                connection,
                name=hello.name,
                key=key,
                certificate=hello.certificate or "",
                addresses=dial_addresses(hello.addresses, connection.remote_address),
                outbox_size=self.settings.outbox_size,
                traversal=hello.traversal,
            )
            token = secrets.token_hex(8)  # this login's own: a later one gets another
            self.sessions.expect(session.name, token)  # before any await: taken here now
            try:
                await self._welcome(session, token)
            finally:
                self.sessions.forget(session.name)
        except TimeoutError:
            self.stats.refusals["timeout"] += 1
            await connection.fail("no login in time", code="timeout")
            return None
        except StoreError as exc:
            connection.log.error("cannot log in: %s", exc)
            self.stats.refusals[ServerUnavailable.code] += 1
            await connection.fail(
                "the server cannot reach its shared state; try again", code=ServerUnavailable.code
            )
            return None
        except ServerRefused as exc:
            self.stats.refusals[exc.code] += 1
            await connection.fail(str(exc), code=exc.code)
            return None
        connection.log.info("logged in, dialable at %s", session.addresses)
        return session

    async def _welcome(self, session: Session, token: str) -> None:
        """Take the name across the cluster, queue ``welcome``, and from then on deliver."""
        entry = Entry(
            name=session.name,
            node=self.cluster.node_id,
            certificate=session.certificate,
            addresses=session.addresses,
            traversal=session.traversal,
            token=token,
        )
        if not await self.cluster.claim(entry):
            raise NameTaken(f"{session.name} is logged in already")
        try:
            await self.presence.online(session.name, session.addresses)
            connection = session.connection
            connection.label = session.name
            host, port = connection.remote_address or ("", 0)
            # Welcome is the first thing queued: only then may news and invitations follow.
            await session.reply(
                Welcome(
                    version=PROTOCOL_VERSION,
                    name=session.name,
                    observed=host,
                    observed_port=port,
                    features=list(FEATURES),
                )
            )
        except BaseException:
            with contextlib.suppress(P2PChatError, OSError):
                await self.cluster.release(session.name, token)
            raise
        self.sessions.add(session)  # and what was pushed to it meanwhile
        self.stats.logins += 1
