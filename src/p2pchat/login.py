"""A login to the signalling server: the peer proves its key, and the name is bound to it.

::

    -> hello{version, name, addresses, certificate, mailbox_key, mailbox_sig}
                                             <- challenge{nonce}
    -> auth{signature}                       (then the server answers welcome, or an error)

The peer signs a fresh 32-byte nonce with the key of its certificate, so a login cannot be
replayed. The first key to log in with a name is bound to it (names are unique whatever
their case), and every other key is refused. New names are bounded per address. The
mailbox key the peer publishes (signed by its key) is kept and handed out: whoever seals
to it checks that signature, so the server does not need to.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from .connection import Connection
from .errors import AuthenticationError, IdentityError, ProtocolError, RateLimited
from .identity import (
    b64decode,
    b64encode,
    certificate_key,
    fingerprint,
    login_challenge_payload,
    verify_signature,
)
from .limits import AddressLimits
from .protocol import PROTOCOL_VERSION, Auth, Challenge, Hello, WireMessage
from .store import UserStore

__all__ = ["authenticate"]


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
        # Passed on as given: whoever seals to it checks the signature against the key
        # it knows for this user, so a server's check would add nothing but a cost.
        mailbox = (hello.mailbox_key, hello.mailbox_sig)
    nonce = b64encode(secrets.token_bytes(32))
    await connection.send(Challenge(nonce=nonce))
    auth = await connection.recv()
    if not isinstance(auth, Auth):
        raise ProtocolError(f"expected auth, got {type(auth).__name__.lower()}")
    if not verify_signature(key, login_challenge_payload(nonce, hello.name, key), auth.signature):
        connection.log.warning("refused a login as %s: bad signature", hello.name)
        raise AuthenticationError("the signature does not prove that key")
    # The key is checked before the name's presence: an impostor learns nothing more.
    host = connection.remote_address[0] if connection.remote_address else ""
    may_create = limits.reserve_registration(host)
    binding = None
    try:
        binding = await store.bind_key(
            hello.name, key, now=clock(), create=may_create, mailbox=mailbox
        )
    finally:
        if may_create and (binding is None or not binding.created):
            limits.unreserve_registration(host)  # no new name: the right is not used up
    if binding is None:
        raise RateLimited(f"too many new names from {host}; try again later")
    if binding.name != hello.name:
        raise AuthenticationError(f"that name is registered as {binding.name}")
    if binding.key != key:
        connection.log.warning(
            "refused a login as %s: key %s presented, %s registered",
            hello.name,
            fingerprint(key),
            fingerprint(binding.key),
        )
        raise AuthenticationError(f"{hello.name} is registered to another key")
    if mailbox is not None and binding.mailbox_key != mailbox[0]:
        await store.set_mailbox_key(hello.name, *mailbox)  # published anew
    return hello, key
