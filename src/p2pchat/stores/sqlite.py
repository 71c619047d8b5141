"""The SQLite backend of a peer's message store, and what every SQLite store shares
(``SqliteStore``: one file, opened by ``start()``, through ``sqlite_db.SqliteDatabase``:
two connections on threads of their own, group commit).

The server's stores (users, mailbox) are in ``sqlite_server.py``; they are the commands'
defaults, as this one is. The message store's parts: ``sqlite_groups.py`` (its group
tables), ``sqlite_search.py`` (its search and paged history), ``rows.py`` (its columns).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import StoreError
from ..store import Message
from .rows import (
    COPY_COLUMNS,
    MESSAGE_COLUMNS,
    SHIP_IF_ALL,
    SQL_CHUNK,
    message_from_row,
    message_row,
)
from .sqlite_db import SqliteDatabase
from .sqlite_groups import GroupTables
from .sqlite_search import (
    MERGE_PAGES,
    SearchQueries,
    Tail,
    count_segments,
    index_new_rows,
    index_rows,
    merge_index,
    waiting,
)

__all__ = ["SqliteDatabase", "SqliteMessageStore", "SqliteStore"]


class SqliteStore:
    """What both SQLite stores share: one database file, opened by start()."""

    KIND = ""
    VERSION = 0
    SYNCHRONOUS = "FULL"

    def __init__(self, path: str | Path) -> None:
        self._database = SqliteDatabase(
            path,
            kind=self.KIND,
            version=self.VERSION,
            synchronous=self.SYNCHRONOUS,
            finish=self._finish,
            idle=self._tidy if self.TIDY else None,
            due=self._behind if self.TIDY else None,
        )

    TIDY = False
    """Whether the store has upkeep to do when idle (``_tidy``)."""

    def _finish(self, db: sqlite3.Connection, burst: bool) -> None:
        """What ends every write transaction (SqliteDatabase.finish): nothing here."""

    def _tidy(self, db: sqlite3.Connection) -> bool:
        """One step of upkeep, when the store is idle (SqliteDatabase.idle)."""
        return False

    def _behind(self) -> bool:
        """Whether upkeep must not wait for an idle moment (SqliteDatabase.due)."""
        return False

    @property
    def path(self) -> Path:
        return self._database.path

    async def start(self) -> None:
        await self._database.open()

    async def close(self) -> None:
        await self._database.close()


_LISTED = "(SELECT value FROM json_each(?))"
"""The ids of a JSON list, for ``id IN``: a statement for a whole list of ids. (Its other
terms are written ``+column`` so that SQLite looks each id up by the (id, sender) index
rather than walk a partial index such as every unshipped message to the recipient.)"""

_ROWS_PER_INSERT = 3_000  # rows per INSERT, if SQLite takes 10 variables for each


class SqliteMessageStore(GroupTables, SearchQueries, SqliteStore):
    """MessageStore in an SQLite file (WAL mode).

    ``synchronous = FULL``: an ack promises the message is on disk, so every commit is
    fsynced; group commit keeps that cheap under load (measured: awaited one-by-one sends
    ~650/s with FULL against ~900/s with NORMAL, the rest being thread hops).
    """

    KIND = "messages"
    VERSION = 8
    SYNCHRONOUS = "FULL"

    def _tables(self) -> SqliteDatabase:
        return self._database

    @property
    def identity_file(self) -> Path:
        """The key file beside the database (``alice.sqlite3`` -> ``alice.key``)."""
        return self.path.with_suffix(".key")

    TIDY = True

    BEHIND = 256
    """Segments the search index may gain under writes that never pause before merging
    stops waiting for an idle moment and goes between writes, a step after each
    (``_behind``). A segment a write transaction: a burst of 65,000 messages, stored 256 a
    transaction, waits for no merge, and searches meanwhile read at most a few hundred
    segments (measured: under 2 ms at 300)."""

    TAIL = 4096
    """Messages that may wait to be indexed while the writer is in a burst (writes wait
    behind theirs, or follow one another within ``sqlite_db.BURST``): one index write for
    some thousands of messages rather than one a transaction (FTS5 writes each word anew
    for each transaction that has it). A transaction that is not one of a burst (a chat
    at human speed) indexes what it stored and all that waits; at a burst's end the idle
    step does (``sqlite_db.IDLE_AFTER`` later), and so does ``close()``, and an idle
    moment after a crash. Meanwhile search reads what waits through a scratch index of
    it (``sqlite_search.Tail``)."""

    TAIL_BYTES = 256 * 1024
    """And at most about this much of their bodies (UTF-8): what a search may have to
    put in its scratch index (about 0.1 s a MiB, measured), and the write that catches up
    to index at once. (About: a transaction rolled back after its rows were counted may
    stay counted, until the index next catches up.)"""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        # On the writer's thread (read on the event loop's: an int, as it was just then).
        self._segments = 0  # added to the index since merging last caught up
        self._owed = 0  # messages indexed since the last step, while behind
        self._sized_to = 0  # the bodies up to this seq are counted in _sized: what waits
        self._sized = 0
        self._recent = Tail()  # on the reader's thread

    def _tail(self) -> Tail:
        return self._recent

    async def close(self) -> None:
        with contextlib.suppress(StoreError):  # (not open; or failed, and logged: next run)
            await self._database.write(self._catch_up)
        await super().close()
        self._recent.close()  # (the reader's thread is done with it)

    async def start(self) -> None:
        await super().start()
        # What earlier runs left unmerged counts too: a store reopened into writes that
        # never pause would otherwise wait BEHIND more writes each time it is opened.
        self._segments = await self._database.read(count_segments)

    def _finish(self, db: sqlite3.Connection, burst: bool) -> None:
        # The search index: in this transaction, unless it is one of a burst (more
        # writes are likely to follow) and what waits for the index is under TAIL
        # (search reads it meanwhile).
        done, newest = waiting(db)
        if newest <= done:
            return  # nothing new (a receipt, a flag)
        if burst and newest - done < self.TAIL and self._size(db, done, newest) < self.TAIL_BYTES:
            return  # left to a later transaction
        self._indexed(index_rows(db, done, newest))

    def _size(self, db: sqlite3.Connection, done: int, newest: int) -> int:
        """The size of the bodies that wait, those of this transaction's rows added."""
        if not done < self._sized_to <= newest:  # all indexed since, or a rollback
            self._sized_to, self._sized = done, 0
        if newest > self._sized_to:
            row = db.execute(
                "SELECT coalesce(sum(length(CAST(body AS BLOB))), 0) FROM messages"
                " WHERE seq > ? AND seq <= ?",
                (self._sized_to, newest),
            ).fetchone()
            self._sized, self._sized_to = self._sized + int(row[0]), newest
        return self._sized

    def _catch_up(self, db: sqlite3.Connection) -> int:
        """Index all that waits: how many messages."""
        added = index_new_rows(db)
        self._indexed(added)
        return added

    def _indexed(self, added: int) -> None:
        """Count the segment ``added`` messages made (none if nothing was indexed)."""
        if added:
            self._segments += 1  # each write adds a segment (automerge is off)
            if self._segments > self.BEHIND:
                self._owed += added

    def _behind(self) -> bool:
        return self._segments > self.BEHIND

    def _tidy(self, db: sqlite3.Connection) -> bool:
        if self._catch_up(db):  # what a run that ended in a crash left waiting
            return True  # and merging next
        # Behind, a step in proportion to the writes since the last: a page a message (a
        # segment took about a page for six of them), so that merging gains on writing.
        pages, self._owed = max(MERGE_PAGES, self._owed), 0
        try:
            more = merge_index(db, pages)  # the index's segments, merged off the write path
        except sqlite3.Error:
            self._segments = 0  # (a full disk, say): between writes again only much later
            raise
        if not more:
            self._segments = 0  # no level left to merge
        return more

    async def add(self, message: Message) -> bool:
        return bool(await self.add_many([message]))

    async def add_many(self, messages: Sequence[Message], *, unread: bool = False) -> list[Message]:
        if not messages:
            return []
        flag = int(unread)

        def job(db: sqlite3.Connection) -> list[Message]:
            # Inside the write transaction, so nothing can insert between check and insert.
            # A message is known by (sender, id): another sender's id is not this one.
            known: set[tuple[str, str]] = set()
            ids = list(dict.fromkeys(m.id for m in messages))
            for start in range(0, len(ids), SQL_CHUNK):
                chunk = ids[start : start + SQL_CHUNK]
                marks = ", ".join("?" * len(chunk))
                c = db.execute(f"SELECT sender, id FROM messages WHERE id IN ({marks})", chunk)
                known.update((str(row[0]), str(row[1])) for row in c.fetchall())
            added = []
            for m in messages:
                if (m.sender, m.id) not in known:
                    known.add((m.sender, m.id))
                    added.append(m)
            # One statement for many rows, not executemany's one per row (it costs
            # ~15% less; 32,766 variables since SQLite 3.32, 999 before).
            width = len(MESSAGE_COLUMNS.split(", ")) + 1
            most = db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width
            size = min(_ROWS_PER_INSERT, most)
            marks = f"({', '.join('?' * width)})"
            for start in range(0, len(added), size):
                part = added[start : start + size]
                db.execute(
                    f"INSERT INTO messages ({MESSAGE_COLUMNS}, unread) VALUES "
                    + ", ".join([marks] * len(part)),
                    [value for m in part for value in message_row(m, flag)],
                )
            return added

        return await self._database.write(job)

    async def mark_shipped(self, recipient: str, ids: Iterable[str]) -> None:
        listed = json.dumps(list(ids))
        if listed == "[]":
            return

        def job(db: sqlite3.Connection) -> None:
            # One statement for the lot, not one per id (an ack names up to thousands:
            # per id, that was ~12 us of the sender's CPU for every message it sent).
            db.execute(
                "UPDATE messages SET shipped = 1 WHERE +recipient = ? AND +shipped = 0"
                f" AND +group_id IS NULL AND id IN {_LISTED}",
                (recipient, listed),
            )
            ours = db.execute(
                f"SELECT seq FROM messages WHERE +group_id IS NOT NULL AND id IN {_LISTED}",
                (listed,),
            ).fetchall()
            if not ours:
                return  # a talk's ack: no group message in it
            db.executemany(
                "UPDATE group_deliveries SET shipped = 1"
                " WHERE member = ? AND shipped = 0 AND message_seq = ?",
                [(recipient, seq) for (seq,) in ours],
            )
            db.executemany(SHIP_IF_ALL.format(where="seq = ?"), ours)

        await self._database.write(job, durable=False)  # if lost: resent, and ignored there

    async def next_unread(self, user: str, *, group: str | None = None) -> Message | None:
        if group is None:
            rows = await self._database.fetch(
                f"SELECT {MESSAGE_COLUMNS} FROM messages"
                " WHERE recipient = ? AND unread = 1 AND group_id IS NULL ORDER BY seq LIMIT 1",
                (user,),
            )
        else:
            rows = await self._database.fetch(
                f"SELECT {MESSAGE_COLUMNS} FROM messages"
                " WHERE group_id = ? AND unread = 1 ORDER BY seq LIMIT 1",
                (group,),
            )
        return message_from_row(rows[0]) if rows else None

    async def mark_read(self, sender: str, ids: Iterable[str]) -> None:
        listed = json.dumps(list(ids))
        if listed == "[]":
            return

        def job(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE messages SET unread = 0"
                f" WHERE +sender = ? AND +unread = 1 AND id IN {_LISTED}",
                (sender, listed),
            )

        await self._database.write(job)  # durable: if lost, it would show again

    async def mark_deposited(self, ids: Iterable[str], *, recipient: str | None = None) -> None:
        # If lost: deposited again, and the server (and the recipient) ignore the copy.
        ids = list(ids)
        if recipient is None:
            await self._set_flag("deposited = 1", ids, durable=False)
            return

        def job(db: sqlite3.Connection) -> None:
            db.executemany(
                "UPDATE messages SET deposited = 1 WHERE id = ? AND group_id IS NULL",
                [(i,) for i in ids],
            )
            db.executemany(
                "UPDATE group_deliveries SET deposited = 1 WHERE member = ? AND message_seq IN"
                " (SELECT seq FROM messages WHERE id = ? AND group_id IS NOT NULL)",
                [(recipient, i) for i in ids],
            )

        await self._database.write(job, durable=False)

    async def _set_flag(self, assignment: str, ids: Iterable[str], *, durable: bool = True) -> None:
        rows = [(message_id,) for message_id in ids]
        if not rows:
            return

        def job(db: sqlite3.Connection) -> None:
            db.executemany(f"UPDATE messages SET {assignment} WHERE id = ?", rows)

        await self._database.write(job, durable=durable)

    async def undeposited(self, sender: str) -> list[Message]:
        rows = await self._database.fetch(
            f"SELECT {MESSAGE_COLUMNS} FROM ("
            f" SELECT seq, {MESSAGE_COLUMNS} FROM messages"
            "  WHERE sender = ? AND shipped = 0 AND deposited = 0 AND group_id IS NULL"
            f" UNION ALL SELECT {COPY_COLUMNS}"
            "  FROM group_deliveries d JOIN messages m ON m.seq = d.message_seq"
            "  WHERE m.sender = ? AND d.shipped = 0 AND d.deposited = 0"
            ") ORDER BY seq",
            (sender, sender),
        )
        return [message_from_row(row) for row in rows]

    async def unshipped(self, sender: str, recipient: str) -> list[Message]:
        rows = await self._database.fetch(
            f"SELECT {MESSAGE_COLUMNS} FROM ("
            f" SELECT seq, {MESSAGE_COLUMNS} FROM messages"
            "  WHERE recipient = ? AND shipped = 0 AND sender = ? AND group_id IS NULL"
            f" UNION ALL SELECT {COPY_COLUMNS}"
            "  FROM group_deliveries d JOIN messages m ON m.seq = d.message_seq"
            "  WHERE d.member = ? AND d.shipped = 0 AND m.sender = ?"
            ") ORDER BY seq",
            (recipient, sender, recipient, sender),
        )
        return [message_from_row(row) for row in rows]

    async def correspondents(self, user: str, *, limit: int | None = None) -> list[str]:
        rows = await self._database.fetch(
            # A group message's recipient is its group: ours are left out here, and those
            # received are not to ``user``.
            "SELECT other FROM ("
            " SELECT recipient AS other, MAX(seq) AS last FROM messages"
            "  WHERE sender = ? AND group_id IS NULL GROUP BY recipient"
            " UNION ALL"
            " SELECT sender, MAX(seq) FROM messages WHERE recipient = ? GROUP BY sender"
            ") GROUP BY other ORDER BY MAX(last) DESC LIMIT ?",
            (user, user, -1 if limit is None else limit),
        )
        return [str(row[0]) for row in rows]

    async def known_key(self, user: str, contact: str) -> str | None:
        rows = await self._database.fetch(
            "SELECT key FROM contacts WHERE user = ? AND contact = ?", (user, contact)
        )
        return str(rows[0][0]) if rows else None

    async def remember_key(self, user: str, contact: str, key: str, *, now: float) -> None:
        def job(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO contacts (user, contact, key, first_seen, last_seen)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (user, contact)"
                " DO UPDATE SET key = excluded.key, last_seen = excluded.last_seen",
                (user, contact, key, now, now),
            )

        await self._database.write(job)
