"""A peer process for crash tests: ``sender`` writes COUNT numbered messages to a contact,
``receiver`` accepts every invitation and prints what arrives, in talks or by mail. Both
keep their messages in SQLite and their key in a file, so they can be SIGKILLed at any
moment and started again.

    python tests/chat_worker.py ROLE NAME CONTACT PORT DIRECTORY [COUNT]

The sender picks up where its store says it stopped, re-invites until the contact is back,
and prints ``done`` once all COUNT messages are written and acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from pathlib import Path

import p2pchat


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


async def written(peer: p2pchat.Peer, contact: str) -> list[p2pchat.Message]:
    return [m for m in await peer.history(contact) if m.sender == peer.name]


async def send_all(peer: p2pchat.Peer, contact: str, count: int) -> None:
    back = asyncio.Event()
    peer.on_presence = lambda user, online: back.set() if user == contact and online else None
    while True:
        mine = await written(peer, contact)
        if len(mine) == count and all(m.shipped for m in mine):
            say("done")
            return
        back.clear()
        try:
            chat = await peer.invite(contact, timeout=5)
        except (p2pchat.UserOffline, p2pchat.InviteRefused, p2pchat.ConnectionClosed):
            # Away, or went away while invited ("went offline"): wait until it is back.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(back.wait(), 5)
            continue
        except p2pchat.InviteTimeout:
            continue
        say("talking")
        try:
            for n in range(len(mine), count):
                await chat.send(f"m{n:04d}")  # stored before it returns: a crash loses none
            await chat.wait_acknowledged()
        except p2pchat.ConversationClosed:
            pass  # what is not stored is written next time (the count comes from the store)
        await chat.close()


async def receive_mail(peer: p2pchat.Peer) -> None:
    while True:
        message = await peer.next_message()
        say(f"got {message.body}")


async def receive_all(peer: p2pchat.Peer) -> None:
    mail = asyncio.create_task(receive_mail(peer))  # messages that came while away
    assert mail is not None  # kept for as long as this runs
    while True:
        invitation = await peer.next_invitation()
        try:
            chat = await invitation.accept()
        except p2pchat.P2PChatError:
            continue
        say("talking")
        async for message in chat:
            say(f"got {message.body}")


async def main(role: str, name: str, contact: str, port: int, directory: Path, count: int) -> None:
    peer = p2pchat.Peer(
        name,
        server=("127.0.0.1", port),
        store=p2pchat.SqliteMessageStore(directory / f"{name}.sqlite3"),
        identity=p2pchat.Identity.load_or_create(directory / f"{name}.key"),
        reconnect_delay=(0.05, 0.5),
    )
    async with peer:
        say("ready")
        if role == "sender":
            await send_all(peer, contact, count)
            await asyncio.Event().wait()  # stay, so the test decides when to stop
        else:
            await receive_all(peer)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    role, name, contact, port, directory = sys.argv[1:6]
    count = int(sys.argv[6]) if len(sys.argv) > 6 else 0
    asyncio.run(main(role, name, contact, int(port), Path(directory), count))
