"""The chat's own messages between two peers in a talk (direct or relayed): ``msg`` and
``ack``. ``docs/protocol.md`` ("Direct connection between two peers") says how they go."""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

from .fields import Base, MessageId, Timestamp
from .groups import GroupNote

__all__ = ["MAX_ACK_IDS", "Ack", "Msg"]

MAX_ACK_IDS: Final = 512
"""Ids a sender puts in one ``ack``: 512 ids of 64 characters make about 34 KiB, under the
default frame limit (64 KiB); a longer acknowledgement goes as several acks. A receiver
takes up to 4096 (what fits a larger frame)."""


class Msg(Base, tag="msg", frozen=True):
    """One chat message. ``id`` is globally unique; ``ts`` is the sender's clock;
    ``group`` is set for a group message (one copy to each member)."""

    id: MessageId
    ts: Timestamp
    body: str
    group: GroupNote | None = None


class Ack(Base, tag="ack", frozen=True):
    """The receiver has stored these messages durably (``MAX_ACK_IDS`` at most per ack)."""

    ids: Annotated[list[MessageId], msgspec.Meta(max_length=4096)]
