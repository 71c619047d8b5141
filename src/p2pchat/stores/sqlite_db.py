"""One SQLite file of a store, used off the event loop (``SqliteDatabase``): what every
SQLite store (``sqlite.py``, ``sqlite_server.py``, ``transfers.py``) is built on.

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

Upkeep that need not be done when a write is (merging the search index's segments) is
``idle`` work: done in steps, each a short transaction of its own, once no write has come
for ``IDLE_AFTER``; a write that comes meanwhile waits for one step at most. When the
store says the upkeep is ``due`` (writes have not let it be for long), a step goes
between one transaction and the next instead, until it is no longer due.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import math
import os
import sqlite3
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from ..errors import StoreError

__all__ = ["SqliteDatabase"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

Job = Callable[[sqlite3.Connection], Any]
"""A piece of a write transaction: runs on the writer's thread, inside BEGIN ... COMMIT."""

Finish = Callable[[sqlite3.Connection, bool], None]
"""What ends every write transaction, given whether more writes wait for the next one."""


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


IDLE_AFTER = 0.25
"""How long the writer must have had nothing to do before it starts its idle work."""


BURST = 0.05
"""A write transaction is taken as one of a burst, with more writes likely to follow, if
writes already wait behind it, or if it began within this long of the last one's end
(a receiver storing a stream batch by batch, a sender awaiting each message: nothing
waits behind the transaction, yet the next comes within milliseconds). A pause longer
than this ends the burst: the write after it is not one, nor is a chat at human speed."""


class SqliteDatabase:
    """One SQLite file: opening, schema migration, a group-commit writer and a reader.

    The schema of ``kind`` lives in ``schema/{kind}-{version}.sql``; ``PRAGMA user_version``
    records which versions have been applied.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        kind: str,
        version: int,
        synchronous: str,
        finish: Finish | None = None,
        idle: Callable[[sqlite3.Connection], bool] | None = None,
        due: Callable[[], bool] | None = None,
    ) -> None:
        self.path = Path(path)
        self.kind = kind
        self.version = version
        self.synchronous = synchronous
        self.finish = finish
        """Run in every write transaction after its jobs, before COMMIT: what must be
        written with whatever the jobs wrote (a search index). If it fails, nothing of
        the transaction is. Told whether the transaction is one of a burst (``BURST``),
        so that work a later transaction can do for many may wait for it: a hint, which
        may change when work is done, never what."""
        self.idle = idle
        """One step of upkeep, run in a transaction of its own (not fsynced) when the
        writer is idle; True if there is more to do. A step that fails is logged, and
        the upkeep waits for the next idle moment."""
        self.due = due
        """Whether upkeep must not wait for an idle moment (asked on the event loop after
        each transaction): a step of it then goes before the next transaction."""
        self._idling: asyncio.TimerHandle | None = None  # the idle step to come
        self._upkeep = False  # idle work may be done: open, and not closing
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
        self._ended = -math.inf  # (loop time) when the last write transaction ended

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
        self._upkeep = True
        self._idle_later(IDLE_AFTER)  # what a past run left undone

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
        self._not_idle()
        self._upkeep = False  # a step running now is the last
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
        self._not_idle()
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
        burst = loop.time() - self._ended < BURST
        self._committing = True
        try:
            running = self._writer_thread.executor.submit(
                functools.partial(self._transaction, jobs, durable=durable, burst=burst)
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
        self._ended = asyncio.get_running_loop().time()
        if self.due is not None and self._upkeep and self.due() and self._idle_step(between=True):
            pass  # what is pending goes once the step is done (_idled)
        elif self._pending:
            self._flush()
        else:
            self._idle_later(IDLE_AFTER)
        waiters, self._waiters = self._waiters, []
        for count, waiter in waiters:
            if self._done >= count:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                self._waiters.append((count, waiter))

    def _not_idle(self) -> None:
        if self._idling is not None:
            self._idling.cancel()
            self._idling = None

    def _idle_later(self, delay: float) -> None:
        if self.idle is not None and self._upkeep:
            self._not_idle()
            self._idling = asyncio.get_running_loop().call_later(delay, self._idle_step)

    def _idle_step(self, *, between: bool = False) -> bool:
        """Start one step of idle work on the writer's thread, if it is still idle (or,
        ``between``, before the writes pending); False if it did not start. It holds the
        writer as a transaction does: writes that come meanwhile wait for it, then go in
        the next transaction."""
        self._not_idle()
        step = self.idle
        if step is None or not self._upkeep or self._committing:
            return False
        if self._pending and not between:
            return False
        loop = asyncio.get_running_loop()
        self._committing = True
        try:
            running = self._writer_thread.executor.submit(self._idle_transaction, step)
        except RuntimeError:  # the executor is shut down (closed meanwhile)
            self._committing = False
            return False
        running.add_done_callback(lambda done: loop.call_soon_threadsafe(self._idled, done))
        return True

    def _idled(self, done: concurrent.futures.Future[bool]) -> None:
        self._committing = False
        try:
            more = done.result()
        except Exception as exc:  # logged; tried again at the next idle moment
            logger.error("upkeep of %s store %s failed: %s", self.kind, self.path, exc)
            more = False
        if self._pending:
            self._flush()
        elif more:
            self._idle_later(0)

    def _idle_transaction(self, step: Callable[[sqlite3.Connection], bool]) -> bool:
        """On the writer's thread: ``step`` in a transaction that a power cut may lose
        (it is upkeep: done again later)."""
        db = self._writer_thread.connection
        assert db is not None
        if self._synchronous_now != "NORMAL" and self.synchronous == "FULL":
            db.execute("PRAGMA synchronous = NORMAL")
            self._synchronous_now = "NORMAL"
        db.execute("BEGIN IMMEDIATE")
        try:
            more = step(db)
            db.execute("COMMIT")
        except BaseException:
            self._rollback(db)
            raise
        return more

    async def _written(self, count: int) -> None:
        """Wait until the first ``count`` writes are done."""
        if self._done >= count:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((count, waiter))
        await waiter

    def _transaction(
        self, jobs: list[Job], *, durable: bool = True, burst: bool = False
    ) -> list[tuple[Any, Exception | None]]:
        """On the writer's thread: run ``jobs`` in one transaction. A job that raises is
        left out, and the transaction is run again without it. ``burst``: it began soon
        after the last one ended (``BURST``)."""
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
                if self.finish is not None:
                    # Writes waiting behind it: the event loop's list, read from this
                    # thread as it is now (a hint: finish).
                    self.finish(db, burst or bool(self._pending))
                db.execute("COMMIT")
            except Exception as exc:  # (not only SQLite's: the transaction must end)
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
        """Run a query on the reading connection: it sees committed data only."""
        return await self.read(lambda db: db.execute(sql, parameters).fetchall(), alone=True)

    async def read(self, job: Callable[[sqlite3.Connection], T], *, alone: bool = False) -> T:
        """Run ``job`` on the reading connection's thread, in one read transaction, once
        the writes queued before it are done (so a write not waited for, such as marking a
        message shipped, is seen by the reads that follow it): the queries it makes see
        one committed state (``alone``: it makes one, which is its own transaction
        already)."""
        if not self._open:
            raise StoreError(f"{self.kind} store {self.path} is not open: call start() first")
        self._flush()
        await self._written(self._queued)
        if not self._open:  # closed meanwhile (close() writes, and this waited for it)
            raise StoreError(f"{self.kind} store {self.path} is closed")

        def transaction() -> T:
            db = self._reader_thread.connection
            if db is None:  # closed while this read waited for the writes before it
                raise StoreError(f"{self.kind} store {self.path} is closed")
            if alone:
                return job(db)
            db.execute("BEGIN")
            try:
                return job(db)
            finally:
                db.execute("COMMIT")

        try:
            return await self._reader_thread.run(transaction)
        except sqlite3.Error as exc:
            raise StoreError(f"read from {self.kind} store {self.path} failed: {exc}") from exc
