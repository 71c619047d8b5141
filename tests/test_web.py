"""The web page, in a real Chromium (Debian's), driven by Playwright: real server process,
real ``p2pchat-peer NAME --web`` processes, each page its own browser context."""

from __future__ import annotations

import asyncio
import html
import os
import shutil
import stat
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Literal

import aiohttp
import msgspec
import pytest

import p2pchat
from p2pchat.frontends.demo import ScriptedProcess, command
from p2pchat.frontends.web import WebUI
from p2pchat.frontends.webevents import decode_command
from p2pchat.frontends.webhttp import SECURITY_HEADERS, Door

from .conftest import Launch, eventually, require

try:
    from playwright.async_api import (
        Browser,
        BrowserContext,
        Locator,
        Page,
        async_playwright,
        expect,
    )
except ImportError:  # pragma: no cover - reported by the fixture below
    async_playwright = None  # type: ignore[assignment]
try:  # axe-core's JavaScript, and a runner that injects it into a Playwright page
    from axe_playwright_python.async_playwright import Axe  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - reported by the fixture below
    Axe = None

CHROMIUM = os.environ.get("P2PCHAT_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The page follows the system's choice: axe-core checks it in both (light last, as the
# browser contexts here start).
SCHEMES: tuple[Literal["dark", "light"], ...] = ("dark", "light")
DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    require("playwright", async_playwright is not None, "pip install -e '.[test]'")
    require("axe-playwright-python", Axe is not None, "pip install -e '.[test]'")
    require("chromium", bool(shutil.which(CHROMIUM)), "apt-get install chromium")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def assert_accessible(page: Page) -> None:
    """axe-core's rules (WCAG 2 A and AA, and its best practices) find nothing wrong with
    the page as it is drawn now, in the dark colour scheme and in the light."""
    reports = []
    for scheme in SCHEMES:
        await page.emulate_media(color_scheme=scheme)
        results = await Axe().run(page)
        if results.violations_count:
            reports.append(f"In the {scheme} colour scheme: {results.generate_report()}")
    assert not reports, "\n\n".join(reports)


Start = Callable[..., Awaitable[ScriptedProcess]]


@pytest.fixture
async def server_port(launch: Launch, tmp_path: Path) -> int:
    server = await launch(
        "server",
        [*command("p2pchat-server"), "--port", "0", "--db", str(tmp_path / "server.sqlite3")],
    )
    return int((await server.expect(r"listening on 127\.0\.0\.1:(\d+)")).group(1))


class Person:
    """A ``p2pchat-peer NAME --web`` process and its page."""

    def __init__(self, process: ScriptedProcess, url: str, page: Page) -> None:
        self.process = process
        self.url = url
        self.page = page

    def talk_with(self, user: str) -> Locator:
        return self.page.get_by_role("list", name="Online").get_by_role(
            "button", name=f"Talk with {user}"
        )

    async def say(self, text: str) -> None:
        box = self.page.get_by_role("textbox", name="Message")
        await box.fill(text)
        await box.press("Enter")


async def person(
    launch: Launch,
    browser: Browser,
    port: int,
    name: str,
    tmp_path: Path,
    *,
    context: BrowserContext | None = None,
) -> Person:
    """``p2pchat-peer NAME --web``, and its page: in a browser context of its own unless
    one is given (two pages in one context share cookies, as a user's tabs do)."""
    process = await launch(
        name,
        [
            *command("p2pchat-peer"),
            name,
            "--server",
            f"127.0.0.1:{port}",
            "--db",
            str(tmp_path / f"{name}.sqlite3"),
            "--web",
            "127.0.0.1:0",
        ],
    )
    url = (await process.expect(r"web page: (http://127\.0\.0\.1:\d+/\S*\?token=\S+)")).group(1)
    if context is None:
        context = await browser.new_context(viewport={"width": 1100, "height": 640})
    page = await context.new_page()
    page.on("dialog", lambda dialog: pytest.fail(f"a script ran: {dialog.message}"))
    await page.goto(url)
    await expect(page.get_by_role("status", name="Server")).to_have_text("connected")
    return Person(process, url, page)


async def test_two_pages_talk_both_ways_and_see_delivery(
    launch: Launch, browser: Browser, server_port: int, tmp_path: Path
) -> None:
    alice = await person(launch, browser, server_port, "alice", tmp_path)
    bob = await person(launch, browser, server_port, "bob", tmp_path)
    await expect(alice.talk_with("bob")).to_be_visible()  # both see each other online
    await expect(bob.talk_with("alice")).to_be_visible()
    # No talk open: no message box to type into (what was typed there went nowhere).
    await expect(alice.page.get_by_role("textbox", name="Message")).to_be_hidden()
    await expect(alice.page.get_by_role("button", name="Leave")).to_be_hidden()
    await assert_accessible(alice.page)  # the first page
    await alice.talk_with("bob").click()
    invitation = bob.page.get_by_role("listitem", name="Invitation from alice")
    await expect(invitation).to_be_visible()
    await assert_accessible(bob.page)  # an invitation shown
    await invitation.get_by_role("button", name="Accept").click()
    await expect(alice.page.get_by_role("heading", name="Talking with bob")).to_be_visible()
    await expect(alice.page.locator("#talk-route")).to_have_text("direct (dialled)")
    await alice.say("hello bob")
    await expect(bob.page.get_by_text("hello bob")).to_be_visible()
    await bob.page.get_by_role("textbox", name="Message").fill("hello alice")
    await bob.page.get_by_role("button", name="Send", exact=True).click()
    await expect(alice.page.get_by_text("hello alice")).to_be_visible()
    await expect(alice.page.locator("[data-shipped=true]")).to_have_count(1)  # delivered
    await expect(bob.page.locator("[data-shipped=true]")).to_have_count(1)
    await expect(alice.page.locator("[data-shipped=false]")).to_have_count(0)
    await assert_accessible(alice.page)  # a talk open: messages both ways, delivered
    # A body that is HTML is shown as text, and runs nothing.
    hostile = "<img src=x onerror=alert(1)><script>alert(2)</script>"
    await alice.say(hostile)
    await expect(bob.page.get_by_text(hostile)).to_be_visible()
    assert await bob.page.locator("img").count() == 0
    await alice.page.get_by_role("button", name="Leave").click()
    await expect(bob.page.get_by_text("alice left the conversation")).to_be_visible()


async def test_search_opens_the_talk_at_the_message_and_scrolling_up_loads_older(
    launch: Launch, browser: Browser, server_port: int, tmp_path: Path
) -> None:
    # 600 messages with bob in alice's store: the page holds the last 200 at first.
    store = p2pchat.SqliteMessageStore(tmp_path / "alice.sqlite3")
    await store.start()
    await store.add_many(
        [
            p2pchat.Message(
                id=f"m{n:04}",
                sender="alice" if n % 2 else "bob",
                recipient="bob" if n % 2 else "alice",
                body="the Zébra crossing, \x1b[2J" if n == 5 else f"note {n}",
                sent_at=1.7e9 + 60 * n,
                shipped=True,
            )
            for n in range(600)
        ]
    )
    await store.close()
    alice = await person(launch, browser, server_port, "alice", tmp_path)
    page = alice.page
    said = page.locator("#messages li[data-id]")
    await (
        page.get_by_role("navigation", name="Conversations")
        .get_by_role("button", name="bob")
        .click()
    )
    await expect(said).to_have_count(200)
    await expect(said.first).to_have_attribute("data-id", "m0400")
    # Scrolled to the top: the 200 before come, and the view stays where it was.
    await page.locator("#messages").evaluate("list => { list.scrollTop = 0; }")
    await expect(said).to_have_count(400)
    await expect(said.first).to_have_attribute("data-id", "m0200")
    await expect(page.locator('#messages li[data-id="m0400"]')).to_be_in_viewport()
    await assert_accessible(page)  # older messages loaded, more still to come

    await page.get_by_role("searchbox", name="Search").fill("zebra")
    await page.get_by_role("button", name="Find").click()
    results = page.get_by_role("list", name="Search results")
    await expect(page.get_by_role("status").filter(has_text="found for zebra")).to_have_text(
        "1 message found for zebra"
    )
    await expect(results.get_by_role("listitem")).to_have_count(1)
    await expect(results.locator("mark")).to_have_text("Zébra")
    await expect(results.get_by_text("you to bob")).to_be_visible()
    await assert_accessible(page)  # search results, the match marked
    await results.get_by_role("button").click()  # 195 messages further back than loaded
    found = page.locator('#messages li[data-id="m0005"]')
    await expect(found).to_be_in_viewport()
    await expect(found).to_contain_text("the Zébra crossing, \x1b[2J")  # as text
    await expect(said).to_have_count(600)  # each once: nothing missed, nothing twice
    ids = await said.evaluate_all("items => items.map((item) => item.dataset.id)")
    assert ids == [f"m{n:04}" for n in range(600)]
    await expect(page.locator("#messages li.more")).to_have_count(0)  # the beginning


async def test_a_refusal_is_told_in_words(
    launch: Launch, browser: Browser, server_port: int, tmp_path: Path
) -> None:
    alice = await person(launch, browser, server_port, "alice", tmp_path)
    bob = await person(launch, browser, server_port, "bob", tmp_path)
    await alice.talk_with("bob").click()
    await bob.page.get_by_role("button", name="Refuse").click()
    await expect(alice.page.get_by_text("bob refused the invitation")).to_be_visible()
    await expect(bob.page.get_by_role("button", name="Refuse")).to_have_count(0)


async def test_two_conversations_at_once_and_history_on_reopening(
    launch: Launch, browser: Browser, server_port: int, tmp_path: Path
) -> None:
    alice = await person(launch, browser, server_port, "alice", tmp_path)
    bob = await person(launch, browser, server_port, "bob", tmp_path)
    carol = await person(launch, browser, server_port, "carol", tmp_path)
    for other, name in ((bob, "bob"), (carol, "carol")):
        await alice.talk_with(name).click()
        await other.page.get_by_role("button", name="Accept").click()
        await expect(alice.page.get_by_role("heading", name=f"Talking with {name}")).to_be_visible()
        await alice.say(f"hi {name}")
        await expect(other.page.get_by_text(f"hi {name}")).to_be_visible()
    await carol.say("carol here")  # while alice looks at carol's talk
    await bob.say("bob here")  # while alice does not look at bob's: unread
    tabs = alice.page.get_by_role("navigation", name="Conversations")
    await expect(tabs.get_by_role("button", name="bob, 1 unread")).to_be_visible()
    await expect(alice.page).to_have_title("(1) p2pchat — alice")
    await assert_accessible(alice.page)  # two talks, one unread
    await tabs.get_by_role("button", name="bob, 1 unread").click()
    await expect(alice.page.get_by_text("bob here")).to_be_visible()
    await expect(alice.page).to_have_title("p2pchat — alice")
    # A new page (or a reload) shows both talks with their history.
    await alice.page.reload()
    await expect(alice.page.get_by_text("bob here")).to_be_visible()
    await tabs.get_by_role("button", name="carol", exact=True).click()
    await expect(alice.page.get_by_text("carol here")).to_be_visible()
    await expect(alice.page.get_by_text("hi carol")).to_be_visible()
    # The picture in the README: bob has gone; what alice writes him waits, sealed.
    await bob.process.stop()
    await expect(alice.page.get_by_text("bob left the conversation")).to_be_visible()
    await tabs.get_by_role("button", name="bob", exact=True).click()
    await alice.say("Call me when you are back: this waits for you, sealed.")
    await expect(alice.page.locator("[data-shipped=false]")).to_have_count(1)
    await assert_accessible(alice.page)  # a peer stopped: its talk by mail, a message waits
    # Written to docs/ on request (make screenshot), not by every run of the suite.
    where = DOCS if os.environ.get("P2PCHAT_UPDATE_SCREENSHOT") == "1" else tmp_path
    await alice.page.screenshot(path=str(where / "web.png"))


async def test_writing_to_someone_away_reaches_them_when_they_come_back(
    launch: Launch, browser: Browser, server_port: int, tmp_path: Path
) -> None:
    alice = await person(launch, browser, server_port, "alice", tmp_path)
    bob = await person(launch, browser, server_port, "bob", tmp_path)
    await bob.process.stop()  # bob goes away
    await expect(alice.talk_with("bob")).to_have_count(0)
    await alice.page.get_by_role("textbox", name="Name").fill("bob")
    await alice.page.get_by_role("button", name="Open").click()
    await expect(alice.page.get_by_role("heading", name="bob (by mail)")).to_be_visible()
    await alice.say("written while you were away")
    await expect(alice.page.locator("[data-shipped=false]")).to_have_count(1)
    bob = await person(launch, browser, server_port, "bob", tmp_path)  # back, same store
    await (
        bob.page.get_by_role("navigation", name="Conversations")
        .get_by_role("button", name="alice")
        .click()
    )
    await expect(bob.page.get_by_text("written while you were away")).to_be_visible()
    await expect(alice.page.locator("[data-shipped=true]")).to_have_count(1)  # his receipt


async def test_the_page_follows_the_link_to_the_server(
    launch: Launch, browser: Browser, tmp_path: Path
) -> None:
    db = tmp_path / "server.sqlite3"
    server = await launch("server", [*command("p2pchat-server"), "--port", "0", "--db", str(db)])
    port = int((await server.expect(r"listening on 127\.0\.0\.1:(\d+)")).group(1))
    alice = await person(launch, browser, port, "alice", tmp_path)
    bob = await person(launch, browser, port, "bob", tmp_path)
    await alice.talk_with("bob").click()
    await bob.page.get_by_role("button", name="Accept").click()
    await expect(alice.page.get_by_role("heading", name="Talking with bob")).to_be_visible()
    link = alice.page.get_by_role("status", name="Server")
    await server.stop()  # mid-chat: the talk is direct, and goes on
    await expect(link).to_have_text("reconnecting", timeout=10_000)
    await alice.say("while the server is away")
    await expect(bob.page.get_by_text("while the server is away")).to_be_visible()
    await launch("server", [*command("p2pchat-server"), "--port", str(port), "--db", str(db)])
    await expect(link).to_have_text("connected", timeout=20_000)
    await expect(bob.page.get_by_role("status", name="Server")).to_have_text(
        "connected", timeout=20_000
    )
    await bob.say("and after it came back")
    await expect(alice.page.get_by_text("and after it came back")).to_be_visible()
    await expect(alice.page.locator("[data-shipped=false]")).to_have_count(0)


async def test_two_peers_pages_in_one_browser_and_a_restarted_peer(
    launch: Launch, browser: Browser, server_port: int, tmp_path: Path
) -> None:
    # As the README says: alice's page, then bob's, in the same browser (cookies are
    # shared by every port of 127.0.0.1: each page must keep its own).
    context = await browser.new_context(viewport={"width": 1100, "height": 640})
    alice = await person(launch, browser, server_port, "alice", tmp_path, context=context)
    bob = await person(launch, browser, server_port, "bob", tmp_path, context=context)
    await alice.page.reload()  # both cookies are in the jar now: alice's page is still hers
    await expect(alice.page.locator("#me-name")).to_have_text("alice")
    await expect(bob.page.locator("#me-name")).to_have_text("bob")
    await alice.talk_with("bob").click()
    await bob.page.get_by_role("button", name="Accept").click()
    await alice.say("one browser, two pages")
    await expect(bob.page.get_by_text("one browser, two pages")).to_be_visible()
    # Talk with bob again while talking: back to the talk, no second invitation.
    await alice.page.get_by_role("button", name="Leave").click()
    await expect(alice.page.get_by_text("You left the conversation with bob")).to_be_visible()
    await expect(
        bob.page.get_by_text("alice left the conversation (closed the talk)")
    ).to_be_visible()
    await alice.talk_with("bob").click()
    await bob.page.get_by_role("button", name="Accept").click()
    await expect(alice.page.get_by_role("heading", name="Talking with bob")).to_be_visible()
    await alice.talk_with("bob").click()
    await expect(alice.page.get_by_text("Inviting bob")).to_have_count(0)
    await expect(bob.page.get_by_role("listitem", name="Invitation from alice")).to_have_count(0)
    # alice restarts: a new address (a new token); the old page says so, the new one
    # works in the same browser and lists the talk with bob, with its history.
    await alice.process.stop()
    await expect(alice.page.get_by_role("status", name="Server")).to_contain_text(
        "the peer has stopped"
    )
    await assert_accessible(alice.page)  # the page's own peer stopped
    again = await person(launch, browser, server_port, "alice", tmp_path, context=context)
    tabs = again.page.get_by_role("navigation", name="Conversations")
    await tabs.get_by_role("button", name="bob", exact=True).click()
    await expect(again.page.get_by_text("one browser, two pages")).to_be_visible()
    await expect(again.page.get_by_role("heading", name="bob (by mail)")).to_be_visible()


async def test_without_the_token_nothing_is_served_and_other_sites_cannot_connect(
    launch: Launch, browser: Browser, server_port: int, tmp_path: Path
) -> None:
    alice = await person(launch, browser, server_port, "alice", tmp_path)
    base = alice.url.split("?", 1)[0]
    async with aiohttp.ClientSession() as session:
        for path in ("", "app.js", "ws"):
            async with session.get(base + path) as response:
                assert response.status == 401
                assert "alice" not in await response.text()
        host = base.split("/")[2]
        headers = {"Host": f"evil.example:{host.split(':')[1]}"}  # DNS rebinding
        async with session.get(alice.url, headers=headers) as response:
            assert response.status == 403
    jar = aiohttp.CookieJar(unsafe=True)  # keeps cookies for an IP address, as browsers do
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        async with session.get(alice.url) as response:  # the token: then a cookie
            assert response.status == 200
            assert "token" not in str(response.url)
            for name, value in SECURITY_HEADERS.items():  # no inline script, no framing
                assert response.headers[name] == value
            assert "script-src 'self';" in response.headers["Content-Security-Policy"]
        async with session.get(base + "nothing-here") as response:
            assert response.status == 404
            assert response.headers["Content-Security-Policy"]  # errors carry them too
        async with session.get(f"http://{host}/") as response:  # beside the page's path
            assert response.status == 401  # the cookie is the page's alone
        rebound = f"evil.example:{host.split(':')[1]}"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(
                base + "ws", origin=f"http://{rebound}", headers={"Host": rebound}
            )
        assert refused.value.status == 403
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(base + "ws", origin="http://evil.example")
        assert refused.value.status == 403
        async with session.ws_connect(base + "ws", origin=f"http://{host}") as socket:
            snapshot = await socket.receive_json(timeout=5)
            assert snapshot["type"] == "snapshot"
            assert snapshot["name"] == "alice"
            await socket.send_str('{"type": "send", "user": "x\\n", "body": 1}')  # malformed
            assert (await socket.receive_json(timeout=5))["type"] == "error"
    # Another site's page in the same browser cannot open the socket either.
    evil = await (await browser.new_context()).new_page()
    await evil.goto("about:blank")
    opened = await evil.evaluate(
        """url => new Promise(done => {
            const socket = new WebSocket(url);
            socket.onopen = () => done("open");
            socket.onerror = () => done("refused");
        })""",
        base.replace("http", "ws") + "ws",
    )
    assert opened == "refused"


async def test_a_changed_key_is_trusted_only_when_the_user_says_so(browser: Browser) -> None:
    # The library object, in this process: a peer bob's key was remembered for long ago.
    async with p2pchat.SignallingServer(port=0) as server:
        where = ("127.0.0.1", server.port)
        async with (
            p2pchat.Peer("alice", server=where) as alice,
            p2pchat.Peer("bob", server=where) as bob,
        ):
            old = p2pchat.Identity.generate()
            await alice.trust_key("bob", old.key)
            async with WebUI(alice) as ui:
                page = await (await browser.new_context()).new_page()
                await page.goto(ui.url)
                warning = page.get_by_text("Warning: the key of bob changed")
                await page.get_by_role("button", name="Talk with bob").click()
                await expect(warning).to_contain_text(old.fingerprint)
                await expect(warning).to_contain_text(bob.fingerprint)
                await assert_accessible(page)  # a warning, with its choices
                await page.get_by_role("button", name="Do not trust it").click()
                await expect(warning).to_have_count(0)
                assert await alice.known_key("bob") == old.key  # nothing trusted
                await page.get_by_role("button", name="Talk with bob").click()
                await expect(warning).to_contain_text(bob.fingerprint)
                assert await alice.known_key("bob") == old.key  # a warning trusts nothing
                await page.get_by_role("button", name="Trust the new key").click()
                while True:  # the first invitation was withdrawn when the key did not match
                    invitation = await asyncio.wait_for(bob.next_invitation(), 5)
                    try:
                        await invitation.accept()
                        break
                    except p2pchat.InvitationGone:
                        continue
                await expect(page.get_by_role("heading", name="Talking with bob")).to_be_visible()
                assert await alice.known_key("bob") == bob.identity.key


async def test_the_accessibility_check_finds_what_is_wrong(browser: Browser) -> None:
    # Grey on black only in the dark scheme: the check sees it there, and only there.
    page = await (await browser.new_context()).new_page()
    await page.set_content(
        "<!doctype html><html lang=en><title>t</title><style>"
        ":root { color-scheme: light dark } body { background: Canvas; color: CanvasText }"
        "@media (prefers-color-scheme: dark) { p { color: #333 } }"
        "</style><main><h1>t</h1><p>hard to read in the dark</p></main></html>"
    )
    with pytest.raises(AssertionError) as failed:
        await assert_accessible(page)
    report = str(failed.value)
    assert "In the dark colour scheme" in report
    assert "color-contrast" in report
    assert "In the light colour scheme" not in report
    await page.emulate_media(color_scheme="light")
    await page.add_style_tag(content="p { color: #aaa }")  # now the light one too
    with pytest.raises(AssertionError, match="In the light colour scheme"):
        await assert_accessible(page)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        '{"type": "launch"}',
        '{"type": "send", "user": "bob"}',
        '{"type": "send", "user": "bo b", "body": "x"}',
        '{"type": "send", "user": "bob", "body": "x", "extra": 1}',
        '{"type": "accept", "id": ""}',
        '{"type": "search", "text": ""}',
        '{"type": "older", "user": "bob", "before": {"id": "m1", "sender": "bob"}}',
        '{"type": "older", "user": "bob", "before": {"id": "m", "sender": "b", "sent_at": 1e400}}',
        '{"type": "older", "user": "bob", "before": {"id": "m", "sender": "bob", "sent_at": -1}}',
        '{"type": "create_group", "name": "friends", "members": ["bo b"]}',
        '{"type": "create_group", "name": "", "members": ["bob"]}',
        '{"type": "group_send", "group": "g1"}',
        '{"type": "group_add", "group": "g1", "user": 7}',
        "[]",
    ],
)
def test_malformed_commands_from_a_page_are_refused(text: str) -> None:
    with pytest.raises((msgspec.ValidationError, msgspec.DecodeError)):
        decode_command(text)


def launched_file(opened: Path) -> tuple[str, int, str]:
    """What the browser was given to open; the mode and text of the file it names."""
    launched = opened.read_text().strip()
    launcher = Path(urllib.parse.unquote(urllib.parse.urlsplit(launched).path))
    return launched, stat.S_IMODE(launcher.stat().st_mode), launcher.read_text()


async def test_open_starts_a_browser_and_a_page_off_loopback_is_warned_of(
    launch: Launch, server_port: int, tmp_path: Path
) -> None:
    opened = tmp_path / "opened"
    browser = tmp_path / "browser"
    browser.write_text(f'#!/bin/sh\necho "$1" > {opened}\n')
    browser.chmod(0o700)
    args = [*command("p2pchat-peer"), "alice", "--server", f"127.0.0.1:{server_port}"]
    alice = await launch(
        "alice", [*args, "--memory", "--web", "0", "--open"], env={"BROWSER": f"{browser} %s"}
    )
    url = (await alice.expect(r"web page: (\S+)")).group(1)
    await eventually(lambda: opened.exists() and opened.read_text().strip() != "")
    # The browser's command line, which ps shows every local user, names a private file
    # that leads to the page, never the token itself.
    launched, mode, page = launched_file(opened)
    assert launched.startswith("file://")
    assert "token" not in launched
    assert mode == 0o600
    assert f'url={html.escape(url)}"' in page
    bob_args = [*command("p2pchat-peer"), "bob", "--server", f"127.0.0.1:{server_port}"]
    bob = await launch("bob", [*bob_args, "--memory", "--web", "0.0.0.0:0"])
    await bob.expect(r"WARNING .*served on 0\.0\.0\.0, not only to this machine")
    alice.process.terminate()
    assert await alice.finish() == 0
    with pytest.raises(FileNotFoundError):  # gone with the peer (its token is dead anyway)
        launched_file(opened)


def test_host_names_a_page_answers_to() -> None:
    loopback, everywhere, lan = Door("127.0.0.1"), Door("0.0.0.0"), Door("192.0.2.7")
    for door in (loopback, everywhere, lan):
        door.port = 8540
    assert loopback.allows_host("127.0.0.1:8540")
    assert loopback.allows_host("localhost:8540")
    assert loopback.allows_host("[::1]:8540")
    assert not loopback.allows_host("127.0.0.1:8541")  # another port: another server
    assert not loopback.allows_host("evil.example:8540")  # DNS rebinding
    assert not loopback.allows_host("192.0.2.7:8540")
    assert everywhere.allows_host("192.0.2.7:8540")  # its LAN address, from elsewhere
    assert everywhere.allows_host("[2001:db8::1]:8540")
    assert not everywhere.allows_host("evil.example:8540")
    assert lan.allows_host("192.0.2.7:8540")
    assert not lan.allows_host("localhost:8540")
    assert not lan.allows_host("127.0.0.1:8540")
    assert (loopback.exposed, everywhere.exposed, lan.exposed) == (False, True, True)
