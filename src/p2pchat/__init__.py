"""p2pchat: peer-to-peer chat on asyncio.

A signalling server knows who is online and passes invitations; peers then talk over
direct connections and keep their own history. Everything the two commands do is here::

    import p2pchat

    async with p2pchat.SignallingServer(port=0) as server:
        async with p2pchat.Peer("alice", server=("127.0.0.1", server.port)) as alice:
            names = await alice.online()  # ["alice"]
"""

from __future__ import annotations

from .errors import (
    AuthenticationError,
    ConnectionClosed,
    ConversationClosed,
    FrameTooLarge,
    GroupError,
    IdentityError,
    InvalidGroupName,
    InvalidName,
    InvitationGone,
    InviteRefused,
    InviteTimeout,
    ItemTooLarge,
    KeyChanged,
    MailboxFull,
    MessageTooLarge,
    NameTaken,
    NotGroupAdmin,
    NotGroupMember,
    P2PChatError,
    PeerUnreachable,
    ProtocolError,
    RateLimited,
    RelayUnavailable,
    RemoteProtocolError,
    SealError,
    ServerBusy,
    ServerRefused,
    ServerUnavailable,
    StoreError,
    TooManyConnections,
    TooManyGroups,
    TooManyInvitations,
    TooManyMembers,
    UnknownUser,
    UserOffline,
)
from .peer import Conversation, Group, Invitation, Peer
from .protocol import DEFAULT_MAX_FRAME, DEFAULT_PORT, PROTOCOL_VERSION, check_name
from .server import SignallingServer
from .shared.identity import Identity, fingerprint, tls13_only
from .shared.sockets import format_address
from .store import (
    Binding,
    GroupRecord,
    Mailbox,
    MailboxItem,
    MemoryMailbox,
    MemoryUserStore,
    Message,
    MessageStore,
    UserRecord,
    UserStore,
)
from .stores.memory import MemoryMessageStore
from .stores.sqlite import SqliteMessageStore
from .stores.sqlite_server import SqliteMailbox, SqliteUserStore

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MAX_FRAME",
    "DEFAULT_PORT",
    "PROTOCOL_VERSION",
    "AuthenticationError",
    "Binding",
    "ConnectionClosed",
    "Conversation",
    "ConversationClosed",
    "FrameTooLarge",
    "Group",
    "GroupError",
    "GroupRecord",
    "Identity",
    "IdentityError",
    "InvalidGroupName",
    "InvalidName",
    "Invitation",
    "InvitationGone",
    "InviteRefused",
    "InviteTimeout",
    "ItemTooLarge",
    "KeyChanged",
    "Mailbox",
    "MailboxFull",
    "MailboxItem",
    "MemoryMailbox",
    "MemoryMessageStore",
    "MemoryUserStore",
    "Message",
    "MessageStore",
    "MessageTooLarge",
    "NameTaken",
    "NotGroupAdmin",
    "NotGroupMember",
    "P2PChatError",
    "Peer",
    "PeerUnreachable",
    "ProtocolError",
    "RateLimited",
    "RelayUnavailable",
    "RemoteProtocolError",
    "SealError",
    "ServerBusy",
    "ServerRefused",
    "ServerUnavailable",
    "SignallingServer",
    "SqliteMailbox",
    "SqliteMessageStore",
    "SqliteUserStore",
    "StoreError",
    "TooManyConnections",
    "TooManyGroups",
    "TooManyInvitations",
    "TooManyMembers",
    "UnknownUser",
    "UserOffline",
    "UserRecord",
    "UserStore",
    "__version__",
    "check_name",
    "fingerprint",
    "format_address",
    "tls13_only",
]
