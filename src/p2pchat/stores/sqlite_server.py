"""The SQLite backends of the server's stores: users (with their keys and presence) and
the mailbox. The commands' defaults; a peer's message store is in ``sqlite.py``.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Collection, Iterable
from pathlib import Path

from ..store import (
    Binding,
    Mailbox,
    MailboxItem,
    MemoryMailbox,
    MemoryUserStore,
    UserRecord,
    UserStore,
    check_room,
)
from .sqlite import SqliteStore

__all__ = ["SqliteMailbox", "SqliteUserStore", "mailbox_for"]

logger = logging.getLogger(__name__)


class SqliteUserStore(SqliteStore):
    """UserStore in an SQLite file (WAL mode).

    ``synchronous = NORMAL``: presence is rebuilt from who reconnects, and a login lost to
    a power cut is only a first-seen date; no fsync per login.
    """

    KIND = "users"
    VERSION = 4
    SYNCHRONOUS = "NORMAL"

    async def reset_presence(self) -> None:
        def job(db: sqlite3.Connection) -> None:
            db.execute("UPDATE users SET online = 0 WHERE online = 1")

        await self._database.write(job)

    async def set_online(self, name: str, addresses: list[tuple[str, int]], *, now: float) -> None:
        encoded = json.dumps(addresses)

        def job(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO users (name, addresses, online, first_seen, last_seen)"
                " VALUES (?, ?, 1, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET addresses = excluded.addresses,"
                " online = 1, last_seen = excluded.last_seen",
                (name, encoded, now, now),
            )

        await self._database.write(job)

    async def set_offline(self, name: str, *, now: float) -> None:
        def job(db: sqlite3.Connection) -> None:
            db.execute("UPDATE users SET online = 0, last_seen = ? WHERE name = ?", (now, name))

        await self._database.write(job)

    async def get(self, name: str) -> UserRecord | None:
        rows = await self._database.fetch(
            "SELECT name, addresses, online, first_seen, last_seen, key, mailbox_key, mailbox_sig"
            " FROM users WHERE name = ?",
            (name,),
        )
        if not rows:
            return None
        name, addresses, online, first_seen, last_seen, key, mailbox_key, mailbox_sig = rows[0]
        return UserRecord(
            name=name,
            addresses=[(str(host), int(port)) for host, port in json.loads(addresses)],
            online=bool(online),
            first_seen=first_seen,
            last_seen=last_seen,
            key=key,
            mailbox_key=mailbox_key,
            mailbox_sig=mailbox_sig,
        )

    async def set_mailbox_key(self, name: str, mailbox_key: str, signature: str) -> None:
        def job(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE users SET mailbox_key = ?, mailbox_sig = ? WHERE name = ?",
                (mailbox_key, signature, name),
            )

        await self._database.write(job)

    async def bind_key(
        self,
        name: str,
        key: str,
        *,
        now: float,
        create: bool = True,
        mailbox: tuple[str, str] | None = None,
    ) -> Binding | None:
        mailbox_key, mailbox_sig = mailbox if mailbox is not None else (None, None)

        def job(db: sqlite3.Connection) -> Binding | None:
            # In the write transaction: nobody registers a name between look-up and insert.
            cursor = db.execute(
                "SELECT name, key, mailbox_key, mailbox_sig FROM users"
                " WHERE name = ? COLLATE NOCASE",
                (name,),
            )
            row = cursor.fetchone()
            if row is None:
                if not create:
                    return None
                db.execute(
                    "INSERT INTO users (name, first_seen, last_seen, key, mailbox_key,"
                    " mailbox_sig) VALUES (?, ?, ?, ?, ?, ?)",
                    (name, now, now, key, mailbox_key, mailbox_sig),
                )
                return Binding(
                    name=name,
                    key=key,
                    created=True,
                    mailbox_key=mailbox_key,
                    mailbox_sig=mailbox_sig,
                )
            registered, bound, published, signature = str(row[0]), row[1], row[2], row[3]
            if bound is None:  # a user from before identities: the first key binds it
                if not create:
                    return None  # (as a new name is: by a login that may, all checked)
                db.execute(
                    "UPDATE users SET key = ?, mailbox_key = ?, mailbox_sig = ? WHERE name = ?",
                    (key, mailbox_key, mailbox_sig, registered),
                )
                bound, published, signature = key, mailbox_key, mailbox_sig
            return Binding(
                name=registered, key=str(bound), mailbox_key=published, mailbox_sig=signature
            )

        return await self._database.write(job)

    async def online(self, *, limit: int | None = None) -> list[str]:
        rows = await self._database.fetch(
            "SELECT name FROM users WHERE online = 1 ORDER BY name LIMIT ?",
            (-1 if limit is None else limit,),
        )
        return [row[0] for row in rows]


_ITEM_COLUMNS = "recipient, item, kind, sender, sealed, at, expires"


class SqliteMailbox(SqliteStore):
    """Mailbox in an SQLite file (WAL mode).

    ``synchronous = FULL``: a sender that was told its item is kept does not deposit it
    again, so a kept item must survive a power cut.
    """

    KIND = "mailbox"
    VERSION = 1
    SYNCHRONOUS = "FULL"

    @staticmethod
    def beside(path: str | Path) -> Path:
        """Where a server keeps its mailbox next to its user store at ``path``."""
        path = Path(path)
        return path.with_name(f"{path.stem}-mailbox{path.suffix or '.sqlite3'}")

    async def deposit(
        self,
        item: MailboxItem,
        *,
        max_items: int | None,
        max_bytes: int | None,
        max_sender_items: int | None = None,
        max_sender_bytes: int | None = None,
    ) -> bool:
        def job(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "SELECT count(*), coalesce(sum(length(sealed)), 0), sum(item = ?),"
                " coalesce(sum(sender = ?), 0),"
                " coalesce(sum(CASE WHEN sender = ? THEN length(sealed) END), 0)"
                " FROM items WHERE recipient = ?",
                (item.item, item.sender, item.sender, item.recipient),
            )
            row = cursor.fetchone()
            assert row is not None
            count, used, known, mine, mine_bytes = (int(v or 0) for v in row)
            if known:
                return False
            check_room(item, count, used, max_items=max_items, max_bytes=max_bytes)
            check_room(
                item,
                mine,
                mine_bytes,
                max_items=max_sender_items,
                max_bytes=max_sender_bytes,
                share=True,
            )
            db.execute(
                f"INSERT INTO items ({_ITEM_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    item.recipient,
                    item.item,
                    item.kind,
                    item.sender,
                    item.sealed,
                    item.at,
                    item.expires,
                ),
            )
            return True

        return await self._database.write(job)

    async def pending(
        self,
        recipient: str,
        *,
        now: float,
        limit: int,
        max_bytes: int,
        skip: Collection[str] = (),
    ) -> tuple[list[MailboxItem], bool]:
        rows = await self._database.fetch(
            f"SELECT {_ITEM_COLUMNS} FROM items WHERE recipient = ? AND expires > ?"
            " ORDER BY seq LIMIT ?",
            (recipient, now, limit + 1 + len(skip)),  # those skipped are among the first
        )
        rows = [row for row in rows if row[1] not in skip]
        page: list[MailboxItem] = []
        size = 0
        for row in rows[:limit]:
            item = MailboxItem(
                recipient=row[0],
                item=row[1],
                kind=row[2],
                sender=row[3],
                sealed=row[4],
                at=row[5],
                expires=row[6],
            )
            if page and size + len(item.sealed) > max_bytes:
                return page, True
            page.append(item)
            size += len(item.sealed)
        return page, len(rows) > len(page)

    async def remove(self, recipient: str, items: Iterable[str]) -> int:
        rows = [(recipient, item) for item in items]
        if not rows:
            return 0

        def job(db: sqlite3.Connection) -> int:
            before = db.total_changes
            db.executemany("DELETE FROM items WHERE recipient = ? AND item = ?", rows)
            return int(db.total_changes - before)

        return await self._database.write(job)

    async def expire(self, now: float) -> int:
        def job(db: sqlite3.Connection) -> int:
            cursor = db.execute("DELETE FROM items WHERE expires <= ?", (now,))
            return int(cursor.rowcount)

        return await self._database.write(job)

    async def usage(self, recipient: str) -> tuple[int, int]:
        rows = await self._database.fetch(
            "SELECT count(*), coalesce(sum(length(sealed)), 0) FROM items WHERE recipient = ?",
            (recipient,),
        )
        return int(rows[0][0]), int(rows[0][1])

    async def totals(self) -> tuple[int, int]:
        rows = await self._database.fetch(
            "SELECT count(*), coalesce(sum(length(sealed)), 0) FROM items", ()
        )
        return int(rows[0][0]), int(rows[0][1])


def mailbox_for(store: UserStore) -> Mailbox:
    """The mailbox a server keeps when given ``store`` and no mailbox: what outlives the
    process beside a store that does (a SqliteMailbox next to a SqliteUserStore, as the
    command keeps them), else one in memory. Sealed mail must not vanish at a restart
    while the users it is for are remembered."""
    if isinstance(store, SqliteUserStore):
        return SqliteMailbox(SqliteMailbox.beside(store.path))
    if not isinstance(store, MemoryUserStore):
        logger.warning(
            "%s given and no mailbox: sealed mail is kept in memory and lost at a restart; "
            "pass mailbox= a persistent one",
            type(store).__name__,
        )
    return MemoryMailbox()
