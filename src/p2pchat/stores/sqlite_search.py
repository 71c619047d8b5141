"""The SQLite message store's search: its index written with each transaction, and
the newest matches read from it.

The index is FTS5 over the bodies (``schema/messages-5.sql``), beside ``messages_latest``,
the latest ``sent_at`` of each block of seqs, that lets a search stop early.
"""

from __future__ import annotations

import bisect
import heapq
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["index_new_rows", "newest_matches"]

Row = Sequence[Any]
"""A row of the search's query: the seq, then the message's columns."""

_BLOCK_BITS = 12  # messages_latest keeps the latest sent_at of each 4,096 seqs
_FIRST_WALK = 256  # matches read at first; each further read four times more


def newest_matches(
    db: sqlite3.Connection,
    sql: str,
    before: Sequence[object],
    after: Sequence[object],
    limit: int,
    order: Callable[[Row], tuple[float, str, str]],
) -> list[Row]:
    """The ``limit`` rows of ``sql`` latest by ``order`` (sent_at, id, sender), newest
    first.

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
    below = 1 << 62  # seqs are below this
    count = _FIRST_WALK
    while True:
        rows = db.execute(sql, [*before, below, *after, count]).fetchall()
        for row in rows:
            key = order(row)  # unique: (id, sender) is
            if len(kept) < limit:
                heapq.heappush(kept, (key, row))
            elif key > kept[0][0]:
                heapq.heapreplace(kept, (key, row))
        if len(rows) < count:
            break  # every match read
        below = int(rows[-1][0])
        index = bisect.bisect_right(blocks, (below - 1) >> _BLOCK_BITS) - 1
        if len(kept) == limit and (index < 0 or kept[0][0][0] > up_to[index]):
            break  # nothing older can be later than what is kept
        count *= 4
    return [row for _, row in sorted(kept, key=lambda item: item[0], reverse=True)]


def index_new_rows(db: sqlite3.Connection) -> None:
    """Index what this transaction stored, in it, before it commits: the words of
    the new bodies (FTS5) and the latest sent_at of their blocks of seqs.

    Once for the whole transaction, whoever wrote its rows, rather than a trigger
    per row: FTS5 writes what it holds to disk at the start of every statement that
    writes to it, and a statement per row (or per job of a group commit) made the
    index cost twice the rest of a message's write; one per transaction, ~0.6x."""
    row = db.execute("SELECT up_to FROM messages_indexed").fetchone()
    done = int(row[0])
    newest = db.execute("SELECT max(seq) FROM messages").fetchone()[0]
    if newest is None or int(newest) <= done:
        return  # nothing new (a receipt, a flag): two look-ups
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
    db.execute("UPDATE messages_indexed SET up_to = ?", (int(newest),))
