"""The web page's protocol: typed JSON events over one WebSocket, both ways. No I/O here.

The page sends commands (``invite``, ``accept``, ``send``...); the peer's web server sends
events (``snapshot``, ``presence``, ``message``...). Each is a small frozen class tagged
by ``type``, validated on the way in like any wire input: a malformed or unknown command
gets an ``error`` event and changes nothing. ``docs/web-protocol.md`` lists them all.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal, TypeAlias

import msgspec

from .. import shown_text
from ..messages import NAME_PATTERN
from ..store import Message

__all__ = ["Command", "Event", "decode_command", "encode_event", "encode_messages"]

Name: TypeAlias = Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=NAME_PATTERN)]
Id: TypeAlias = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Body: TypeAlias = Annotated[str, msgspec.Meta(max_length=65536)]


class _In(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", forbid_unknown_fields=True):
    """A command from the page."""


class Invite(_In, tag="invite", frozen=True):
    user: Name
    trust: bool = False
    """Trust a changed key (only after the user said so, shown both fingerprints)."""


class Accept(_In, tag="accept", frozen=True):
    id: Id
    trust: bool = False


class Refuse(_In, tag="refuse", frozen=True):
    id: Id


class Send(_In, tag="send", frozen=True):
    user: Name
    body: Body


class Leave(_In, tag="leave", frozen=True):
    user: Name


class Open(_In, tag="open", frozen=True):
    """Show the history with ``user`` and let the page write to them (even if away)."""

    user: Name


class Refresh(_In, tag="refresh", frozen=True):
    """Ask for the online list again."""


class FileAnswer(_In, tag="file_answer", frozen=True):
    """Accept (into the page's downloads directory) or refuse the file offered as ``id``."""

    id: Id
    accept: bool


class FileCancel(_In, tag="file_cancel", frozen=True):
    """Stop transfer ``id``, either way."""

    id: Id


Command: TypeAlias = (
    Invite | Accept | Refuse | Send | Leave | Open | Refresh | FileAnswer | FileCancel
)


class WebMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A chat message as the page shows it."""

    id: str
    sender: str
    recipient: str
    body: str
    sent_at: float
    shipped: bool

    @classmethod
    def of(cls, message: Message) -> WebMessage:
        return cls(
            id=message.id,
            sender=message.sender,
            recipient=message.recipient,
            body=shown_text(message.body),  # a file offer: one line saying so
            sent_at=message.sent_at,
            shipped=message.shipped,
        )


class InvitationInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    sender: str
    fingerprint: str


class TalkInfo(msgspec.Struct, frozen=True, kw_only=True):
    user: str
    live: bool
    """A conversation is open (else: the history, and writing goes by mail)."""
    route: str = ""
    """``direct`` or ``relay`` while live."""
    via: str = ""
    """How it was made: ``dialled``, ``reversed``, ``punched`` or ``relayed``."""
    history: list[WebMessage] = []
    older: bool = False
    """Older messages are in the store than ``history`` holds (it is bounded in bytes)."""
    unread: int = 0
    """Messages that came while no page was open."""


class FileInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A file transfer as the page shows it: ``state`` as ``Transfer.state``; ``download``:
    where the page gets a received file (once done), relative to the page."""

    id: str
    user: str
    name: str
    size: int
    done: int
    state: str
    outgoing: bool
    error: str = ""
    download: str = ""


class _Out(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """An event for the page."""


class Snapshot(_Out, tag="snapshot", frozen=True):
    """Everything the page shows, sent when it connects."""

    name: str
    fingerprint: str
    state: str
    online: list[str]
    invitations: list[InvitationInfo]
    talks: list[TalkInfo]
    files: list[FileInfo] = []


class State(_Out, tag="state", frozen=True):
    state: str


class Presence(_Out, tag="presence", frozen=True):
    user: str
    online: bool


class Online(_Out, tag="online", frozen=True):
    users: list[str]


class Invited(_Out, tag="invited", frozen=True):
    invitation: InvitationInfo


class InvitationGone(_Out, tag="invitation_gone", frozen=True):
    id: str
    reason: str


class Outcome(_Out, tag="outcome", frozen=True):
    """What became of an invitation sent: talking, refused, offline, timed_out, error."""

    user: str
    outcome: Literal["talking", "refused", "offline", "timed_out", "unreachable", "error"]
    reason: str = ""


class KeyChanged(_Out, tag="key_changed", frozen=True):
    """The server vouches for another key than the one remembered for ``user``."""

    user: str
    old: str
    new: str
    action: Literal["invite", "accept"]
    id: str = ""


class Talk(_Out, tag="talk", frozen=True):
    talk: TalkInfo


class TalkEnded(_Out, tag="talk_ended", frozen=True):
    user: str
    reason: str
    by_me: bool = False
    """This peer ended it (from a page), rather than the other side or the network."""


class NewMessage(_Out, tag="message", frozen=True):
    user: str
    """The other user of the conversation the message belongs to."""
    message: WebMessage
    mail: bool = False
    """It came through the mailbox (while no conversation was open)."""


class Shipped(_Out, tag="shipped", frozen=True):
    user: str
    ids: list[str]


class Route(_Out, tag="route", frozen=True):
    """A talk moved onto another route (a relayed one that went direct)."""

    user: str
    route: str
    via: str


class FileUpdate(_Out, tag="file", frozen=True):
    """A file offered, or a transfer that moved on or ended."""

    file: FileInfo


class Error(_Out, tag="error", frozen=True):
    reason: str


Event: TypeAlias = (
    Snapshot
    | State
    | Presence
    | Online
    | Invited
    | InvitationGone
    | Outcome
    | KeyChanged
    | Talk
    | TalkEnded
    | NewMessage
    | Shipped
    | Route
    | FileUpdate
    | Error
)

_decoder: Final = msgspec.json.Decoder(Command)
_encoder: Final = msgspec.json.Encoder()


def decode_command(data: str | bytes) -> Command:
    """Parse one command; msgspec.ValidationError / DecodeError say what is wrong."""
    try:
        command: Command = _decoder.decode(data)
    except RecursionError:  # msgspec's own bound on nesting, on [[[[... from a page
        raise msgspec.DecodeError("nested too deeply") from None
    return command


def encode_event(event: Event) -> str:
    return _encoder.encode(event).decode()


def encode_messages(messages: list[WebMessage]) -> bytes:
    """``messages`` as the JSON an event carries them in (to measure them)."""
    return _encoder.encode(messages)
