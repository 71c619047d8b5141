"""The typed messages of the wire protocol: small frozen classes, validated on decoding.

Each class is one message ``type``; ``WireMessage`` is their tagged union, which is what
the decoder (``protocol.py``) accepts: a field of the wrong type, too long, or not matching
its pattern is a protocol error before any handler sees it. ``docs/protocol.md`` says
what each is for.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal, TypeAlias

import msgspec

NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}\Z"
r"""User names: 1 to 32 ASCII letters, digits, ``.``, ``_``, ``-``, starting with a letter or
digit. ASCII only, so that no two names look alike; ``\Z``, not ``$``, so that no trailing
newline slips through. The server also keeps names unique whatever their case."""

MESSAGE_ID_PATTERN: Final = r"^[A-Za-z0-9._:-]{1,64}\Z"
"""Message and mail item ids: 1 to 64 ASCII letters, digits, ``.``, ``_``, ``:``, ``-``."""

MAX_ACK_IDS: Final = 512
"""Ids a sender puts in one ``ack``: 512 ids of 64 characters make about 34 KiB, under the
default frame limit (64 KiB); a longer acknowledgement goes as several acks. A receiver
takes up to 4096 (what fits a larger frame)."""
# Field types. Validation happens in the decoder, so a handler never sees a malformed value.
UserName: TypeAlias = Annotated[
    str, msgspec.Meta(min_length=1, max_length=32, pattern=NAME_PATTERN)
]
Token: TypeAlias = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Host: TypeAlias = Annotated[str, msgspec.Meta(max_length=255)]
Port: TypeAlias = Annotated[int, msgspec.Meta(ge=0, le=65535)]
Version: TypeAlias = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
"""A protocol version: a number of our own, never one past what any store or log takes."""
Address: TypeAlias = tuple[Host, Port]
Reason: TypeAlias = Annotated[str, msgspec.Meta(max_length=1024)]
Base64: TypeAlias = Annotated[str, msgspec.Meta(max_length=2048, pattern=r"^[A-Za-z0-9_-]*$")]
"""URL-safe base64 without padding: keys, signatures, nonces, certificates (DER)."""
Sealed: TypeAlias = Annotated[
    str, msgspec.Meta(min_length=1, max_length=60_000, pattern=r"^[A-Za-z0-9_-]*$")
]
"""A sealed mailbox item, base64 as above; the server bounds it further (mail_item_size)."""
MessageId: TypeAlias = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, pattern=MESSAGE_ID_PATTERN)
]
"""A message's id (a UUID from p2pchat) or a mail item's: printable ASCII, no spaces."""
MAX_TIME: Final = 253_402_300_799.0
"""The last second of the year 9999, in epoch seconds: the latest time a field may hold."""
Timestamp: TypeAlias = Annotated[float, msgspec.Meta(ge=0.0, le=MAX_TIME)]
"""Epoch seconds: finite (never NaN or infinite), not before 1970, not after ``MAX_TIME``."""


class _Base(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Common configuration: immutable, keyword-only, tagged by ``type`` on the wire."""


# Both connections.


class Hello(_Base, tag="hello", frozen=True):
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


class Welcome(_Base, tag="welcome", frozen=True):
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


class Reverse(_Base, tag="reverse", frozen=True):
    """First message, in clear, on a connection the inviter opened to the invitee (connection
    reversal, or a hole punch): which invitation it is for. The invitee then goes on as
    if it had dialled: ``starttls``, and so on; the inviter stays the TLS server."""

    invitation: Token


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
    """The secret that the invitee presents on its relay connection. ``server``: the
    server node that holds the relay, to connect to (none: the server answering)."""

    id: Token
    ticket: Token
    server: Address | None = None


class RelayOffer(_Base, tag="relay_offer", frozen=True):
    """Pushed to the inviter: present ``ticket`` on a relay connection to meet the invitee,
    at ``server`` if set (the node that holds the relay), else at the server pushing this."""

    invitation: Token
    ticket: Token
    server: Address | None = None


class Relay(_Base, tag="relay", frozen=True):
    """First message of a relay connection, instead of hello."""

    ticket: Token


class Relaying(_Base, tag="relaying", frozen=True):
    """Both sides are here: from the next byte on, the server only passes bytes along."""


PunchStep: TypeAlias = Literal["connect", "sync"]


class PunchRequest(_Base, tag="punch_request", frozen=True):
    """Pass ``step`` on to the other side of an accepted invitation (DCUtR through the
    server). ``connect`` (the invitee first, the inviter in answer): here is where I am,
    dial me back; ``sync`` (the invitee): punch now."""

    id: Token
    invitation: Token
    step: PunchStep


class PunchNote(_Base, tag="punch_note", frozen=True):
    """Pushed: the other side of ``invitation`` sent ``step``; the server adds where that
    side can be dialled (``addresses``) and where it sees it come from (``observed``)."""

    invitation: Token
    step: PunchStep
    addresses: Annotated[list[Address], msgspec.Meta(max_length=8)] = []
    observed: Address | None = None


class Whois(_Base, tag="whois", frozen=True):
    id: Token
    user: UserName


class Key(_Base, tag="key", frozen=True):
    """The key the server has bound to ``user``, and the mailbox key it last published."""

    id: Token
    user: UserName
    key: Base64
    mailbox_key: Base64 | None = None
    mailbox_sig: Base64 | None = None


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


class Watch(_Base, tag="watch", frozen=True):
    """Hear of these users' logins and logouts (``presence``) however many are online: a
    server with more than ``presence_broadcast`` users online tells each login and logout
    only to those who watch that user. Replaces the list sent before; answered ``ok``."""

    id: Token
    users: Annotated[list[UserName], msgspec.Meta(max_length=1000)]


# The mailbox (peer <-> server).


class MailItem(msgspec.Struct, frozen=True, kw_only=True):
    """One item in a mailbox: a sealed message, or a signed receipt for messages sent.

    ``item`` is the message id (for a receipt: the id the recipient chose for it);
    ``sender`` is who deposited it, as the server saw them log in; ``at`` when.
    """

    item: MessageId
    kind: Literal["msg", "receipt"]
    sender: UserName
    sealed: Sealed
    at: Timestamp


class Deposit(_Base, tag="deposit", frozen=True):
    """Leave a sealed message for ``recipient``; answered ``ok`` (also if already there)."""

    id: Token
    recipient: UserName
    item: MessageId
    sealed: Sealed


class Collect(_Base, tag="collect", frozen=True):
    """Ask for what waits in our mailbox, oldest first; answered with ``mail``."""

    id: Token


class Mail(_Base, tag="mail", frozen=True):
    """Items for the recipient: the answer to ``collect`` (``id`` set, ``more`` if the page
    is not all), or pushed (no ``id``) when something is deposited while it is online."""

    items: Annotated[list[MailItem], msgspec.Meta(max_length=256)]
    id: Token | None = None
    more: bool = False


class Settle(_Base, tag="settle", frozen=True):
    """These items of our mailbox are stored on our side: the server drops them."""

    id: Token
    items: Annotated[list[MessageId], msgspec.Meta(max_length=256)]


class Receipt(_Base, tag="receipt", frozen=True):
    """Tell ``recipient`` (the messages' sender) that we stored ``items``; ``sealed`` holds
    our signed statement, deposited in their mailbox as a ``receipt`` item."""

    id: Token
    recipient: UserName
    item: MessageId
    sealed: Sealed


# Groups (inside a peer-to-peer ``msg`` or a sealed letter: the server never sees them).

GROUP_ID_PATTERN: Final = r"^g[0-9a-f]{32}\Z"
"""A group's id: ``g`` and 128 random bits in hex; 33 characters, so never a user name."""
GroupId: TypeAlias = Annotated[
    str, msgspec.Meta(min_length=33, max_length=33, pattern=GROUP_ID_PATTERN)
]
MAX_GROUP_NAME: Final = 64
"""Longest group name, in characters (and at most four times that in UTF-8 bytes)."""
MAX_ROSTER_MEMBERS: Final = 1024
"""Most members a roster may list on the wire; each peer holds its groups to its own
``max_group_members`` (default 64), which cannot be set above this."""
GroupChange: TypeAlias = Literal["create", "add", "remove"]


class Roster(msgspec.Struct, frozen=True, kw_only=True):
    """A group's membership at one ``version``, signed by its admin (``signature`` over
    ``roster_payload``): what every group message carries, so that a member who was away
    learns the group from whichever message reaches it first. ``change`` and ``subject``
    say what made this version (``create``: no subject). ``salt``: the random half of the
    group id, whose other half is its admin (``group_id_of``), so that no one else can claim
    to be the admin of a group they did not make."""

    group: GroupId
    salt: Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{32}$")]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_GROUP_NAME)]
    admin: UserName
    members: Annotated[list[UserName], msgspec.Meta(min_length=1, max_length=MAX_ROSTER_MEMBERS)]
    version: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]
    change: GroupChange
    subject: UserName | None = None
    signature: Base64


class GroupNote(msgspec.Struct, frozen=True, kw_only=True):
    """What makes a message a group message: the roster it was sent under; ``notice``
    ``change`` (the message announces ``roster``'s change, from the admin) or ``leave``
    (its sender leaves; ``leave`` is their signature of ``leave_payload``)."""

    roster: Roster
    notice: Literal["", "change", "leave"] = ""
    leave: Base64 | None = None


# Peer <-> peer.


class Msg(_Base, tag="msg", frozen=True):
    """One chat message. ``id`` is globally unique; ``ts`` is the sender's clock;
    ``group`` is set for a group message (one copy to each member)."""

    id: MessageId
    ts: Timestamp
    body: str
    group: GroupNote | None = None


class Ack(_Base, tag="ack", frozen=True):
    """The receiver has stored these messages durably (``MAX_ACK_IDS`` at most per ack)."""

    ids: Annotated[list[MessageId], msgspec.Meta(max_length=4096)]


# Peer <-> peer: files (the offer itself is a chat message; see ``peering/files.py``).

FileOffset: TypeAlias = Annotated[int, msgspec.Meta(ge=0, le=2**62)]
"""A position in a file, in bytes."""
MAX_FILE_DATA: Final = 63 * 1024
"""File bytes in one ``file_data`` frame at most: with its id and offset it fits the
default frame limit (64 KiB). ``file_data`` is the one binary frame (``protocol.py``)."""


MIN_FILE_WINDOW: Final = 64 * 1024
MAX_FILE_WINDOW: Final = 256 * 1024 * 1024


class FileAccept(_Base, tag="file_accept", frozen=True):
    """The recipient takes file ``id``: send it from ``offset`` (what it has stored and
    synced; 0 the first time), at most ``window`` bytes ahead of its acknowledgements.
    Sent again at each talk until the file is complete."""

    id: MessageId
    offset: FileOffset
    window: Annotated[int, msgspec.Meta(ge=MIN_FILE_WINDOW, le=MAX_FILE_WINDOW)]
    """Bytes the sender may have unacknowledged at most (the recipient holds them)."""


class FileData(_Base, tag="file_data", frozen=True):
    """Bytes of file ``id`` from ``offset``, in order, never past the window."""

    id: MessageId
    offset: FileOffset
    data: Annotated[bytes, msgspec.Meta(min_length=1, max_length=MAX_FILE_DATA)]


class FileAck(_Base, tag="file_ack", frozen=True):
    """The recipient has stored and synced file ``id`` up to ``offset``."""

    id: MessageId
    offset: FileOffset


class FileDone(_Base, tag="file_done", frozen=True):
    """The recipient has the whole file ``id``, its SHA-256 checked, in place."""

    id: MessageId


class FileStop(_Base, tag="file_stop", frozen=True):
    """Transfer ``id`` ends without the file: ``code`` says why (``refused``,
    ``cancelled``, ``unsafe_name``, ``too_large``, ``size_mismatch``, ``hash_mismatch``,
    ``failed``)."""

    id: MessageId
    code: Annotated[str, msgspec.Meta(max_length=32)]
    reason: Reason = ""


FileFrame: TypeAlias = FileAccept | FileData | FileAck | FileDone | FileStop
FILE_FRAMES: Final = (FileAccept, FileData, FileAck, FileDone, FileStop)
"""The frames of file transfers, carried on a conversation's connection."""


WireMessage: TypeAlias = (
    Hello
    | Welcome
    | Challenge
    | Auth
    | StartTls
    | Proceed
    | Reverse
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
    | PunchRequest
    | PunchNote
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
    | Watch
    | Deposit
    | Collect
    | Mail
    | Settle
    | Receipt
    | Msg
    | Ack
    | FileAccept
    | FileData
    | FileAck
    | FileDone
    | FileStop
)

Request: TypeAlias = (
    ListUsers
    | Whois
    | Invite
    | Accept
    | Refuse
    | Cancel
    | Ping
    | RelayRequest
    | PunchRequest
    | Watch
    | Deposit
    | Collect
    | Settle
    | Receipt
)
"""Messages a peer sends the server that are answered with the same ``id``."""

REQUEST_TYPES: Final = (
    ListUsers,
    Whois,
    Invite,
    Accept,
    Refuse,
    Cancel,
    Ping,
    RelayRequest,
    PunchRequest,
    Watch,
    Deposit,
    Collect,
    Settle,
    Receipt,
)
