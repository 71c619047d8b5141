"""Where each logged-in user is, and how a server reaches them: one small interface, with
an in-process implementation here (one server alone) and a Redis one (``redis_cluster.py``:
several server processes sharing one Redis).

The domain logic (``rendezvous.py``, ``mailbox.py``) asks a ``Cluster`` only this: is this
name taken (``claim``, unique across every node), let it go (``release``), who is online,
where is X (``lookup``: their certificate and addresses), and hand X this message
(``push``), wherever X is logged in. Presence news (someone logged in or out) is part of
``claim`` and ``release``: the cluster tells every node, and each node its own sessions.

A cluster calls back into its server through the ``Node`` protocol: deliver a message to
a local session, tell local sessions some presence news, list what this node holds (to
register it again after Redis lost it) and say whether one login is still here, drop a
session whose name another node now holds, and settle what a user of a dead node left.

Each login carries a token of its own (``Entry.token``): the same name logged in again
gets another, and ``release`` lets a name go only for the login that took it, so that an
old session on its way out never undoes the new one.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Protocol

import msgspec

from ..protocol import Presence, WireMessage

__all__ = ["Cluster", "Entry", "LocalCluster", "Node", "SortedNames"]


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    """A logged-in user as every node sees them: the node holding their session, the
    certificate they logged in with, and where they can be dialled."""

    name: str
    node: str
    certificate: str
    addresses: list[tuple[str, int]]
    traversal: bool = False
    """They take part in hole punching (``hello.traversal``)."""
    token: str = ""
    """This login's own id: the same name logged in again gets another, so that what the
    old session does on its way out (``release``) cannot undo the new one."""


class Node(Protocol):
    """What a cluster needs of the server it serves."""

    def deliver(self, name: str, message: WireMessage) -> bool:
        """Push ``message`` to the session of ``name`` on this node; False if none."""

    def broadcast(self, news: Sequence[Presence]) -> None:
        """Push ``news``, in order, to every session on this node (none of it to the
        session it is about)."""

    def held(self) -> list[Entry]:
        """The users logged in on this node now."""

    def holds(self, name: str, token: str) -> bool:
        """True while the login ``token`` of ``name`` is under way or logged in here."""

    def evict(self, name: str, reason: str) -> None:
        """Drop the session of ``name``: it is logged in elsewhere now."""

    async def reaped(self, name: str) -> None:
        """``name`` was logged in on a node that died: end what they left (invitations)."""


class Cluster(Protocol):
    """Where users are, and how to reach them, across every node of a deployment."""

    node_id: str
    """This node's id (in logs, metrics and the directory)."""

    def attach(self, node: Node) -> None:
        """The server this cluster delivers to; called once, before ``start()``."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...

    @property
    def healthy(self) -> bool:
        """True while this node can reach the others (for ``/healthz``)."""

    async def claim(self, entry: Entry) -> bool:
        """Take ``entry.name`` for this node, and tell everyone it is online; False (and
        nothing done) if a live node holds it already. An older login of the name on this
        node (logging out still) is replaced: everyone hears it went offline, then online."""

    async def release(self, name: str, token: str) -> None:
        """Let ``name`` go, if this node holds it for the login ``token`` (not a newer
        one), and tell everyone it is offline."""

    async def lookup(self, name: str) -> Entry | None:
        """Where ``name`` is logged in now, or None."""

    async def online(self, limit: int) -> tuple[list[str], int]:
        """The first ``limit`` names online (sorted), and how many are online in all."""

    def push(self, name: str, message: WireMessage) -> None:
        """Hand ``message`` to ``name`` on whichever node holds them (never waits; pushes
        to one user arrive in the order they were made; nothing if they are offline)."""


class SortedNames:
    """Names kept in order, for ``list``: in chunks of up to ``2 * chunk``, so that adding
    or removing one costs the same with 100,000 online as with 1,000 (one sorted list
    moves half its pointers on each insert: 11 us at 100,000, on every login), and the
    first ``k`` cost O(k)."""

    def __init__(self, *, chunk: int = 512) -> None:
        self.chunk = chunk
        self._chunks: list[list[str]] = []
        self._lasts: list[str] = []  # the last name of each chunk, in order
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, name: str) -> None:
        """Add ``name`` (not there yet)."""
        if not self._chunks:
            self._chunks.append([name])
            self._lasts.append(name)
            self._count = 1
            return
        index = min(bisect.bisect_left(self._lasts, name), len(self._chunks) - 1)
        chunk = self._chunks[index]
        bisect.insort(chunk, name)
        self._lasts[index] = chunk[-1]
        self._count += 1
        if len(chunk) > 2 * self.chunk:
            half = len(chunk) // 2
            self._chunks[index : index + 1] = [chunk[:half], chunk[half:]]
            self._lasts[index : index + 1] = [chunk[half - 1], chunk[-1]]

    def discard(self, name: str) -> None:
        """Remove ``name`` if it is there."""
        index = bisect.bisect_left(self._lasts, name)
        if index == len(self._chunks):
            return
        chunk = self._chunks[index]
        position = bisect.bisect_left(chunk, name)
        if position == len(chunk) or chunk[position] != name:
            return
        del chunk[position]
        self._count -= 1
        if chunk:
            self._lasts[index] = chunk[-1]
        else:
            del self._chunks[index]
            del self._lasts[index]

    def first(self, limit: int) -> list[str]:
        """The first ``limit`` names, in order."""
        names: list[str] = []
        for chunk in self._chunks:
            if len(names) >= limit:
                break
            names.extend(chunk[: limit - len(names)])
        return names

    def clear(self) -> None:
        self._chunks.clear()
        self._lasts.clear()
        self._count = 0


class LocalCluster:
    """A cluster of one: the server's own process, no other node."""

    def __init__(self, node_id: str = "local") -> None:
        self.node_id = node_id
        self._node: Node | None = None
        self._entries: dict[str, Entry] = {}
        self._names = SortedNames()  # the keys of _entries, for "list"

    def attach(self, node: Node) -> None:
        self._node = node

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        self._entries.clear()
        self._names.clear()

    @property
    def healthy(self) -> bool:
        return True

    def _server(self) -> Node:
        if self._node is None:
            raise RuntimeError("the cluster is not attached to a server")
        return self._node

    async def claim(self, entry: Entry) -> bool:
        # One node: whatever holds the name is a login of this node, and the server lets
        # one login of a name under way at a time: one held still is logging out.
        held = self._entries.get(entry.name)
        self._entries[entry.name] = entry
        if held is not None and held.token == entry.token:
            return True  # the same login again: no news
        news = [Presence(user=entry.name, online=True)]
        if held is None:
            self._names.add(entry.name)
        else:
            news.insert(0, Presence(user=entry.name, online=False))
        self._server().broadcast(news)
        return True

    async def release(self, name: str, token: str) -> None:
        held = self._entries.get(name)
        if held is None or held.token != token:
            return  # gone, or a newer login's
        del self._entries[name]
        self._names.discard(name)
        self._server().broadcast([Presence(user=name, online=False)])

    async def lookup(self, name: str) -> Entry | None:
        return self._entries.get(name)

    async def online(self, limit: int) -> tuple[list[str], int]:
        return self._names.first(limit), len(self._names)

    def push(self, name: str, message: WireMessage) -> None:
        self._server().deliver(name, message)
