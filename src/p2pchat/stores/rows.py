"""How messages and groups lie in the peer's SQLite tables: the columns, and rows to and
from ``Message`` and ``GroupRecord``; and what the store's parts need of the database
(shared by ``sqlite.py``, ``sqlite_groups.py`` and ``sqlite_search.py``)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol, TypeVar

from ..store import GroupRecord, Message

__all__ = [
    "COPY_COLUMNS",
    "MESSAGE_COLUMNS",
    "SHIP_IF_ALL",
    "SQL_CHUNK",
    "Database",
    "group_from_row",
    "message_from_row",
    "message_row",
]

T = TypeVar("T")


class Database(Protocol):
    """What the store's parts need of ``SqliteDatabase``."""

    async def write(self, job: Callable[[sqlite3.Connection], T], *, durable: bool = True) -> T: ...
    async def fetch(self, sql: str, parameters: Sequence[object] = ()) -> list[Any]: ...
    async def read(self, job: Callable[[sqlite3.Connection], T], *, alone: bool = False) -> T: ...


MESSAGE_COLUMNS: Final = (
    "id, sender, recipient, body, sent_at, shipped, group_id, group_version, notice"
)
SQL_CHUNK: Final = 500  # ids per IN (...) query, well under SQLite's variable limit
COPY_COLUMNS: Final = (
    "m.seq, m.id, m.sender, d.member, m.body, m.sent_at, 0, m.group_id, m.group_version, m.notice"
)
"""A group message of ours as the copy for one member (``d``: its delivery row)."""


def message_from_row(row: Sequence[object]) -> Message:
    message_id, sender, recipient, body, sent_at, shipped, group, version, notice = row
    return Message(
        id=str(message_id),
        sender=str(sender),
        recipient=str(recipient),
        body=str(body),
        sent_at=float(sent_at),  # type: ignore[arg-type]
        shipped=bool(shipped),
        group=None if group is None else str(group),
        group_version=int(version),  # type: ignore[call-overload]
        notice=str(notice),
    )


SHIP_IF_ALL: Final = (
    "UPDATE messages SET shipped = 1 WHERE {where} AND group_id IS NOT NULL AND shipped = 0"
    " AND NOT EXISTS (SELECT 1 FROM group_deliveries d"
    "  WHERE d.message_seq = messages.seq AND d.shipped = 0)"
)
"""Our group messages (``where``) every member of which has stored them: shipped."""


def group_from_row(row: Sequence[object]) -> GroupRecord:
    group_id, name, admin, members, version, roster, active, announced = row
    return GroupRecord(
        id=str(group_id),
        name=str(name),
        admin=str(admin),
        members=tuple(json.loads(str(members))),
        version=int(version),  # type: ignore[call-overload]
        roster=str(roster),
        active=bool(active),
        announced=bool(announced),
    )


def message_row(
    message: Message, unread: int, *, shipped: bool | None = None
) -> tuple[object, ...]:
    m = message
    done = m.shipped if shipped is None else shipped
    return (
        m.id,
        m.sender,
        m.recipient,
        m.body,
        m.sent_at,
        int(done),
        m.group,
        m.group_version,
        m.notice,
        unread,
    )
