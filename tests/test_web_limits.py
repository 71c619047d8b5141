"""The web page's bounds, against what others can fill: its snapshot, its tabs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp

import p2pchat
from p2pchat.frontends.web import PAST_TALKS, WebUI
from p2pchat.store import Message

BODY = "x" * 16_000


async def cookie_session(ui: WebUI) -> tuple[aiohttp.ClientSession, str, str]:
    """A client that has opened the page with its token (and so holds its cookie)."""
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with session.get(ui.url) as response:
        assert response.status == 200
    base = ui.url.split("?", 1)[0]
    return session, base + "ws", "http://" + base.split("/")[2]


async def test_mail_from_many_accounts_cannot_swell_the_page_snapshot(
    server: p2pchat.SignallingServer,
) -> None:
    # What mail from PAST_TALKS accounts can leave in a store: 40 long messages from each.
    store = p2pchat.MemoryMessageStore()
    await store.start()
    senders = [f"sender{i}" for i in range(PAST_TALKS)]
    await store.add_many([Message.new(s, "bob", BODY) for _ in range(40) for s in senders])
    where = ("127.0.0.1", server.port)
    async with p2pchat.Peer("bob", server=where, store=store) as bob, WebUI(bob) as ui:
        session, socket_url, origin = await cookie_session(ui)
        async with session, session.ws_connect(socket_url, origin=origin) as socket:
            frame = await socket.receive(timeout=10)
            assert len(frame.data) <= ui.max_event_size  # it was 20 MB
            snapshot = json.loads(frame.data)
            talks = snapshot["talks"]
            assert sorted(t["user"] for t in talks) == sorted(senders)
            assert all(t["older"] for t in talks)  # the rest stays in the store
            assert sum(len(t["history"]) for t in talks) == 3  # as many as fit
            assert all(len(t["history"]) <= 1 for t in talks)  # each its newest first

            await socket.send_json({"type": "open", "user": "sender0"})
            frame = await socket.receive(timeout=10)
            talk = json.loads(frame.data)["talk"]
            assert len(frame.data) <= ui.max_event_size
            assert talk["user"] == "sender0"
            assert talk["older"]
            assert 0 < len(talk["history"]) < 40


async def test_pages_opened_all_at_once_stay_within_max_tabs(
    server: p2pchat.SignallingServer, tmp_path: Path
) -> None:
    where = ("127.0.0.1", server.port)
    store = p2pchat.SqliteMessageStore(tmp_path / "bob.sqlite3")  # a snapshot takes a while
    await store.start()
    await store.add(Message.new("alice", "bob", "hello"))
    peer = p2pchat.Peer("bob", server=where, store=store)
    async with peer as bob, WebUI(bob, max_tabs=3) as ui:
        session, socket_url, origin = await cookie_session(ui)
        async with session:

            async def open_page() -> aiohttp.ClientWebSocketResponse | int:
                try:
                    return await session.ws_connect(socket_url, origin=origin)
                except aiohttp.WSServerHandshakeError as refused:
                    return refused.status

            pages = await asyncio.gather(*(open_page() for _ in range(12)))
            opened = [p for p in pages if not isinstance(p, int)]
            assert len(opened) == 3
            assert sorted(p for p in pages if isinstance(p, int)) == [503] * 9
            for page in opened:  # each is counted once its snapshot is on its way
                assert json.loads((await page.receive(timeout=10)).data)["type"] == "snapshot"
            assert len(ui.tabs) == 3
            for page in opened:
                await page.close()


async def test_search_marks_count_as_javascript_does_and_older_pages_fit_an_event(
    server: p2pchat.SignallingServer,
) -> None:
    store = p2pchat.MemoryMessageStore()
    await store.add_many(
        [Message(id="w", sender="alice", recipient="bob", body="👋 Zebra, zébra!", sent_at=1.0)]
        + [
            Message(id=f"m{n}", sender="alice", recipient="bob", body=BODY, sent_at=10.0 + n)
            for n in range(30)
        ]
    )
    where = ("127.0.0.1", server.port)
    async with p2pchat.Peer("bob", server=where, store=store) as bob, WebUI(bob) as ui:
        session, socket_url, origin = await cookie_session(ui)
        async with session, session.ws_connect(socket_url, origin=origin) as socket:
            assert json.loads((await socket.receive(timeout=10)).data)["type"] == "snapshot"
            await socket.send_json({"type": "search", "text": "zebra"})
            found = json.loads((await socket.receive(timeout=10)).data)
            [match] = found["matches"]
            assert match["user"] == "alice"
            # 👋 is two UTF-16 units: "Zebra" starts at 3, as String.slice counts.
            assert match["marks"] == [[3, 8], [10, 15]]
            await socket.send_json({"type": "search", "text": '"zebra'})
            assert "quote" in json.loads((await socket.receive(timeout=10)).data)["reason"]

            before = {"id": "m29", "sender": "alice", "sent_at": 39.0}
            await socket.send_json({"type": "older", "user": "alice", "before": before})
            frame = await socket.receive(timeout=10)
            assert len(frame.data) <= ui.max_event_size
            page = json.loads(frame.data)
            assert page["type"] == "history"
            assert page["older"]
            ids = [m["id"] for m in page["messages"]]
            assert 0 < len(ids) < 29  # as many as fit
            assert ids[-1] == "m28"  # the newest before
