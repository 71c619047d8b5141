"""The SQLite message store's search and paged history (``SearchQueries``, a part of
``SqliteMessageStore``): the index written with each transaction, and the newest
matches read from it.

The index is FTS5 over the bodies (``schema/messages-5.sql``), beside ``messages_latest``,
the latest ``sent_at`` of each block of seqs, that lets a search stop early. Group
messages are indexed like the others (their recipient is their group). Under a burst the
index may lag the messages by a few thousand (``SqliteMessageStore.TAIL``): a search
reads those through ``Tail``, a scratch index of them in memory, so it always finds every
message stored.
"""

from __future__ import annotations

import bisect
import heapq
import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from ..store import Message
from .rows import MESSAGE_COLUMNS, Database, message_from_row
from .search import Folding, parse

__all__ = [
    "MERGE_PAGES",
    "SearchQueries",
    "Tail",
    "count_segments",
    "index_new_rows",
    "index_rows",
    "merge_index",
    "newest_matches",
    "waiting",
]

Row = Sequence[Any]
"""A row of the search's query: the seq, then the message's columns."""

_BLOCK_BITS = 12  # messages_latest keeps the latest sent_at of each 4,096 seqs
_FIRST_WALK = 256  # matches read at first; each further read four times more
MERGE_PAGES = 64
"""Pages one step of idle merging writes (a few ms: a write that comes waits for it)."""
_NEWEST_FIRST = "sent_at DESC, id DESC, sender DESC"  # history's order, backwards


def _search_order(row: Row) -> tuple[float, str, str]:
    """(sent_at, id, sender) of a search's row: seq, then MESSAGE_COLUMNS."""
    return float(row[5]), str(row[1]), str(row[2])


class SearchQueries:
    """The history and search methods of ``MessageStore`` over the store's database."""

    def _tables(self) -> Database:
        """The database the tables are in (the store's)."""
        raise NotImplementedError

    def _tail(self) -> Tail:
        """The scratch index of what the index does not hold yet (the store's)."""
        raise NotImplementedError

    async def history(
        self,
        user: str,
        contact: str,
        *,
        before: Message | None = None,
        limit: int | None = None,
    ) -> list[Message]:
        # Each direction read backwards from messages_pair_time, at most ``limit`` rows,
        # then the two merged: a page costs its size, not the length of the talk. (A
        # group message's recipient is its group: never a contact.)
        edge, after = "", []
        if before is not None:
            edge = " AND (sent_at, id, sender) < (?, ?, ?)"
            after = [before.sent_at, before.id, before.sender]
        count = -1 if limit is None else limit
        one_way = (
            f"SELECT * FROM (SELECT {MESSAGE_COLUMNS} FROM messages"
            f" WHERE sender = ? AND recipient = ?{edge} ORDER BY {_NEWEST_FIRST} LIMIT ?)"
        )
        rows = await self._tables().fetch(
            f"SELECT * FROM ({one_way} UNION ALL {one_way}) ORDER BY {_NEWEST_FIRST} LIMIT ?",
            (user, contact, *after, count, contact, user, *after, count, count),
        )
        return [message_from_row(row) for row in reversed(rows)]

    async def search(
        self, user: str, text: str, *, contact: str | None = None, limit: int = 50
    ) -> list[Message]:
        query = parse(text)  # InvalidQuery before any SQL; what FTS5 gets is quoted terms
        if limit <= 0:
            return []
        # Every group message kept is this peer's (its recipient is the group): all of
        # them, or with ``contact`` those it sent.
        if contact is None:
            whose = "(m.sender = ? OR m.recipient = ? OR m.group_id IS NOT NULL)"
            parameters = [user, user]
        else:
            whose = (
                "((m.sender = ? AND m.recipient = ?)"
                " OR (m.sender = ? AND (m.recipient = ? OR m.group_id IS NOT NULL)))"
            )
            parameters = [user, contact, contact, user]
        sql = (
            f"SELECT m.seq, {', '.join('m.' + c for c in MESSAGE_COLUMNS.split(', '))}"
            " FROM messages_fts f JOIN messages m ON m.seq = f.rowid"
            f" WHERE messages_fts MATCH ? AND f.rowid < ? AND {whose}"
            " ORDER BY f.rowid DESC LIMIT ?"
        )
        recent_sql = (
            f"SELECT m.seq, {', '.join('m.' + c for c in MESSAGE_COLUMNS.split(', '))}"
            f" FROM messages m WHERE m.seq IN (SELECT value FROM json_each(?)) AND {whose}"
        )

        def job(db: sqlite3.Connection) -> list[Message]:
            # One read transaction: the index, what it does not hold yet, and the rows.
            recent = self._tail().matches(db, query.fts5)
            also: list[Row] = []
            if recent:
                also = db.execute(recent_sql, [json.dumps(recent), *parameters]).fetchall()
            rows = newest_matches(
                db, sql, [query.fts5], parameters, limit, _search_order, also=also
            )
            return [message_from_row(row[1:]) for row in rows]

        return await self._tables().read(job)


def newest_matches(
    db: sqlite3.Connection,
    sql: str,
    before: Sequence[object],
    after: Sequence[object],
    limit: int,
    order: Callable[[Row], tuple[float, str, str]],
    *,
    also: Sequence[Row] = (),
) -> list[Row]:
    """The ``limit`` rows of ``sql`` and ``also`` latest by ``order`` (sent_at, id,
    sender), newest first.

    ``sql`` reads matches newest seq first (the index's own order, no sort), from below a
    seq, at most so many: its parameters are ``before``, that seq, ``after``, the count;
    each row starts with the seq.
    Arrival order is close to sending order but not the same (mail arrives late), so the
    walk goes on until no older seq can hold a match later than the last one kept: the
    latest sent_at below a seq is known from messages_latest. A common word thus costs
    about ``limit`` rows, not every message that holds it.
    """
    latest = db.execute("SELECT block, latest FROM messages_latest ORDER BY block").fetchall()
    blocks = [int(block) for block, _ in latest]
    up_to: list[float] = []  # up_to[i]: the latest sent_at of blocks[0..i]
    for _, when in latest:
        up_to.append(max(float(when), up_to[-1]) if up_to else float(when))
    kept: list[tuple[tuple[float, str, str], Row]] = []  # a heap: the oldest kept first

    def keep(rows: Sequence[Row]) -> None:
        for row in rows:
            key = order(row)  # unique: (id, sender) is
            if len(kept) < limit:
                heapq.heappush(kept, (key, row))
            elif key > kept[0][0]:
                heapq.heapreplace(kept, (key, row))

    keep(also)
    below = 1 << 62  # seqs are below this
    count = _FIRST_WALK
    while True:
        rows = db.execute(sql, [*before, below, *after, count]).fetchall()
        keep(rows)
        if len(rows) < count:
            break  # every match read
        below = int(rows[-1][0])
        index = bisect.bisect_right(blocks, (below - 1) >> _BLOCK_BITS) - 1
        if len(kept) == limit and (index < 0 or kept[0][0][0] > up_to[index]):
            break  # nothing older can be later than what is kept
        count *= 4
    return [row for _, row in sorted(kept, key=lambda item: item[0], reverse=True)]


class Tail:
    """A scratch index, in memory, of the messages stored but not indexed yet (under a
    burst: up to ``SqliteMessageStore.TAIL`` and a transaction's worth), made with the
    index's own tokenizer, so that a search finds in them just what the index would.

    Used on the reader's thread alone. Kept from one search to the next: it takes in the
    messages new since, and is made anew once the index has taken in its own."""

    TOKENIZE = Folding.TOKENIZE  # messages_fts's (schema/messages-5.sql)

    def __init__(self) -> None:
        self._db: sqlite3.Connection | None = None
        self._above = 0  # it holds the seqs above this (the index's up_to when made)
        self._top = 0  # up to this one

    def matches(self, db: sqlite3.Connection, fts5: str) -> list[int]:
        """The seqs the index does not hold yet whose bodies match ``fts5``, as of the
        read transaction ``db`` is in."""
        done, newest = waiting(db)
        if newest <= done:
            self.close()  # the index holds everything: the memory goes
            return []
        if self._db is None or self._above != done or self._top > newest:
            self.close()
            self._db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            self._db.execute(
                f"CREATE VIRTUAL TABLE tail USING fts5 (body, tokenize = '{self.TOKENIZE}')"
            )
            self._above = self._top = done
        if newest > self._top:
            rows = db.execute(
                "SELECT seq, body FROM messages WHERE seq > ? AND seq <= ?", (self._top, newest)
            ).fetchall()
            self._db.execute("BEGIN")
            self._db.executemany("INSERT INTO tail (rowid, body) VALUES (?, ?)", rows)
            self._db.execute("COMMIT")
            self._top = newest
        found = self._db.execute("SELECT rowid FROM tail WHERE tail MATCH ?", (fts5,))
        return [int(row[0]) for row in found]

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def waiting(db: sqlite3.Connection) -> tuple[int, int]:
    """(the last seq indexed, the last seq stored): the seqs between wait to be indexed."""
    done = int(db.execute("SELECT up_to FROM messages_indexed").fetchone()[0])
    newest = int(db.execute("SELECT coalesce(max(seq), 0) FROM messages").fetchone()[0])
    return done, newest


def index_new_rows(db: sqlite3.Connection) -> int:
    """Index all that waits (``waiting``), in this transaction: returns how many messages."""
    return index_rows(db, *waiting(db))


def index_rows(db: sqlite3.Connection, done: int, newest: int) -> int:
    """Index the messages stored after seq ``done`` up to ``newest`` (all that waits), in
    this transaction: the words of their bodies (FTS5) and the latest sent_at of their
    blocks of seqs. Returns how many messages it indexed.

    Once for a whole transaction (or for many: ``SqliteMessageStore.TAIL``), whoever
    wrote its rows, rather than a trigger per row: FTS5 writes what it holds to disk at
    the start of every statement that writes to it, and a statement per row (or per job
    of a group commit) made the index cost twice the rest of a message's write."""
    if newest <= done:
        return 0  # nothing new (a receipt, a flag)
    db.execute(
        "INSERT INTO messages_fts (rowid, body) SELECT seq, body FROM messages WHERE seq > ?",
        (done,),
    )
    db.execute(
        "INSERT INTO messages_latest (block, latest)"
        f" SELECT seq >> {_BLOCK_BITS}, max(sent_at) FROM messages WHERE seq > ?"
        f" GROUP BY seq >> {_BLOCK_BITS}"
        " ON CONFLICT (block) DO UPDATE SET latest = max(latest, excluded.latest)",
        (done,),
    )
    db.execute("UPDATE messages_indexed SET up_to = ?", (newest,))
    return newest - done  # seqs are given in order: one each


def count_segments(db: sqlite3.Connection) -> int:
    """How many segments the index is in: one look-up per segment (each next segment id
    found from the last), not a walk of the whole index."""
    row = db.execute(
        "WITH RECURSIVE s (id) AS (SELECT min(segid) FROM messages_fts_idx"
        " UNION ALL SELECT (SELECT min(segid) FROM messages_fts_idx WHERE segid > s.id)"
        " FROM s WHERE s.id IS NOT NULL) SELECT count(id) FROM s"
    ).fetchone()
    return int(row[0])


def merge_index(db: sqlite3.Connection, pages: int = MERGE_PAGES) -> bool:
    """Write about ``pages`` pages of merged index: a step in merging the segments of a
    level that holds 16 or more (``usermerge``, set with the schema), all of them, which
    the next step goes on with. True if there may be more to merge. Writes only add
    segments (``automerge`` is off): this is the merging, done when the store is idle, or
    by writes that have not let it be for long (``SqliteMessageStore.BEHIND``)."""
    before = db.total_changes
    db.execute("INSERT INTO messages_fts (messages_fts, rank) VALUES ('merge', ?)", (pages,))
    return db.total_changes - before >= 2  # FTS5: fewer changes, nothing was merged
