"""The messages of every connection (to the server, relayed, direct): its opening (hello,
welcome, the login's challenge, starttls and proceed, reverse), error, ping, pong and bye.
``docs/protocol.md`` ("Every connection") says what each is for."""

from __future__ import annotations

from typing import Annotated

import msgspec

from .fields import Address, Base, Base64, Host, Port, Reason, Token, UserName, Version

__all__ = [
    "Auth",
    "Bye",
    "Challenge",
    "Error",
    "Hello",
    "Ping",
    "Pong",
    "Proceed",
    "Reverse",
    "StartTls",
    "Welcome",
]


class Hello(Base, tag="hello", frozen=True):
    """First message of every connection. ``invitation`` is set on direct connections only."""

    version: Version
    name: UserName
    addresses: Annotated[list[Address], msgspec.Meta(max_length=8)] = []
    invitation: Token | None = None
    certificate: Base64 | None = None
    mailbox_key: Base64 | None = None
    """The peer's X25519 key for sealed mail, signed by its identity key (``mailbox_sig``)."""
    mailbox_sig: Base64 | None = None
    traversal: bool = False
    """To the server: this peer takes part in connection reversal and hole punching (it
    understands ``punch_note`` and ``reverse``)."""


class Welcome(Base, tag="welcome", frozen=True):
    """Answer to ``hello``. From the server, ``observed`` and ``observed_port`` are where it
    sees the peer's connection come from (behind a NAT: the NAT's mapping)."""

    version: Version
    name: UserName
    observed: Host = ""
    observed_port: Port = 0
    features: Annotated[
        list[Annotated[str, msgspec.Meta(max_length=32)]], msgspec.Meta(max_length=16)
    ] = []
    """What this server understands beyond version 3's messages (``watch``): a peer sends
    those only to a server that lists them."""


class Challenge(Base, tag="challenge", frozen=True):
    """The server asks a logging-in peer to sign a fresh nonce with its key."""

    nonce: Base64


class Auth(Base, tag="auth", frozen=True):
    """The signature of the challenge (see ``identity.login_challenge_payload``)."""

    signature: Base64


class StartTls(Base, tag="starttls", frozen=True):
    """First message on a direct connection, in clear: which invitation it answers."""

    invitation: Token


class Proceed(Base, tag="proceed", frozen=True):
    """The inviter knows the invitation: start the TLS handshake."""


class Reverse(Base, tag="reverse", frozen=True):
    """First message, in clear, on a connection the inviter opened to the invitee (connection
    reversal, or a hole punch): which invitation it is for. The invitee then goes on as
    if it had dialled: ``starttls``, and so on; the inviter stays the TLS server."""

    invitation: Token


class Error(Base, tag="error", frozen=True):
    """A request failed (``id`` set) or the connection is being closed for a reason."""

    code: Annotated[str, msgspec.Meta(max_length=64)]
    reason: Reason
    id: Token | None = None


class Ping(Base, tag="ping", frozen=True):
    id: Token


class Pong(Base, tag="pong", frozen=True):
    id: Token


class Bye(Base, tag="bye", frozen=True):
    """The sender is leaving on purpose; the connection closes after it."""

    reason: Reason = ""
