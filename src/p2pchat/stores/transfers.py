"""Where a peer keeps its file transfers, both ways: the ``TransferStore`` interface, in
memory (tests, the library's default with a memory message store) and in SQLite (its own
file beside the message store, so that a transfer outlives a restart).

A recipient's ``done`` is its resume point: it is written only once the bytes up to it
are synced, so after a crash the ``.part`` file holds at least that much.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Protocol

import msgspec

from .sqlite import SqliteStore

__all__ = ["MemoryTransferStore", "SqliteTransferStore", "TransferRecord", "TransferStore"]

UNFINISHED = ("offered", "accepted")
RECENT = 100
"""Finished transfers ``recent()`` lists besides the unfinished ones."""


class TransferRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One transfer as its ``owner`` keeps it.

    ``outgoing``: ours to send (``path`` is the file) or theirs to us (``path`` is the
    directory chosen on accepting, ``target`` the name chosen there). ``told``: the other
    side has been told how it ended (for an end of ours), so it is not told again.
    """

    owner: str
    id: str
    contact: str
    outgoing: bool
    name: str
    size: int
    sha256: str
    state: str
    created: float
    updated: float
    done: int = 0
    path: str = ""
    target: str = ""
    code: str = ""
    reason: str = ""
    told: bool = False


class TransferStore(Protocol):
    """The transfers of the peers that share one store."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def put(self, record: TransferRecord) -> None:
        """Add or replace ``record`` (by owner and id), durably."""

    async def get(self, owner: str, id: str) -> TransferRecord | None: ...
    async def recent(self, owner: str) -> list[TransferRecord]:
        """The unfinished transfers and the last ``RECENT`` others, the newest first."""

    async def pending(self, owner: str, contact: str) -> list[TransferRecord]:
        """Those with ``contact`` that the next talk has something to say about:
        unfinished, or ended without the other side told."""


def _pending(record: TransferRecord) -> bool:
    return record.state in UNFINISHED or not record.told


class MemoryTransferStore:
    """TransferStore in memory: lost with the process."""

    def __init__(self) -> None:
        self._records: dict[tuple[str, str], TransferRecord] = {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def put(self, record: TransferRecord) -> None:
        self._records[(record.owner, record.id)] = record

    async def get(self, owner: str, id: str) -> TransferRecord | None:
        return self._records.get((owner, id))

    async def recent(self, owner: str) -> list[TransferRecord]:
        mine = sorted(
            (r for r in self._records.values() if r.owner == owner),
            key=lambda r: r.updated,
            reverse=True,
        )
        ended = [r for r in mine if r.state not in UNFINISHED][:RECENT]
        return [r for r in mine if r.state in UNFINISHED or r in ended]

    async def pending(self, owner: str, contact: str) -> list[TransferRecord]:
        return sorted(
            (
                r
                for r in self._records.values()
                if r.owner == owner and r.contact == contact and _pending(r)
            ),
            key=lambda r: r.created,
        )


_FIELDS = tuple(TransferRecord.__struct_fields__)
_COLUMNS = ", ".join(_FIELDS)


def _record(row: tuple[object, ...]) -> TransferRecord:
    values = dict(zip(_FIELDS, row, strict=True))
    values["outgoing"] = bool(values["outgoing"])
    values["told"] = bool(values["told"])
    return msgspec.convert(values, TransferRecord)


class SqliteTransferStore(SqliteStore):
    """TransferStore in an SQLite file (WAL, every commit synced: a resume point is a
    promise to the sender)."""

    KIND = "transfers"
    VERSION = 1
    SYNCHRONOUS = "FULL"

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)

    async def put(self, record: TransferRecord) -> None:
        values = [getattr(record, name) for name in _FIELDS]
        marks = ", ".join("?" * len(_FIELDS))

        def job(db: sqlite3.Connection) -> None:
            db.execute(f"INSERT OR REPLACE INTO transfers ({_COLUMNS}) VALUES ({marks})", values)

        await self._database.write(job)

    async def get(self, owner: str, id: str) -> TransferRecord | None:
        rows = await self._database.fetch(
            f"SELECT {_COLUMNS} FROM transfers WHERE owner = ? AND id = ?", (owner, id)
        )
        return _record(rows[0]) if rows else None

    async def recent(self, owner: str) -> list[TransferRecord]:
        rows = await self._database.fetch(
            f"SELECT {_COLUMNS} FROM transfers WHERE owner = ? AND state IN (?, ?) "
            f"UNION ALL SELECT * FROM (SELECT {_COLUMNS} FROM transfers "
            "WHERE owner = ? AND state NOT IN (?, ?) ORDER BY updated DESC LIMIT ?)",
            (owner, *UNFINISHED, owner, *UNFINISHED, RECENT),
        )
        return sorted((_record(row) for row in rows), key=lambda r: r.updated, reverse=True)

    async def pending(self, owner: str, contact: str) -> list[TransferRecord]:
        rows = await self._database.fetch(
            f"SELECT {_COLUMNS} FROM transfers WHERE owner = ? AND contact = ? "
            "AND (state IN (?, ?) OR told = 0) ORDER BY created",
            (owner, contact, *UNFINISHED),
        )
        return [_record(row) for row in rows]
