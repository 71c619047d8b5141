"""The transfers store, one suite over every backend: memory, and SQLite in tmp_path."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import msgspec
import pytest

import p2pchat
from p2pchat.peer import PeerSettings
from p2pchat.stores.transfers import RECENT


def record(
    id: str, *, state: str = "offered", at: float = 1.0, **fields: object
) -> p2pchat.TransferRecord:
    base = p2pchat.TransferRecord(
        owner="alice",
        id=id,
        contact="bob",
        outgoing=True,
        name=f"{id}.bin",
        size=10,
        sha256="0" * 64,
        state=state,
        created=at,
        updated=at,
    )
    return msgspec.structs.replace(base, **fields)


Backend = Callable[[], p2pchat.TransferStore]


@pytest.fixture(params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "memory":
        memory = p2pchat.MemoryTransferStore()
        return lambda: memory
    return lambda: p2pchat.SqliteTransferStore(tmp_path / "alice.transfers.sqlite3")


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[p2pchat.TransferStore]:
    opened = backend()
    await opened.start()
    yield opened
    await opened.close()


async def test_a_record_is_kept_and_replaced(store: p2pchat.TransferStore) -> None:
    await store.put(record("a"))
    assert await store.get("alice", "a") == record("a")
    done = record("a", state="done", done=10, told=True, at=2.0)
    await store.put(done)
    assert await store.get("alice", "a") == done
    assert await store.get("alice", "b") is None
    assert await store.get("carol", "a") is None  # another owner's


async def test_recent_lists_the_unfinished_and_the_last_ended(
    store: p2pchat.TransferStore,
) -> None:
    for n in range(RECENT + 5):
        await store.put(record(f"e{n}", state="done", told=True, at=10.0 + n))
    await store.put(record("old-open", state="accepted", at=1.0))
    listed = await store.recent("alice")
    assert len(listed) == RECENT + 1  # every unfinished one, and the last RECENT others
    assert listed[0].id == f"e{RECENT + 4}"  # newest first
    assert listed[-1].id == "old-open"
    assert "e0" not in {r.id for r in listed}


async def test_pending_is_what_the_next_talk_has_to_say(store: p2pchat.TransferStore) -> None:
    await store.put(record("open", state="accepted", at=3.0))
    await store.put(record("untold", state="cancelled", told=False, at=2.0))
    await store.put(record("told", state="refused", told=True, at=1.0))
    await store.put(record("other", state="accepted", contact="carol"))
    assert [r.id for r in await store.pending("alice", "bob")] == ["untold", "open"]


async def test_sqlite_keeps_them_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "alice.transfers.sqlite3"
    first = p2pchat.SqliteTransferStore(path)
    await first.start()
    await first.put(record("a", state="accepted", done=4, target="a.bin", path="/in"))
    await first.close()
    again = p2pchat.SqliteTransferStore(path)
    await again.start()
    try:
        assert await again.get("alice", "a") == record(
            "a", state="accepted", done=4, target="a.bin", path="/in"
        )
    finally:
        await again.close()


def test_the_file_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="file_window: expected 65536 or more"):
        PeerSettings(file_window=1000)
    with pytest.raises(ValueError, match="file_window: expected 268435456 or less"):
        PeerSettings(file_window=2**30)
    assert PeerSettings(max_file_size=0).max_file_size == 0  # nothing accepted at all
    assert PeerSettings().max_file_size == 4 * 1024**3
