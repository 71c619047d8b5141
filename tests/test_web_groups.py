"""Groups on the web page, in a real Chromium: three ``p2pchat-peer NAME --web`` processes,
a group made on one page, messages among all three, members shown and changed."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

from .conftest import Launch
from .test_web import Person, assert_accessible, browser, person, server_port

with contextlib.suppress(ImportError):  # the fixture `browser` says if it is missing
    from playwright.async_api import Browser, expect

__all__ = ["browser", "server_port"]  # the fixtures, used here by name


async def open_group(someone: Person, name: str) -> None:
    await someone.page.get_by_role("button", name=f"Open the group {name}").click()
    await expect(someone.page.get_by_role("heading", name=f"Group {name}")).to_be_visible()


async def test_three_pages_talk_in_a_group_and_its_admin_changes_it(
    launch: Launch, browser: Browser, server_port: int, tmp_path: Path
) -> None:
    alice = await person(launch, browser, server_port, "alice", tmp_path)
    bob = await person(launch, browser, server_port, "bob", tmp_path)
    carol = await person(launch, browser, server_port, "carol", tmp_path)
    await expect(alice.talk_with("carol")).to_be_visible()
    page = alice.page
    # A name, one member ticked from who is online, another typed.
    await page.get_by_role("button", name="New group").click()
    await page.get_by_role("textbox", name="Group name").fill("friends")
    await page.get_by_role("checkbox", name="bob").check()
    await page.get_by_role("textbox", name="Other members").fill("carol")
    await page.get_by_role("button", name="Create").click()
    await expect(page.get_by_role("heading", name="Group friends")).to_be_visible()
    members = page.get_by_role("list", name="Members")
    await expect(members.get_by_role("listitem")).to_have_count(3)
    await expect(members).to_contain_text("admin")
    for other in (bob, carol):  # told they were added; the group is in their sidebar
        await expect(other.page.get_by_text("alice added you to the group friends")).to_be_visible()
    await open_group(bob, "friends")
    await carol.page.get_by_role("button", name="Open it").click()  # from the notice
    await expect(carol.page.get_by_role("heading", name="Group friends")).to_be_visible()
    for other in (bob, carol):
        others = other.page.get_by_role("list", name="Members")
        await expect(others.get_by_role("listitem")).to_have_count(3)
        await expect(other.page.get_by_role("button", name="Remove alice")).to_have_count(0)
    await alice.say("hello, friends")
    await bob.say("bob here")
    await carol.say("carol here")
    for someone in (alice, bob, carol):  # each sees all three, whoever wrote them
        chat = someone.page.get_by_role("list", name="Chat in the group friends")
        for text in ("hello, friends", "bob here", "carol here"):
            await expect(chat.get_by_text(text)).to_be_visible()
    await expect(page.locator("[data-shipped=true]")).to_have_count(1)  # both have it
    await assert_accessible(page)  # a group's talk, as its admin sees it
    await expect(page.get_by_role("button", name="Send file")).to_be_hidden()  # one person's
    await assert_accessible(bob.page)  # as a member sees it
    # A body that is HTML is shown as text, and runs nothing.
    hostile = "<img src=x onerror=alert(1)><script>alert(2)</script>"
    await bob.say(hostile)
    await expect(carol.page.get_by_text(hostile)).to_be_visible()
    assert await carol.page.locator("img").count() == 0
    # carol's search finds a group's message: named by its group, a click opens its talk.
    await carol.page.get_by_role("textbox", name="Name").fill("bob")
    await carol.page.get_by_role("button", name="Open", exact=True).click()
    await expect(carol.page.get_by_role("heading", name="bob (by mail)")).to_be_visible()
    await carol.page.get_by_role("searchbox", name="Search").fill("bob here")
    await carol.page.get_by_role("button", name="Find").click()
    results = carol.page.get_by_role("list", name="Search results")
    match = results.get_by_role("button", name=re.compile("^bob in the group friends"))
    await expect(match).to_have_count(1)
    await expect(match.locator("mark")).to_have_text(["bob", "here"])
    await assert_accessible(carol.page)  # a group's talk, the search beside it
    await match.click()
    await expect(carol.page.get_by_role("heading", name="Group friends")).to_be_visible()
    chat = carol.page.get_by_role("list", name="Chat in the group friends")
    await expect(chat.get_by_text("bob here")).to_be_visible()
    # bob looks at another talk: what comes in the group is counted unread on its tab.
    await bob.page.get_by_role("textbox", name="Name").fill("alice")
    await bob.page.get_by_role("button", name="Open", exact=True).click()
    await expect(bob.page.get_by_role("heading", name="alice (by mail)")).to_be_visible()
    await alice.say("while bob looks away")
    tabs = bob.page.get_by_role("navigation", name="Conversations")
    await tabs.get_by_role("button", name="friends (group), 1 unread").click()
    await expect(bob.page.get_by_text("while bob looks away")).to_be_visible()
    await expect(tabs.get_by_role("button", name="friends (group)", exact=True)).to_be_visible()
    # The admin removes carol: she is told, and bob sees two members.
    await page.get_by_role("button", name="Remove carol from the group").click()
    await expect(carol.page.get_by_text("You are no longer in the group friends")).to_be_visible()
    await expect(
        carol.page.get_by_role("heading", name="Group friends (you left it)")
    ).to_be_visible()
    await expect(carol.page.get_by_role("textbox", name="Message")).to_be_hidden()
    bobs = bob.page.get_by_role("list", name="Members")
    await expect(bobs.get_by_role("listitem")).to_have_count(2)
    await alice.say("without carol")
    await expect(bob.page.get_by_text("without carol")).to_be_visible()
    await expect(carol.page.get_by_text("without carol")).to_have_count(0)
    # bob is no admin: the page offers him no Add; he leaves, and alice sees it.
    await expect(bob.page.get_by_role("textbox", name="Add member")).to_be_hidden()
    await bob.page.get_by_role("button", name="Leave group").click()
    await expect(members.get_by_role("listitem")).to_have_count(1)
