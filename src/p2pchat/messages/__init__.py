"""The typed messages of the wire protocol: small frozen classes, validated on decoding.

Each class is one message ``type``; ``WireMessage`` is their tagged union, which is what
the decoder (``protocol.py``) accepts: a field of the wrong type, too long, or not matching
its pattern is a protocol error before any handler sees it. ``docs/protocol.md`` says
what each is for.

Every name is imported from here; the modules follow the connections the messages go on:
``fields`` (the field types, the base class), ``common`` (every connection: hello, error,
ping, bye), ``signalling`` (peer <-> server, and the mailbox), ``direct`` (peer <-> peer:
msg, ack), ``groups`` (the roster a group message carries), ``files`` (the file frames).
"""

from __future__ import annotations

from typing import Final, TypeAlias

from .common import (
    Auth,
    Bye,
    Challenge,
    Error,
    Hello,
    Ping,
    Pong,
    Proceed,
    Reverse,
    StartTls,
    Welcome,
)
from .direct import MAX_ACK_IDS, Ack, Msg
from .fields import (
    MAX_TIME,
    MESSAGE_ID_PATTERN,
    NAME_PATTERN,
    Address,
    Base64,
    Host,
    MessageId,
    Port,
    Reason,
    Sealed,
    Timestamp,
    Token,
    UserName,
    Version,
)
from .files import (
    FILE_FRAMES,
    MAX_FILE_DATA,
    MAX_FILE_WINDOW,
    MIN_FILE_WINDOW,
    FileAccept,
    FileAck,
    FileData,
    FileDone,
    FileFrame,
    FileOffset,
    FileStop,
)
from .groups import (
    GROUP_ID_PATTERN,
    MAX_GROUP_NAME,
    MAX_ROSTER_MEMBERS,
    GroupChange,
    GroupId,
    GroupNote,
    Roster,
)
from .signalling import (
    Accept,
    Accepted,
    Cancel,
    Cancelled,
    Collect,
    Deposit,
    Invite,
    Invited,
    Key,
    ListUsers,
    Mail,
    MailItem,
    Ok,
    Presence,
    PunchNote,
    PunchRequest,
    PunchStep,
    Receipt,
    Refuse,
    Refused,
    Relay,
    Relaying,
    RelayOffer,
    RelayRequest,
    RelayTicket,
    Ringing,
    Settle,
    Users,
    Watch,
    Whois,
)

__all__ = [
    "FILE_FRAMES",
    "GROUP_ID_PATTERN",
    "MAX_ACK_IDS",
    "MAX_FILE_DATA",
    "MAX_FILE_WINDOW",
    "MAX_GROUP_NAME",
    "MAX_ROSTER_MEMBERS",
    "MAX_TIME",
    "MESSAGE_ID_PATTERN",
    "MIN_FILE_WINDOW",
    "NAME_PATTERN",
    "REQUEST_TYPES",
    "Accept",
    "Accepted",
    "Ack",
    "Address",
    "Auth",
    "Base",
    "Base64",
    "Bye",
    "Cancel",
    "Cancelled",
    "Challenge",
    "Collect",
    "Deposit",
    "Error",
    "FileAccept",
    "FileAck",
    "FileData",
    "FileDone",
    "FileFrame",
    "FileOffset",
    "FileStop",
    "GroupChange",
    "GroupId",
    "GroupNote",
    "Hello",
    "Host",
    "Invite",
    "Invited",
    "Key",
    "ListUsers",
    "Mail",
    "MailItem",
    "MessageId",
    "Msg",
    "Ok",
    "Ping",
    "Pong",
    "Port",
    "Presence",
    "Proceed",
    "PunchNote",
    "PunchRequest",
    "PunchStep",
    "Reason",
    "Receipt",
    "Refuse",
    "Refused",
    "Relay",
    "RelayOffer",
    "RelayRequest",
    "RelayTicket",
    "Relaying",
    "Request",
    "Reverse",
    "Ringing",
    "Roster",
    "Sealed",
    "Settle",
    "StartTls",
    "Timestamp",
    "Token",
    "UserName",
    "Users",
    "Version",
    "Watch",
    "Welcome",
    "Whois",
    "WireMessage",
]


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
