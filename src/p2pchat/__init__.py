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
    FileRefused,
    FileTooLarge,
    FrameTooLarge,
    HashMismatch,
    IdentityError,
    InvalidName,
    InvalidQuery,
    InvitationGone,
    InviteRefused,
    InviteTimeout,
    ItemTooLarge,
    KeyChanged,
    MailboxFull,
    MessageTooLarge,
    NameTaken,
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
    SizeMismatch,
    StoreError,
    TooManyConnections,
    TooManyInvitations,
    TransferCancelled,
    TransferError,
    TransferFailed,
    UnknownUser,
    UnsafeFileName,
    UserOffline,
)
from .peer import (
    Conversation,
    FileOffer,
    Invitation,
    Peer,
    Transfer,
    check_file_name,
    shown_text,
)
from .protocol import DEFAULT_MAX_FRAME, DEFAULT_PORT, PROTOCOL_VERSION, check_name
from .server import SignallingServer
from .shared.identity import Identity, fingerprint, tls13_only
from .shared.sockets import format_address
from .store import (
    Binding,
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
from .stores.search import search_spans
from .stores.sqlite import SqliteMessageStore
from .stores.sqlite_server import SqliteMailbox, SqliteUserStore
from .stores.transfers import (
    MemoryTransferStore,
    SqliteTransferStore,
    TransferRecord,
    TransferStore,
)

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
    "FileOffer",
    "FileRefused",
    "FileTooLarge",
    "FrameTooLarge",
    "HashMismatch",
    "Identity",
    "IdentityError",
    "InvalidName",
    "InvalidQuery",
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
    "MemoryTransferStore",
    "MemoryUserStore",
    "Message",
    "MessageStore",
    "MessageTooLarge",
    "NameTaken",
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
    "SizeMismatch",
    "SqliteMailbox",
    "SqliteMessageStore",
    "SqliteTransferStore",
    "SqliteUserStore",
    "StoreError",
    "TooManyConnections",
    "TooManyInvitations",
    "Transfer",
    "TransferCancelled",
    "TransferError",
    "TransferFailed",
    "TransferRecord",
    "TransferStore",
    "UnknownUser",
    "UnsafeFileName",
    "UserOffline",
    "UserRecord",
    "UserStore",
    "__version__",
    "check_file_name",
    "check_name",
    "fingerprint",
    "format_address",
    "search_spans",
    "shown_text",
    "tls13_only",
]
