"""The exceptions p2pchat raises, all under one root.

::

    P2PChatError
    ├── ProtocolError              bytes or messages that break the wire protocol
    │   ├── FrameTooLarge          a frame longer than the limit
    │   └── RemoteProtocolError    the other side told us we broke the protocol
    ├── ConnectionClosed           the connection ended
    │   └── ConversationClosed     the conversation ended; nothing more to send or read
    ├── ServerRefused              the signalling server answered a request with an error
    │   ├── AuthenticationError    that name belongs to another key, or the proof was wrong
    │   ├── NameTaken              that name is logged in already
    │   ├── UnknownUser            the server has never seen that name
    │   ├── UserOffline            that user is known but not logged in
    │   ├── InvitationGone         the invitation was cancelled, expired or answered
    │   ├── RateLimited            too many requests too fast
    │   ├── ServerBusy             too many connections at once; try again later
    │   ├── TooManyConnections     too many connections from one address
    │   ├── TooManyInvitations     too many invitations pending for that user
    │   ├── MailboxFull            the recipient's mailbox holds as much as it may
    │   ├── ItemTooLarge           a sealed item over the server's size limit
    │   ├── RelayUnavailable       the server cannot relay now (its relay limits)
    │   └── ServerUnavailable      the server cannot reach its shared state (Redis) now
    ├── InviteRefused              the invitee said no
    ├── InviteTimeout              no answer in time (also a TimeoutError)
    ├── PeerUnreachable            none of the peer's addresses could be dialled
    ├── KeyChanged                 a known contact now comes with another key
    ├── IdentityError              a key file that is unsafe, unreadable or not a key
    ├── InvalidName                a user name outside the rule (also a ValueError)
    │   └── InvalidGroupName       a group name too long, empty or with control characters
    ├── InvalidQuery               a search that cannot be read (also a ValueError)
    ├── GroupError                 a group operation this peer may not do
    │   ├── NotGroupMember         this peer is not (or no longer) a member of that group
    │   ├── NotGroupAdmin          only the group's admin (its creator) adds or removes
    │   ├── TooManyMembers         a group over ``max_group_members``
    │   └── TooManyGroups          a peer in more than ``max_groups`` groups
    ├── MessageTooLarge            a chat message over the size limit
    ├── SealError                  a mail item or receipt that is altered, misdirected or forged
    ├── StoreError                 a store could not be opened or is of an unknown schema
    └── TransferError              a file transfer that cannot go on
        ├── FileRefused            the recipient refused the file
        ├── TransferCancelled      either side cancelled the transfer
        ├── UnsafeFileName         a file name that is not a bare, plain name
        ├── FileTooLarge           over max_file_size, or over the free disk space
        ├── SizeMismatch           more bytes than the offer said
        ├── HashMismatch           the bytes received do not have the offered SHA-256
        └── TransferFailed         anything else: disk full, unknown transfer, ...

Errors that come from the server carry the wire ``code`` they were sent with, so that
``error_for_code(code, reason)`` can rebuild the right class on the receiving side.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ConnectionClosed",
    "ConversationClosed",
    "FileRefused",
    "FileTooLarge",
    "FrameTooLarge",
    "GroupError",
    "HashMismatch",
    "IdentityError",
    "InvalidGroupName",
    "InvalidName",
    "InvalidQuery",
    "InvitationGone",
    "InviteRefused",
    "InviteTimeout",
    "ItemTooLarge",
    "KeyChanged",
    "MailboxFull",
    "MessageTooLarge",
    "NameTaken",
    "NotGroupAdmin",
    "NotGroupMember",
    "P2PChatError",
    "PeerUnreachable",
    "ProtocolError",
    "RateLimited",
    "RelayUnavailable",
    "RemoteProtocolError",
    "SealError",
    "ServerBusy",
    "ServerRefused",
    "ServerUnavailable",
    "SizeMismatch",
    "StoreError",
    "TooManyConnections",
    "TooManyGroups",
    "TooManyInvitations",
    "TooManyMembers",
    "TransferCancelled",
    "TransferError",
    "TransferFailed",
    "UnknownUser",
    "UnsafeFileName",
    "UserOffline",
    "error_for_code",
]


class P2PChatError(Exception):
    """Root of every error p2pchat raises on purpose."""


class ProtocolError(P2PChatError):
    """Bytes or a message that break the wire protocol; the connection cannot go on."""

    code = "protocol_error"


class FrameTooLarge(ProtocolError):
    """A frame declares a length over the limit; detected before its body is read."""

    code = "frame_too_large"

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size} bytes is over the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class RemoteProtocolError(ProtocolError):
    """The other side reported that we broke the protocol (a bug on one of the two sides)."""


class ConnectionClosed(P2PChatError):
    """The connection to the server or to a peer has ended."""


class ConversationClosed(ConnectionClosed):
    """The conversation has ended: it was closed by either side or its connection dropped."""


class ServerRefused(P2PChatError):
    """The signalling server answered a request with an error."""

    code = "refused"


class AuthenticationError(ServerRefused):
    """The login was refused: the name is bound to another key, or the proof was wrong."""

    code = "authentication_failed"


class NameTaken(ServerRefused):
    """Someone is logged in with that name already; choose another or log the other out."""

    code = "name_taken"


class UnknownUser(ServerRefused):
    """The server has never seen a user of that name."""

    code = "unknown_user"


class UserOffline(ServerRefused):
    """The user is known to the server but is not logged in now."""

    code = "user_offline"


class InvitationGone(ServerRefused):
    """The invitation no longer exists: cancelled, expired or answered already."""

    code = "invitation_gone"


class RateLimited(ServerRefused):
    """Too many requests too fast; slow down (the server disconnects repeat offenders)."""

    code = "rate_limited"


class ServerBusy(ServerRefused):
    """The server has as many connections as it takes; try again a little later."""

    code = "server_busy"


class TooManyConnections(ServerRefused):
    """Your address has as many connections open as the server allows from one address."""

    code = "too_many_connections"


class TooManyInvitations(ServerRefused):
    """That user (or you) already has as many invitations pending as the server allows."""

    code = "too_many_invitations"


class MailboxFull(ServerRefused):
    """The recipient's mailbox holds as many items (or bytes) as the server allows; the
    message stays unshipped and goes at the next talk, or when the recipient has read."""

    code = "mailbox_full"


class ItemTooLarge(ServerRefused):
    """A sealed mail item over the server's size limit."""

    code = "item_too_large"


class RelayUnavailable(ServerRefused):
    """The server will not relay this conversation now: its relay limits are reached."""

    code = "relay_unavailable"


class ServerUnavailable(ServerRefused):
    """The server could not reach the state it shares with other servers (Redis) in time:
    nothing was done; try again in a moment (a peer logging in tries again by itself)."""

    code = "unavailable"


class InviteRefused(P2PChatError):
    """The invited user refused, or could not take, the invitation."""

    def __init__(self, user: str, reason: str = "") -> None:
        detail = f": {reason}" if reason else ""
        super().__init__(f"{user} refused the invitation{detail}")
        self.user = user
        self.reason = reason


class InviteTimeout(P2PChatError, TimeoutError):
    """The invited user did not answer in time; the invitation has been cancelled."""


class PeerUnreachable(P2PChatError):
    """No address of the other peer could be dialled, nor the relay used.

    ``relay_refusal`` is the server's reason for not relaying, if that is why: unlike the
    details of the addresses tried, it can be told to the other peer.
    """

    def __init__(self, message: str, *, relay_refusal: str = "") -> None:
        super().__init__(message)
        self.relay_refusal = relay_refusal


class KeyChanged(P2PChatError):
    """The server vouches for a key other than the one remembered for this contact.

    Either the contact made a new identity, or someone is posing as them. Compare the
    fingerprints with the contact by another channel before trusting the new key.
    """

    def __init__(self, user: str, old_fingerprint: str, new_fingerprint: str, new_key: str):
        super().__init__(
            f"the key of {user} changed: remembered {old_fingerprint}, now {new_fingerprint}. "
            f"Check with {user} by another channel before trusting the new key."
        )
        self.user = user
        self.old_fingerprint = old_fingerprint
        self.new_fingerprint = new_fingerprint
        self.new_key = new_key


class IdentityError(P2PChatError):
    """A key file is unsafe (readable by others), unreadable, or not a p2pchat identity."""


class InvalidName(P2PChatError, ValueError):
    """A user name outside the rule: 1 to 32 ASCII letters, digits, ``.``, ``_`` or ``-``,
    starting with a letter or digit."""


class InvalidQuery(P2PChatError, ValueError):
    """A search that cannot be read: a quote left open, a ``*`` that does not end a word,
    or no word to search for."""


class InvalidGroupName(InvalidName):
    """A group name that is empty, over ``MAX_GROUP_NAME`` UTF-8 bytes, or holds control
    characters; choose a shorter, printable name."""


class GroupError(P2PChatError):
    """A group operation this peer may not do; nothing was stored or sent."""


class NotGroupMember(GroupError):
    """This peer is not, or no longer, a member of the group (it left or was removed):
    it can read the history but not send or change anything."""


class NotGroupAdmin(GroupError):
    """Only the group's admin (its creator) adds or removes members; ask them."""


class TooManyMembers(GroupError):
    """A group would have more members than ``max_group_members`` (each message costs one
    envelope per member); make a smaller group or raise the limit."""


class TooManyGroups(GroupError):
    """This peer is in ``max_groups`` groups already; leave one or raise the limit."""


class MessageTooLarge(P2PChatError):
    """A chat message body is over the size limit; split it or raise the limit."""


class SealError(P2PChatError):
    """A mail item that does not open with our key, or is not what it claims (another
    recipient, id or sender, a bad signature), or a receipt not signed by its sender: what
    a server that alters, moves or forges mail gets. The item is refused and logged."""


class StoreError(P2PChatError):
    """A store could not be opened, or holds a schema this version does not know."""


class TransferError(P2PChatError):
    """A file transfer cannot go on; ``code`` is what the other side is told of it."""

    code = "failed"


class FileRefused(TransferError):
    """The recipient refused the file (or could not take it: too large, no room)."""

    code = "refused"


class TransferCancelled(TransferError):
    """The transfer was cancelled, by this side or the other."""

    code = "cancelled"


class UnsafeFileName(TransferError):
    """A file name that is not a bare, plain name: path parts, ``..``, control characters,
    a hidden or reserved name. Rename the file before sending it."""

    code = "unsafe_name"


class FileTooLarge(TransferError):
    """A file over ``max_file_size``, or over the free space of the chosen directory."""

    code = "too_large"


class SizeMismatch(TransferError):
    """More bytes arrived than the offer said: the transfer fails, nothing is kept."""

    code = "size_mismatch"


class HashMismatch(TransferError):
    """The bytes received do not have the SHA-256 of the offer: nothing is kept."""

    code = "hash_mismatch"


class TransferFailed(TransferError):
    """The transfer failed for another reason (a full disk, a transfer the other side does
    not know); the message says which."""

    code = "failed"


TRANSFER_ERRORS: dict[str, type[TransferError]] = {
    cls.code: cls
    for cls in (
        FileRefused,
        TransferCancelled,
        UnsafeFileName,
        FileTooLarge,
        SizeMismatch,
        HashMismatch,
        TransferFailed,
    )
}
"""The transfer errors by the code that tells the other side of them (``file_stop``)."""


_BY_CODE: dict[str, type[ServerRefused]] = {
    cls.code: cls
    for cls in (
        AuthenticationError,
        NameTaken,
        UnknownUser,
        UserOffline,
        InvitationGone,
        RateLimited,
        ServerBusy,
        TooManyConnections,
        TooManyInvitations,
        MailboxFull,
        ItemTooLarge,
        RelayUnavailable,
        ServerUnavailable,
    )
}


def error_for_code(code: str, reason: str) -> P2PChatError:
    """Rebuild the exception the server meant by an ``error`` message."""
    if code in (ProtocolError.code, FrameTooLarge.code):
        return RemoteProtocolError(reason)
    return _BY_CODE.get(code, ServerRefused)(reason)
