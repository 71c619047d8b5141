"""The group tables of the peer's SQLite store (``GroupTables``, a part of
``SqliteMessageStore``): the groups kept, every roster, and one delivery state per member
for each group message of ours (``schema/messages-6.sql``)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence

from ..store import GroupRecord, Message
from .rows import (
    MESSAGE_COLUMNS,
    SHIP_IF_ALL,
    Database,
    group_from_row,
    message_from_row,
    message_row,
)

__all__ = ["GroupTables"]


class GroupTables:
    """The group methods of ``MessageStore`` over the store's database."""

    def _tables(self) -> Database:
        """The database the tables are in (the store's)."""
        raise NotImplementedError

    async def save_group(self, group: GroupRecord) -> None:
        def job(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO groups (id, name, admin, members, version, roster, active, announced)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
                " name = excluded.name, admin = excluded.admin, members = excluded.members,"
                " version = excluded.version, roster = excluded.roster,"
                " active = excluded.active, announced = excluded.announced",
                (
                    group.id,
                    group.name,
                    group.admin,
                    json.dumps(list(group.members)),
                    group.version,
                    group.roster,
                    int(group.active),
                    int(group.announced),
                ),
            )
            db.execute(
                "INSERT OR IGNORE INTO group_rosters (group_id, version, roster) VALUES (?, ?, ?)",
                (group.id, group.version, group.roster),
            )

        await self._tables().write(job)

    async def groups(self) -> list[GroupRecord]:
        rows = await self._tables().fetch(
            "SELECT id, name, admin, members, version, roster, active, announced"
            " FROM groups ORDER BY seq"
        )
        return [group_from_row(row) for row in rows]

    async def group_roster(self, group: str, version: int) -> str | None:
        rows = await self._tables().fetch(
            "SELECT roster FROM group_rosters WHERE group_id = ? AND version = ?",
            (group, version),
        )
        return str(rows[0][0]) if rows else None

    async def add_group_messages(self, messages: Sequence[Message], members: Iterable[str]) -> None:
        others = list(members)
        if not messages:
            return

        def job(db: sqlite3.Connection) -> None:
            for m in messages:
                known = db.execute(
                    "SELECT 1 FROM messages WHERE id = ? AND sender = ?", (m.id, m.sender)
                ).fetchone()
                if known is not None:
                    continue
                cursor = db.execute(
                    f"INSERT INTO messages ({MESSAGE_COLUMNS}, unread)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    message_row(m, 0, shipped=not others),
                )
                db.executemany(
                    "INSERT INTO group_deliveries (message_seq, member) VALUES (?, ?)",
                    [(cursor.lastrowid, member) for member in others],
                )

        await self._tables().write(job)

    async def group_delivery(self, message_id: str) -> dict[str, bool]:
        rows = await self._tables().fetch(
            "SELECT d.member, d.shipped FROM group_deliveries d"
            " JOIN messages m ON m.seq = d.message_seq"
            " WHERE m.id = ? AND m.group_id IS NOT NULL ORDER BY d.member",
            (message_id,),
        )
        return {str(member): bool(shipped) for member, shipped in rows}

    async def drop_deliveries(self, group: str, member: str) -> None:
        def job(db: sqlite3.Connection) -> None:
            db.execute(
                "DELETE FROM group_deliveries WHERE member = ? AND shipped = 0 AND message_seq IN"
                " (SELECT seq FROM messages WHERE group_id = ?)",
                (member, group),
            )
            db.execute(SHIP_IF_ALL.format(where="group_id = ?"), (group,))

        await self._tables().write(job)

    async def group_history(self, group: str, *, limit: int | None = None) -> list[Message]:
        rows = await self._tables().fetch(
            f"SELECT {MESSAGE_COLUMNS} FROM ("
            f" SELECT seq, {MESSAGE_COLUMNS} FROM messages"
            "  WHERE group_id = ? ORDER BY seq DESC LIMIT ?"
            ") ORDER BY seq",
            (group, -1 if limit is None else limit),
        )
        return [message_from_row(row) for row in rows]
