"""The p2pchat wire protocol: frames, typed messages and their codec. No I/O here.

A frame is a 4-byte big-endian unsigned length N followed by N bytes of UTF-8 JSON holding
one object whose string field ``type`` names the message. N = 0, or N over the limit, is a
protocol error, detected from the 4-byte header before any of the body is buffered.

Every connection starts with ``hello``. Requests carry an ``id`` that their answer echoes.
Server connection (``->`` peer to server, ``<-`` server to peer)::

    -> hello{version, name, addresses, certificate}
                                             <- challenge{nonce}
    -> auth{signature}                       <- welcome{version, name, observed}
    -> list{id}                              <- users{id, users, truncated}
    -> whois{id, user}                       <- key{id, user, key}
    -> invite{id, user}                      <- ringing{id, invitation, certificate}
                                             <- invited{invitation, sender, addresses,
                                                        certificate}
    -> accept{id, invitation}                <- ok{id}      (inviter gets accepted{...})
    -> refuse{id, invitation, reason}        <- ok{id}      (inviter gets refused{...})
    -> cancel{id, invitation}                <- ok{id}      (invitee gets cancelled{...})
                                             <- presence{user, online}
    -> relay_request{id, invitation}         <- relay_ticket{id, ticket}
                                             <- relay_offer{invitation, ticket}
                                                        (to the inviter)
    -> ping{id}                              <- pong{id}    (either direction)
    -> bye{reason}                           <- error{id?, code, reason}

Relay connection (a new connection to the server, when the invitee cannot dial the
inviter); once both sides are there, the server passes bytes between them unread and the
two peers speak the direct protocol below through it::

    -> relay{ticket}                         <- relaying{}

Direct connection between two peers (the invitee dials the inviter); after ``proceed`` both
sides run TLS 1.3, each trusting only the certificate the server gave it for the other::

    -> starttls{invitation}                  <- proceed{}
    == TLS handshake ==
    -> hello{version, name, invitation}      <- welcome{version, name}
    <> msg{id, ts, body}                     <> ack{ids}
    <> bye{reason}                           <> error{code, reason}

``docs/protocol.md`` describes each message in prose.
"""

from __future__ import annotations

import re
import struct
from typing import Annotated, Final, NoReturn, TypeAlias, cast

import msgspec

from .errors import FrameTooLarge, InvalidName, ProtocolError

__all__ = [
    "DEFAULT_MAX_FRAME",
    "DEFAULT_PORT",
    "NAME_PATTERN",
    "PROTOCOL_VERSION",
    "REQUEST_TYPES",
    "Accept",
    "Accepted",
    "Ack",
    "Auth",
    "Bye",
    "Cancel",
    "Cancelled",
    "Challenge",
    "Decoder",
    "Error",
    "Hello",
    "Invite",
    "Invited",
    "Key",
    "ListUsers",
    "Msg",
    "Ok",
    "Ping",
    "Pong",
    "Presence",
    "Proceed",
    "Refuse",
    "Refused",
    "Relay",
    "RelayOffer",
    "RelayRequest",
    "RelayTicket",
    "Relaying",
    "Request",
    "Ringing",
    "StartTls",
    "Users",
    "Welcome",
    "Whois",
    "WireMessage",
    "check_name",
    "encode",
]

PROTOCOL_VERSION: Final = 2
DEFAULT_PORT: Final = 5535
"""Where a signalling server listens unless told otherwise."""
DEFAULT_MAX_FRAME: Final = 64 * 1024
HEADER: Final = struct.Struct(">I")

NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}\Z"
r"""User names: 1 to 32 ASCII letters, digits, ``.``, ``_``, ``-``, starting with a letter or
digit. ASCII only, so that no two names look alike; ``\Z``, not ``$``, so that no trailing
newline slips through. The server also keeps names unique whatever their case."""

# Field types. Validation happens in the decoder, so a handler never sees a malformed value.
UserName: TypeAlias = Annotated[
    str, msgspec.Meta(min_length=1, max_length=32, pattern=NAME_PATTERN)
]
Token: TypeAlias = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Host: TypeAlias = Annotated[str, msgspec.Meta(max_length=255)]
Port: TypeAlias = Annotated[int, msgspec.Meta(ge=0, le=65535)]
Address: TypeAlias = tuple[Host, Port]
Reason: TypeAlias = Annotated[str, msgspec.Meta(max_length=1024)]
Base64: TypeAlias = Annotated[str, msgspec.Meta(max_length=2048, pattern=r"^[A-Za-z0-9_-]*$")]
"""URL-safe base64 without padding: keys, signatures, nonces, certificates (DER)."""


class _Base(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Common configuration: immutable, keyword-only, tagged by ``type`` on the wire."""


# Both connections.


class Hello(_Base, tag="hello", frozen=True):
    """First message of every connection. ``invitation`` is set on direct connections only."""

    version: int
    name: UserName
    addresses: Annotated[list[Address], msgspec.Meta(max_length=8)] = []
    invitation: Token | None = None
    certificate: Base64 | None = None


class Welcome(_Base, tag="welcome", frozen=True):
    """Answer to ``hello``. From the server, ``observed`` is the host it sees the peer at."""

    version: int
    name: UserName
    observed: Host = ""


class Challenge(_Base, tag="challenge", frozen=True):
    """The server asks a logging-in peer to sign a fresh nonce with its key."""

    nonce: Base64


class Auth(_Base, tag="auth", frozen=True):
    """The signature of the challenge (see ``identity.login_challenge_payload``)."""

    signature: Base64


class StartTls(_Base, tag="starttls", frozen=True):
    """First message on a direct connection, in clear: which invitation it answers."""

    invitation: Token


class Proceed(_Base, tag="proceed", frozen=True):
    """The inviter knows the invitation: start the TLS handshake."""


class Error(_Base, tag="error", frozen=True):
    """A request failed (``id`` set) or the connection is being closed for a reason."""

    code: Annotated[str, msgspec.Meta(max_length=64)]
    reason: Reason
    id: Token | None = None


class Ping(_Base, tag="ping", frozen=True):
    id: Token


class Pong(_Base, tag="pong", frozen=True):
    id: Token


class Bye(_Base, tag="bye", frozen=True):
    """The sender is leaving on purpose; the connection closes after it."""

    reason: Reason = ""


# Peer <-> server.


class ListUsers(_Base, tag="list", frozen=True):
    id: Token


class Users(_Base, tag="users", frozen=True):
    id: Token
    users: list[UserName]
    truncated: bool = False


class RelayRequest(_Base, tag="relay_request", frozen=True):
    """The invitee cannot dial the inviter: join us through the server."""

    id: Token
    invitation: Token


class RelayTicket(_Base, tag="relay_ticket", frozen=True):
    """The secret that the invitee presents on its relay connection."""

    id: Token
    ticket: Token


class RelayOffer(_Base, tag="relay_offer", frozen=True):
    """Pushed to the inviter: present ``ticket`` on a relay connection to meet the invitee."""

    invitation: Token
    ticket: Token


class Relay(_Base, tag="relay", frozen=True):
    """First message of a relay connection, instead of hello."""

    ticket: Token


class Relaying(_Base, tag="relaying", frozen=True):
    """Both sides are here: from the next byte on, the server only passes bytes along."""


class Whois(_Base, tag="whois", frozen=True):
    id: Token
    user: UserName


class Key(_Base, tag="key", frozen=True):
    """The key the server has bound to ``user``."""

    id: Token
    user: UserName
    key: Base64


class Invite(_Base, tag="invite", frozen=True):
    id: Token
    user: UserName


class Ringing(_Base, tag="ringing", frozen=True):
    """The invitation was passed on; ``invitation`` identifies it from now on."""

    id: Token
    invitation: Token
    certificate: Base64


class Invited(_Base, tag="invited", frozen=True):
    """Pushed to the invitee: who invites, where to dial them, and their certificate."""

    invitation: Token
    sender: UserName
    addresses: Annotated[list[Address], msgspec.Meta(max_length=8)]
    certificate: Base64


class Accept(_Base, tag="accept", frozen=True):
    id: Token
    invitation: Token


class Refuse(_Base, tag="refuse", frozen=True):
    id: Token
    invitation: Token
    reason: Reason = ""


class Cancel(_Base, tag="cancel", frozen=True):
    id: Token
    invitation: Token


class Ok(_Base, tag="ok", frozen=True):
    id: Token


class Accepted(_Base, tag="accepted", frozen=True):
    """Pushed to the inviter: the invitee accepted and is dialling."""

    invitation: Token
    user: UserName


class Refused(_Base, tag="refused", frozen=True):
    """Pushed to the inviter: the invitee refused (or could not dial)."""

    invitation: Token
    user: UserName
    reason: Reason = ""


class Cancelled(_Base, tag="cancelled", frozen=True):
    """Pushed to the invitee: the invitation no longer stands."""

    invitation: Token
    reason: Reason = ""


class Presence(_Base, tag="presence", frozen=True):
    user: UserName
    online: bool


# Peer <-> peer.


class Msg(_Base, tag="msg", frozen=True):
    """One chat message. ``id`` is globally unique; ``ts`` is the sender's clock."""

    id: Token
    ts: float
    body: str


class Ack(_Base, tag="ack", frozen=True):
    """The receiver has stored these messages durably."""

    ids: Annotated[list[Token], msgspec.Meta(max_length=4096)]


WireMessage: TypeAlias = (
    Hello
    | Welcome
    | Challenge
    | Auth
    | StartTls
    | Proceed
    | Error
    | Ping
    | Pong
    | Bye
    | ListUsers
    | Users
    | RelayRequest
    | RelayTicket
    | RelayOffer
    | Relay
    | Relaying
    | Whois
    | Key
    | Invite
    | Ringing
    | Invited
    | Accept
    | Refuse
    | Cancel
    | Ok
    | Accepted
    | Refused
    | Cancelled
    | Presence
    | Msg
    | Ack
)

Request: TypeAlias = ListUsers | Whois | Invite | Accept | Refuse | Cancel | Ping | RelayRequest
"""Messages a peer sends the server that are answered with the same ``id``."""

REQUEST_TYPES: Final = (ListUsers, Whois, Invite, Accept, Refuse, Cancel, Ping, RelayRequest)

_json_encoder: Final = msgspec.json.Encoder()
_json_decoder: Final = msgspec.json.Decoder(WireMessage)


def encode(message: WireMessage, *, max_frame: int | None = DEFAULT_MAX_FRAME) -> bytes:
    """Return ``message`` as one frame. Raises FrameTooLarge over ``max_frame`` bytes."""
    body = _json_encoder.encode(message)
    if max_frame is not None and len(body) > max_frame:
        raise FrameTooLarge(len(body), max_frame)
    return HEADER.pack(len(body)) + body


_NAME: Final = re.compile(NAME_PATTERN)


def check_name(name: str) -> str:
    """Return ``name`` if it follows the rule for user names; raise InvalidName if not."""
    if not isinstance(name, str) or _NAME.match(name) is None:
        raise InvalidName(
            f"invalid user name {name!r}: use 1 to 32 ASCII letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def decode_body(body: bytes) -> WireMessage:
    """Parse one frame's body. Raises ProtocolError saying precisely what is wrong."""
    try:
        return cast(WireMessage, _json_decoder.decode(body))
    except msgspec.ValidationError as exc:
        raise ProtocolError(f"invalid message: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"invalid JSON: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"invalid UTF-8: {exc.reason} at byte {exc.start}") from None


class Decoder:
    """Incremental frame decoder: feed it bytes in any chunks, pull typed messages out.

    After a protocol error the decoder is failed: it raises the same error again and
    buffers nothing more. Buffered bytes never exceed one frame plus the last chunk fed.
    """

    def __init__(self, *, max_frame: int | None = DEFAULT_MAX_FRAME) -> None:
        # Limits
        self.max_frame = max_frame
        self._buffer = bytearray()
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """How many received bytes are not yet part of a returned message."""
        return len(self._buffer)

    def receive_data(self, data: bytes) -> None:
        """Buffer ``data``. Call ``next_message()`` until it returns None."""
        if self._error is not None:
            raise self._error
        self._buffer += data

    def receive_eof(self) -> None:
        """The stream ended. Raises ProtocolError if it ended inside a frame."""
        if self._error is None and self._buffer:
            self._fail(ProtocolError(f"connection closed inside a frame ({self.buffered} bytes)"))

    def next_message(self) -> WireMessage | None:
        """Return the next complete message, or None if more bytes are needed."""
        if self._error is not None:
            raise self._error
        buffer = self._buffer
        if len(buffer) < HEADER.size:
            return None
        (size,) = HEADER.unpack_from(buffer)
        if size == 0:
            self._fail(ProtocolError("empty frame"))
        if self.max_frame is not None and size > self.max_frame:
            self._fail(FrameTooLarge(size, self.max_frame))
        end = HEADER.size + size
        if len(buffer) < end:
            return None
        body = bytes(buffer[HEADER.size : end])
        del buffer[:end]
        try:
            return decode_body(body)
        except ProtocolError as exc:
            self._fail(exc)

    def feed(self, data: bytes) -> list[WireMessage]:
        """Buffer ``data`` and return every message now complete, in order."""
        self.receive_data(data)
        messages = []
        while (message := self.next_message()) is not None:
            messages.append(message)
        return messages

    def _fail(self, error: ProtocolError) -> NoReturn:
        self._error = error
        self._buffer.clear()
        raise error
