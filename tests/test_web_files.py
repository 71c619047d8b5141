"""Files on the web page, in a real Chromium: a file sent from one page (the picker, and
dropped on the conversation) and downloaded from the other, bytes compared; progress
bars on both sides; the download only with the token, as an attachment."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import aiohttp

import p2pchat
from p2pchat.frontends.web import WebUI

from .conftest import connect
from .test_web import assert_accessible, browser

with contextlib.suppress(ImportError):  # else the browser fixture skips, saying why
    from playwright.async_api import Browser, expect

__all__ = ["browser"]  # the fixture, shared


async def test_a_file_sent_from_one_page_is_downloaded_from_the_other(
    browser: Browser, tmp_path: Path
) -> None:
    source = tmp_path / "photo.jpg"
    source.write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    async with p2pchat.SignallingServer(port=0) as server:
        where = ("127.0.0.1", server.port)
        async with (
            p2pchat.Peer("alice", server=where) as alice,
            p2pchat.Peer("bob", server=where) as bob,
        ):
            await connect(alice, bob)
            async with (
                WebUI(alice, uploads=tmp_path / "up") as alice_ui,
                WebUI(bob, downloads=tmp_path / "bob-downloads") as bob_ui,
            ):
                sender = await (await browser.new_context()).new_page()
                receiver = await (await browser.new_context(accept_downloads=True)).new_page()
                await sender.goto(alice_ui.url)
                await receiver.goto(bob_ui.url)
                await sender.get_by_label("Name", exact=True).fill("bob")
                await sender.get_by_role("button", name="Open").click()
                await sender.get_by_label("File to send").set_input_files(str(source))
                await sender.get_by_role("button", name="Send file").click()

                files = receiver.get_by_role("list", name="Files")
                await files.get_by_role("button", name="Accept photo.jpg").click()
                link = files.get_by_role("link", name="Download photo.jpg")
                await expect(link).to_be_visible(timeout=15_000)
                await expect(
                    receiver.get_by_role("progressbar", name="photo.jpg: 100%")
                ).to_be_visible()
                await expect(
                    sender.get_by_role("list", name="Files").get_by_text("done, 100%")
                ).to_be_visible(timeout=10_000)
                async with receiver.expect_download() as waiting:
                    await link.click()
                download = await waiting.value
                assert download.suggested_filename == "photo.jpg"
                saved = tmp_path / "saved.jpg"
                await download.save_as(saved)
                assert saved.read_bytes() == source.read_bytes()
                await assert_accessible(receiver)

                # The download needs the token, and comes as an attachment.
                (transfer,) = await bob.transfers()
                base = bob_ui.url.split("?", 1)[0]
                async with aiohttp.ClientSession() as http:
                    async with http.get(f"{base}files/{transfer.id}") as answer:
                        assert answer.status == 401
                    url = f"{base}files/{transfer.id}?token={bob_ui.token}"
                    async with http.get(url) as answer:
                        assert answer.status == 200
                        assert answer.headers["Content-Disposition"] == (
                            "attachment; filename*=UTF-8''photo.jpg"
                        )
                        assert await answer.read() == source.read_bytes()
                    # An upload from another origin is refused, token or not.
                    base_a = alice_ui.url.split("?", 1)[0]
                    async with http.post(
                        f"{base_a}upload?user=bob&name=x.txt&token={alice_ui.token}",
                        data=b"x",
                        headers={"Origin": "http://evil.example"},
                    ) as answer:
                        assert answer.status == 403


async def test_a_file_dropped_on_the_conversation_is_offered(
    browser: Browser, tmp_path: Path
) -> None:
    async with p2pchat.SignallingServer(port=0) as server:
        where = ("127.0.0.1", server.port)
        async with (
            p2pchat.Peer("alice", server=where) as alice,
            p2pchat.Peer("bob", server=where) as bob,
        ):
            await connect(alice, bob)
            async with WebUI(alice) as alice_ui:
                page = await (await browser.new_context()).new_page()
                await page.goto(alice_ui.url)
                await page.get_by_label("Name", exact=True).fill("bob")
                await page.get_by_role("button", name="Open").click()
                dropped = await page.evaluate_handle(
                    """() => {
                        const data = new DataTransfer();
                        data.items.add(new File(["dropped bytes"], "notes.txt"));
                        return data;
                    }"""
                )
                await page.locator("#talk").dispatch_event("drop", {"dataTransfer": dropped})
                offer = await asyncio.wait_for(bob.next_file(), 10)
                assert (offer.name, offer.size, offer.sender) == ("notes.txt", 13, "alice")
                transfer = await offer.accept(tmp_path / "in")
                path = await asyncio.wait_for(transfer.wait(), 10)
                assert path is not None
                assert path.read_bytes() == b"dropped bytes"
