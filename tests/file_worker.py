"""A peer process for file crash tests. Both roles keep their messages and transfers in
SQLite and their key in a file, so they can be SIGKILLed at any moment and started again.

    python tests/file_worker.py receiver NAME PORT DIRECTORY WINDOW INBOX
    python tests/file_worker.py sender NAME PORT DIRECTORY WINDOW CONTACT FILE

The receiver accepts every invitation and every file offered into INBOX, and prints
``accepted NAME`` and ``got PATH``; a transfer it had accepted goes on at the next talk.
The sender offers FILE to CONTACT unless its store says it did already, invites CONTACT
whenever no talk is open, and prints ``done`` once CONTACT has the file.
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


async def accept_talks(peer: p2pchat.Peer) -> None:
    while True:
        invitation = await peer.next_invitation()
        try:
            await invitation.accept()
        except p2pchat.P2PChatError:
            continue
        say("talking")


async def report(transfer: p2pchat.Transfer) -> None:
    try:
        say(f"got {await transfer.wait()}")
    except p2pchat.TransferError as exc:
        say(f"failed {type(exc).__name__}: {exc}")


async def accept_files(peer: p2pchat.Peer, inbox: Path, waiting: set[asyncio.Task[None]]) -> None:
    while True:
        offer = await peer.next_file()
        transfer = await offer.accept(inbox)
        say(f"accepted {offer.name}")
        waiting.add(asyncio.create_task(report(transfer)))


async def send(peer: p2pchat.Peer, contact: str, path: Path) -> None:
    mine = [t for t in await peer.transfers() if t.outgoing]
    transfer = mine[0] if mine else await peer.send_file(contact, path)
    say("offered")
    back = asyncio.Event()
    peer.on_presence = lambda user, online: back.set() if user == contact and online else None
    while transfer.state not in ("done", "refused", "cancelled", "failed"):
        back.clear()
        if contact not in peer.conversations:
            try:
                await peer.invite(contact, timeout=5)
            except (p2pchat.UserOffline, p2pchat.InviteRefused, p2pchat.ConnectionClosed):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(back.wait(), 5)
                continue
            except p2pchat.InviteTimeout:
                continue
            say("talking")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(transfer.changed(), 1)
    await transfer.wait()
    say("done")


async def main(
    role: str, name: str, port: int, directory: Path, window: int, rest: list[str]
) -> None:
    peer = p2pchat.Peer(
        name,
        server=("127.0.0.1", port),
        store=p2pchat.SqliteMessageStore(directory / f"{name}.sqlite3"),
        identity=p2pchat.Identity.load_or_create(directory / f"{name}.key"),
        reconnect_delay=(0.05, 0.5),
        file_window=window,
    )
    async with peer:
        say("ready")
        if role == "receiver":
            # What was accepted before a restart goes on at the next talk: looked up before
            # any talk is accepted (the rest of a file may arrive as soon as one is).
            waiting = {
                asyncio.create_task(report(transfer))
                for transfer in await peer.transfers()
                if not transfer.outgoing and transfer.state == "accepted"
            }
            await asyncio.gather(accept_talks(peer), accept_files(peer, Path(rest[0]), waiting))
        else:
            await send(peer, rest[0], Path(rest[1]))
            await asyncio.Event().wait()  # stay, so the test decides when to stop


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    role, name, port, directory, window, *rest = sys.argv[1:]
    asyncio.run(main(role, name, int(port), Path(directory), int(window), rest))
