"""A peer process for file crash tests: it accepts every invitation and every file
offered into INBOX, and prints ``accepted NAME`` and ``got PATH`` as they happen. It keeps
its messages and transfers in SQLite and its key in a file, so it can be SIGKILLed at any
moment and started again: a transfer it had accepted goes on at the next talk.

    python tests/file_worker.py NAME PORT DIRECTORY INBOX WINDOW
"""

from __future__ import annotations

import asyncio
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


async def accept_files(peer: p2pchat.Peer, inbox: Path) -> None:
    waiting = set()
    for transfer in await peer.transfers():  # accepted before a restart: they go on
        if not transfer.outgoing and transfer.state == "accepted":
            waiting.add(asyncio.create_task(report(transfer)))
    while True:
        offer = await peer.next_file()
        transfer = await offer.accept(inbox)
        say(f"accepted {offer.name}")
        waiting.add(asyncio.create_task(report(transfer)))


async def main(name: str, port: int, directory: Path, inbox: Path, window: int) -> None:
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
        await asyncio.gather(accept_talks(peer), accept_files(peer, inbox))


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    name, port, directory, inbox, window = sys.argv[1:6]
    asyncio.run(main(name, int(port), Path(directory), Path(inbox), int(window)))
