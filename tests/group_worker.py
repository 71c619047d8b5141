"""A group member process for crash tests: logs in, takes the group it is in (or waits to
be added to one) and prints each group message as it is handed over. Its messages and
its key are in files, so it can be SIGKILLed at any moment and started again.

    python tests/group_worker.py NAME PORT DIRECTORY
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


async def main(name: str, port: int, directory: Path) -> None:
    peer = p2pchat.Peer(
        name,
        server=("127.0.0.1", port),
        store=p2pchat.SqliteMessageStore(directory / f"{name}.sqlite3"),
        identity=p2pchat.Identity.load_or_create(directory / f"{name}.key"),
        reconnect_delay=(0.05, 0.5),
    )
    async with peer:
        say("ready")
        groups = await peer.groups()
        group = groups[0] if groups else await peer.next_group()
        say(f"in {group.name}")
        async for message in group:
            say(f"got {message.sender} {message.body}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    name, port, directory = sys.argv[1:4]
    asyncio.run(main(name, int(port), Path(directory)))
