"""The SQLite backend of a peer's message store, and what every SQLite store shares.

The server's stores (users, mailbox) are in ``sqlite_server.py``; they are the commands'
defaults, as this one is.

Each file has two connections, each on a thread of its own, so the event loop never
blocks on the disk: one writes, one reads. Reads never see a write transaction half done
(WAL gives them the last commit). Writes go through one writer that gathers the writes
arriving while the previous transaction commits and runs them in the next one (group
commit): one ``fsync`` serves many messages, and a whole transaction, jobs and commit,
is one trip to the writer's thread. A write that fails is taken out of its group and
fails alone; the others are run again and committed without it.

A write that a power cut may lose without harm (marking a message shipped: it is then
resent, and the other side ignores it) is not ``durable``: a group made only of such
writes commits without an ``fsync`` (``synchronous = NORMAL`` for that commit; WAL keeps
it consistent, and the next durable commit makes it durable too). A crash of the
process loses neither kind.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

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
from .sqlite_groups import GroupTables

__all__ = ["SqliteDatabase", "SqliteMessageStore", "SqliteStore"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

Job = Callable[[sqlite3.Connection], Any]
"""A piece of a write transaction: runs on the writer's thread, inside BEGIN ... COMMIT."""


class _Thread:
    """One SQLite connection and the one thread it is used on."""

    def __init__(self, name: str) -> None:
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name)
        self.connection: sqlite3.Connection | None = None

    async def run(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, call)

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


LINGER = 0.005
"""How long a write that need not be durable waits for a durable one to share its commit
(marking a message shipped, in a talk where the next message follows its ack): one
transaction instead of two, and the next message's commit not queued behind it."""


class SqliteDatabase:
    """One SQLite file: opening, schema migration, a group-commit writer and a reader.

    The schema of ``kind`` lives in ``schema/{kind}-{version}.sql``; ``PRAGMA user_version``
    records which versions have been applied.
    """

    def __init__(self, path: str | Path, *, kind: str, version: int, synchronous: str) -> None:
        self.path = Path(path)
        self.kind = kind
        self.version = version
        self.synchronous = synchronous
        self._writer_thread = _Thread(f"p2pchat-{kind}-writer")
        self._reader_thread = _Thread(f"p2pchat-{kind}-reader")
        self._open = False
        self._pending: list[tuple[Job, asyncio.Future[Any], bool]] = []
        self._synchronous_now = synchronous  # as the writer's connection has it set
        self._committing = False  # a transaction is on the writer's thread
        self._queued = 0  # writes handed to write(), ever
        self._done = 0  # of which done (they complete in order)
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []  # until _done reaches n
        self._lingering: asyncio.TimerHandle | None = None  # see LINGER

    async def open(self) -> None:
        if self._open:
            return
        try:
            await self._writer_thread.run(self._open_writer)
            await self._reader_thread.run(self._open_reader)
        except (OSError, sqlite3.Error, StoreError) as exc:
            await self._writer_thread.run(self._writer_thread.close)
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"cannot open {self.kind} store {self.path}: {exc}") from exc
        self._open = True

    def _open_writer(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Private from the start: SQLite gives its -wal and -shm files the same mode.
        os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._writer_thread.connection = db
        db.execute("PRAGMA journal_mode = WAL")
        db.execute(f"PRAGMA synchronous = {self.synchronous}")
        db.execute("PRAGMA busy_timeout = 5000")
        self._migrate(db)

    def _open_reader(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA query_only = 1")
        db.execute("PRAGMA busy_timeout = 5000")
        self._reader_thread.connection = db

    def _migrate(self, db: sqlite3.Connection) -> None:
        row = db.execute("PRAGMA user_version").fetchone()
        current = int(row[0]) if row else 0
        if current > self.version:
            raise StoreError(
                f"{self.path} has {self.kind} schema version {current}, newer than this "
                f"p2pchat knows ({self.version}): upgrade p2pchat"
            )
        for version in range(current + 1, self.version + 1):
            script = resources.files("p2pchat.stores").joinpath(f"schema/{self.kind}-{version}.sql")
            sql = script.read_text(encoding="utf-8")
            db.executescript(f"BEGIN;\n{sql}\nPRAGMA user_version = {version};\nCOMMIT;")
            logger.info("%s store %s: schema now at version %d", self.kind, self.path, version)

    async def close(self) -> None:
        self._flush()
        await self._written(self._queued)
        if self._open:
            self._open = False
            await self._reader_thread.run(self._reader_thread.close)
            await self._writer_thread.run(self._writer_thread.close)
        self._reader_thread.executor.shutdown(wait=False)
        self._writer_thread.executor.shutdown(wait=False)

    async def write(self, job: Callable[[sqlite3.Connection], T], *, durable: bool = True) -> T:
        """Run ``job`` inside a write transaction shared with the writes queued beside it.

        ``durable=False``: losing it to a power cut does no harm, so, unless a durable
        write shares its commit, that commit skips the ``fsync``."""
        if not self._open:
            raise StoreError(f"{self.kind} store {self.path} is not open: call start() first")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((job, future, durable))
        self._queued += 1
        if not self._committing:
            if durable:
                self._flush()
            elif self._lingering is None:
                self._lingering = asyncio.get_running_loop().call_later(LINGER, self._flush)
        # A caller that stops waiting cancels its future only: its job stays in the
        # transaction that serves the others.
        return await future

    def _flush(self) -> None:
        """Commit what is pending now (unless a commit runs: its end starts the next)."""
        if self._lingering is not None:
            self._lingering.cancel()
            self._lingering = None
        if self._pending and not self._committing:
            self._commit_next()

    def _commit_next(self) -> None:
        """Hand what is pending to the writer's thread as one transaction. Its end is
        taken straight from the thread (``call_soon_threadsafe``), with no task between:
        each step between a commit and its caller is a turn of the event loop."""
        batch, self._pending = self._pending, []
        jobs = [job for job, _, _ in batch]
        durable = any(durable for _, _, durable in batch)
        loop = asyncio.get_running_loop()
        self._committing = True
        try:
            running = self._writer_thread.executor.submit(
                functools.partial(self._transaction, jobs, durable=durable)
            )
        except RuntimeError as exc:  # the executor is shut down (closed meanwhile)
            failed = concurrent.futures.Future[list[tuple[Any, Exception | None]]]()
            failed.set_exception(StoreError(f"{self.kind} store {self.path} is closed: {exc}"))
            self._committed(batch, failed)
            return
        running.add_done_callback(
            lambda done: loop.call_soon_threadsafe(self._committed, batch, done)
        )

    def _committed(
        self,
        batch: list[tuple[Job, asyncio.Future[Any], bool]],
        done: concurrent.futures.Future[list[tuple[Any, Exception | None]]],
    ) -> None:
        """On the event loop: tell each write of ``batch`` its outcome, start the next."""
        try:
            outcomes = done.result()
        except Exception as exc:  # the thread could not run it at all
            outcomes = [(None, exc)] * len(batch)
        for (_, future, _), (result, error) in zip(batch, outcomes, strict=True):
            if future.done():  # its caller stopped waiting
                continue
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)
        self._done += len(batch)
        self._committing = False
        if self._pending:
            self._flush()
        waiters, self._waiters = self._waiters, []
        for count, waiter in waiters:
            if self._done >= count:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                self._waiters.append((count, waiter))

    async def _written(self, count: int) -> None:
        """Wait until the first ``count`` writes are done."""
        if self._done >= count:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((count, waiter))
        await waiter

    def _transaction(
        self, jobs: list[Job], *, durable: bool = True
    ) -> list[tuple[Any, Exception | None]]:
        """On the writer's thread: run ``jobs`` in one transaction. A job that raises is
        left out, and the transaction is run again without it."""
        db = self._writer_thread.connection
        assert db is not None
        outcomes: list[tuple[Any, Exception | None] | None] = [None] * len(jobs)
        todo = list(range(len(jobs)))
        synchronous = self.synchronous if durable or self.synchronous != "FULL" else "NORMAL"
        while todo:
            try:
                if synchronous != self._synchronous_now:
                    db.execute(f"PRAGMA synchronous = {synchronous}")
                    self._synchronous_now = synchronous
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                return self._failed(outcomes, todo, exc)
            results = []
            failed: int | None = None
            for index in todo:
                try:
                    results.append(jobs[index](db))
                except Exception as exc:
                    failed = index
                    outcomes[index] = (None, self._error(exc))
                    break
            if failed is not None:
                self._rollback(db)
                todo.remove(failed)
                continue
            try:
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback(db)
                return self._failed(outcomes, todo, exc)
            for index, result in zip(todo, results, strict=True):
                outcomes[index] = (result, None)
            todo = []
        return [outcome if outcome is not None else (None, None) for outcome in outcomes]

    def _failed(
        self,
        outcomes: list[tuple[Any, Exception | None] | None],
        todo: list[int],
        exc: Exception,
    ) -> list[tuple[Any, Exception | None]]:
        """BEGIN or COMMIT failed: nothing of ``todo`` is written."""
        error = self._error(exc)
        for index in todo:
            outcomes[index] = (None, error)
        return [outcome if outcome is not None else (None, error) for outcome in outcomes]

    def _error(self, exc: Exception) -> Exception:
        if isinstance(exc, sqlite3.Error):
            error = StoreError(f"write to {self.kind} store {self.path} failed: {exc}")
            logger.error("%s", error)
            return error
        return exc

    @staticmethod
    def _rollback(db: sqlite3.Connection) -> None:
        if db.in_transaction:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error as exc:
                logger.error("rollback failed: %s", exc)

    async def fetch(self, sql: str, parameters: Sequence[object] = ()) -> list[Any]:
        """Run a query on the reading connection once the writes queued before it are
        done (so a write not waited for, such as marking a message shipped, is seen by
        the reads that follow it); it sees committed data only."""
        if not self._open:
            raise StoreError(f"{self.kind} store {self.path} is not open: call start() first")
        self._flush()
        await self._written(self._queued)

        def query() -> list[Any]:
            db = self._reader_thread.connection
            assert db is not None
            return db.execute(sql, parameters).fetchall()

        try:
            return await self._reader_thread.run(query)
        except sqlite3.Error as exc:
            raise StoreError(f"read from {self.kind} store {self.path} failed: {exc}") from exc


class SqliteStore:
    """What both SQLite stores share: one database file, opened by start()."""

    KIND = ""
    VERSION = 0
    SYNCHRONOUS = "FULL"

    def __init__(self, path: str | Path) -> None:
        self._database = SqliteDatabase(
            path, kind=self.KIND, version=self.VERSION, synchronous=self.SYNCHRONOUS
        )

    @property
    def path(self) -> Path:
        return self._database.path

    async def start(self) -> None:
        await self._database.open()

    async def close(self) -> None:
        await self._database.close()


class SqliteMessageStore(GroupTables, SqliteStore):
    """MessageStore in an SQLite file (WAL mode).

    ``synchronous = FULL``: an ack promises the message is on disk, so every commit is
    fsynced; group commit keeps that cheap under load (measured: awaited one-by-one sends
    ~650/s with FULL against ~900/s with NORMAL, the rest being thread hops).
    """

    KIND = "messages"
    VERSION = 5
    SYNCHRONOUS = "FULL"

    def _tables(self) -> SqliteDatabase:
        return self._database

    @property
    def identity_file(self) -> Path:
        """The key file beside the database (``alice.sqlite3`` -> ``alice.key``)."""
        return self.path.with_suffix(".key")

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
            db.executemany(
                f"INSERT INTO messages ({MESSAGE_COLUMNS}, unread)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [message_row(m, flag) for m in added],
            )
            return added

        return await self._database.write(job)

    async def mark_shipped(self, recipient: str, ids: Iterable[str]) -> None:
        rows = [(message_id, recipient) for message_id in ids]
        if not rows:
            return

        def job(db: sqlite3.Connection) -> None:
            db.executemany(
                "UPDATE messages SET shipped = 1"
                " WHERE id = ? AND recipient = ? AND group_id IS NULL",
                rows,
            )
            db.executemany(
                "UPDATE group_deliveries SET shipped = 1 WHERE member = ? AND shipped = 0"
                " AND message_seq IN"
                " (SELECT seq FROM messages WHERE id = ? AND group_id IS NOT NULL)",
                [(member, message_id) for message_id, member in rows],
            )
            db.executemany(SHIP_IF_ALL.format(where="id = ?"), [(i,) for i, _ in rows])

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
        rows = [(message_id, sender) for message_id in ids]
        if not rows:
            return

        def job(db: sqlite3.Connection) -> None:
            db.executemany("UPDATE messages SET unread = 0 WHERE id = ? AND sender = ?", rows)

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

    async def history(self, user: str, contact: str, *, limit: int | None = None) -> list[Message]:
        rows = await self._database.fetch(
            f"SELECT {MESSAGE_COLUMNS} FROM ("
            f" SELECT seq, {MESSAGE_COLUMNS} FROM messages"
            "  WHERE ((sender = ? AND recipient = ?) OR (sender = ? AND recipient = ?))"
            "   AND group_id IS NULL ORDER BY seq DESC LIMIT ?"
            ") ORDER BY seq",
            (user, contact, contact, user, -1 if limit is None else limit),
        )
        return [message_from_row(row) for row in rows]

    async def correspondents(self, user: str, *, limit: int | None = None) -> list[str]:
        rows = await self._database.fetch(
            "SELECT other FROM ("
            " SELECT recipient AS other, MAX(seq) AS last FROM messages"
            "  WHERE sender = ? AND group_id IS NULL GROUP BY recipient"
            " UNION ALL"
            " SELECT sender, MAX(seq) FROM messages WHERE recipient = ? AND group_id IS NULL"
            "  GROUP BY sender"
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
