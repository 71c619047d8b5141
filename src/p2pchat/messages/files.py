"""The frames of file transfers between two peers, on a talk's connection beside the chat
(the offer itself is a chat message; see ``peering/files.py``). ``docs/protocol.md``
("Files") says how they go."""

from __future__ import annotations

from typing import Annotated, Final, TypeAlias

import msgspec

from .fields import Base, MessageId, Reason

__all__ = [
    "FILE_FRAMES",
    "MAX_FILE_DATA",
    "MAX_FILE_WINDOW",
    "MIN_FILE_WINDOW",
    "FileAccept",
    "FileAck",
    "FileData",
    "FileDone",
    "FileFrame",
    "FileOffset",
    "FileStop",
]

FileOffset: TypeAlias = Annotated[int, msgspec.Meta(ge=0, le=2**62)]
"""A position in a file, in bytes."""
MAX_FILE_DATA: Final = 63 * 1024
"""File bytes in one ``file_data`` frame at most: with its id and offset it fits the
default frame limit (64 KiB). ``file_data`` is the one binary frame (``protocol.py``)."""


MIN_FILE_WINDOW: Final = 64 * 1024
MAX_FILE_WINDOW: Final = 256 * 1024 * 1024


class FileAccept(Base, tag="file_accept", frozen=True):
    """The recipient takes file ``id``: send it from ``offset`` (what it has stored and
    synced; 0 the first time), at most ``window`` bytes ahead of its acknowledgements.
    Sent again at each talk until the file is complete."""

    id: MessageId
    offset: FileOffset
    window: Annotated[int, msgspec.Meta(ge=MIN_FILE_WINDOW, le=MAX_FILE_WINDOW)]
    """Bytes the sender may have unacknowledged at most (the recipient holds them)."""


class FileData(Base, tag="file_data", frozen=True):
    """Bytes of file ``id`` from ``offset``, in order, never past the window."""

    id: MessageId
    offset: FileOffset
    data: Annotated[bytes, msgspec.Meta(min_length=1, max_length=MAX_FILE_DATA)]


class FileAck(Base, tag="file_ack", frozen=True):
    """The recipient has stored and synced file ``id`` up to ``offset``."""

    id: MessageId
    offset: FileOffset


class FileDone(Base, tag="file_done", frozen=True):
    """The recipient has the whole file ``id``, its SHA-256 checked, in place."""

    id: MessageId


class FileStop(Base, tag="file_stop", frozen=True):
    """Transfer ``id`` ends without the file: ``code`` says why (``refused``,
    ``cancelled``, ``unsafe_name``, ``too_large``, ``size_mismatch``, ``hash_mismatch``,
    ``failed``)."""

    id: MessageId
    code: Annotated[str, msgspec.Meta(max_length=32)]
    reason: Reason = ""


FileFrame: TypeAlias = FileAccept | FileData | FileAck | FileDone | FileStop
FILE_FRAMES: Final = (FileAccept, FileData, FileAck, FileDone, FileStop)
"""The frames of file transfers, carried on a conversation's connection."""
