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
from ..messages import NAME_PATTERN, Timestamp
from ..store import Message

__all__ = ["Command", "Event", "decode_command", "encode_event", "encode_messages"]

Name: TypeAlias = Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=NAME_PATTERN)]
Id: TypeAlias = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Body: TypeAlias = Annotated[str, msgspec.Meta(max_length=65536)]
Text: TypeAlias = Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]
GroupName: TypeAlias = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
"""Checked again by the peer (its own bound on a group's name): this one bounds the event."""
Members: TypeAlias = Annotated[list[Name], msgspec.Meta(max_length=1024)]


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


class Search(_In, tag="search", frozen=True):
    """Find the messages whose body answers ``text`` (the rules of ``Peer.search``)."""

    text: Text


class Position(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where a message stands in its talk's order (``sent_at``, ``id``, ``sender``)."""

    id: Id
    sender: Name
    sent_at: Timestamp


class Older(_In, tag="older", frozen=True):
    """The messages with ``user`` just before ``before`` (the first one the page holds)."""

    user: Name
    before: Position


class FileAnswer(_In, tag="file_answer", frozen=True):
    """Accept (into the page's downloads directory) or refuse the file offered as ``id``."""

    id: Id
    accept: bool


class FileCancel(_In, tag="file_cancel", frozen=True):
    """Stop transfer ``id``, either way."""

    id: Id


class CreateGroup(_In, tag="create_group", frozen=True):
    """Make a group of this peer and ``members`` (other users' names); it is its admin."""

    name: GroupName
    members: Members


class OpenGroup(_In, tag="open_group", frozen=True):
    """Show the group ``group`` (its id) with its history."""

    group: Id


class GroupSend(_In, tag="group_send", frozen=True):
    group: Id
    body: Body


class GroupAdd(_In, tag="group_add", frozen=True):
    """Add ``user`` to the group (its admin only)."""

    group: Id
    user: Name


class GroupRemove(_In, tag="group_remove", frozen=True):
    """Remove ``user`` from the group (its admin only)."""

    group: Id
    user: Name


class GroupLeave(_In, tag="group_leave", frozen=True):
    """Leave the group for good."""

    group: Id


GroupCommand: TypeAlias = CreateGroup | OpenGroup | GroupSend | GroupAdd | GroupRemove | GroupLeave
Command: TypeAlias = (
    Invite
    | Accept
    | Refuse
    | Send
    | Leave
    | Open
    | Refresh
    | Search
    | Older
    | FileAnswer
    | FileCancel
    | GroupCommand
)


class WebMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A chat message as the page shows it."""

    id: str
    sender: str
    recipient: str
    body: str
    sent_at: float
    shipped: bool
    group: str | None = None
    """The id of the group it was sent in; None one-to-one."""
    notice: str = ""
    """In a group: ``change`` (its admin changed who is in it) or ``leave`` (its sender
    left it); ``body`` says so in words. Empty for a message someone wrote."""

    @classmethod
    def of(cls, message: Message) -> WebMessage:
        return cls(
            id=message.id,
            sender=message.sender,
            recipient=message.recipient,
            # A file offer: one line saying so (a group's body is shown as it came: no
            # file goes to a group, whatever a member writes).
            body=shown_text(message.body) if message.group is None else message.body,
            sent_at=message.sent_at,
            shipped=message.shipped,
            group=message.group,
            notice=message.notice,
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


class GroupInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    admin: str
    members: list[str]
    """Its members now, this peer included while it is one."""
    member: bool = True
    """This peer is still in it (else: removed, or left; its history stays)."""
    history: list[WebMessage] = []
    older: bool = False
    """Older messages are in the store than ``history`` holds (as each group is listed
    after a ``snapshot``, it holds none: the page asks with ``open_group``)."""
    unread: int = 0


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


class Match(msgspec.Struct, frozen=True, kw_only=True):
    """A message a search found, in the talk with ``user`` or, ``group`` set (its id), in
    that group's, named ``group_name`` (``user``: its sender then); ``marks``: what
    matched, as [start, end) offsets in the body's UTF-16 code units (JavaScript's string
    indexes)."""

    user: str
    message: WebMessage
    marks: list[tuple[int, int]]
    group: str = ""
    group_name: str = ""


class Found(_Out, tag="found", frozen=True):
    """The answer to ``search``: the newest matches first; ``reason`` if the text cannot
    be read as a search."""

    text: str
    matches: list[Match] = []
    reason: str = ""


class History(_Out, tag="history", frozen=True):
    """The answer to ``older``: the messages just before, oldest first; ``older``: the
    store holds more before them."""

    user: str
    messages: list[WebMessage]
    older: bool


class Route(_Out, tag="route", frozen=True):
    """A talk moved onto another route (a relayed one that went direct)."""

    user: str
    route: str
    via: str


class FileUpdate(_Out, tag="file", frozen=True):
    """A file offered, or a transfer that moved on or ended."""

    file: FileInfo


class GroupEvent(_Out, tag="group", frozen=True):
    """A group to show: made here, this peer added to it, or ``open_group`` answered."""

    group: GroupInfo
    focus: bool = False
    """Show it now (this page asked for it, or made it)."""
    added: bool = False
    """Another member (its admin) has just added this peer to it."""


class GroupMembers(_Out, tag="group_members", frozen=True):
    """Who is in the group now; ``member``: this peer still is."""

    group: str
    admin: str
    members: list[str]
    member: bool


class GroupMessage(_Out, tag="group_message", frozen=True):
    """A message in a group, received or sent."""

    group: str
    message: WebMessage


class GroupShipped(_Out, tag="group_shipped", frozen=True):
    """Every member (as the group was when each was sent) has stored these."""

    group: str
    ids: list[str]


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
    | Found
    | History
    | Route
    | FileUpdate
    | GroupEvent
    | GroupMembers
    | GroupMessage
    | GroupShipped
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
