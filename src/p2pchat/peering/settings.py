"""A peer's limits and timeouts (``PeerSettings``: defined, defaulted and checked here
once; ``Peer`` builds one from its keywords, ``PeerLimits``, or takes one whole, and
hands it to its parts, which read their limits from it), and
what its conversations share (``ChatSettings``: limits, timeouts and callbacks, in one
frozen object that every ``Conversation`` it opens is handed)."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypedDict

from ..errors import MessageTooLarge
from ..messages import MAX_FILE_WINDOW, MAX_ROSTER_MEMBERS, MIN_FILE_WINDOW, FileFrame, GroupNote
from ..protocol import DEFAULT_MAX_FRAME
from ..shared.checks import check_int, check_seconds
from ..store import Message

__all__ = ["ChatSettings", "Ended", "PeerLimits", "PeerSettings"]


def _limit(default: int | None, minimum: int = 1, maximum: int | None = None) -> Any:
    return field(default=default, metadata={"minimum": minimum, "maximum": maximum})


@dataclass(frozen=True, kw_only=True, slots=True)
class PeerSettings:
    """A peer's limits and timeouts; None turns off those typed ``| None``."""

    # Limits
    max_frame: int | None = _limit(DEFAULT_MAX_FRAME, 1024)
    max_message_size: int = _limit(16 * 1024)
    """Largest chat message body, in UTF-8 bytes; well under the frame limit."""
    max_queue: int = _limit(1024)
    max_invitations: int = _limit(64)
    max_handshakes: int = _limit(64)
    max_file_size: int = _limit(4 * 1024**3, 0)
    """Largest file this peer accepts, in bytes (an offer over it is refused)."""
    file_window: int = _limit(8 * 1024 * 1024, MIN_FILE_WINDOW, MAX_FILE_WINDOW)
    """File bytes a sender may have unacknowledged (we hold them; we sync and acknowledge
    each quarter of it): at most this much is sent again after a crash."""
    max_group_members: int = _limit(64, 2)
    """Most members of a group, this peer included (at most ``MAX_ROSTER_MEMBERS``): each
    group message is one envelope per member."""
    max_groups: int = _limit(256)
    """Most groups this peer is in at once."""
    # Timeouts
    connect_timeout: float | None = 10.0
    request_timeout: float | None = 15.0
    hello_timeout: float | None = 10.0
    direct_timeout: float | None = 3.0
    traverse_after: float = 0.3
    punch_timeout: float = 3.0
    relay_after: float = 1.0
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    reconnect_delay: tuple[float, float] | None = (0.2, 10.0)
    """(first, longest) wait between attempts to log in again; None: no reconnecting."""

    def __post_init__(self) -> None:
        for name, spec in _FIELDS.items():
            value = getattr(self, name)
            if value is None:
                reason = None if "None" in str(spec.type).split(" | ") else "expected a value"
            elif "minimum" in spec.metadata:
                reason = check_int(value, spec.metadata["minimum"])
                if reason is None and (most := spec.metadata["maximum"]) is not None:
                    reason = None if value <= most else f"expected {most} or less"
            elif name == "reconnect_delay":
                ok = isinstance(value, tuple) and len(value) == 2
                ok = ok and all(check_seconds(v) is None for v in value) and value[0] <= value[1]
                reason = None if ok else "expected (first, longest) seconds above 0, in order"
            else:
                reason = check_seconds(value)
            if reason is None and name == "max_group_members" and value > MAX_ROSTER_MEMBERS:
                reason = f"expected at most {MAX_ROSTER_MEMBERS}"
            if reason is not None:
                raise ValueError(f"{name}: {reason}, got {value!r}")

    @classmethod
    def build(cls, base: PeerSettings | None, limits: PeerLimits) -> PeerSettings:
        """``base`` (default: the defaults) with ``limits`` given as keywords, checked."""
        if base is None:
            return cls(**limits)
        return dataclasses.replace(base, **limits) if limits else base


class PeerLimits(TypedDict, total=False):
    """The keywords of ``Peer`` that are settings: each field of ``PeerSettings``, of the
    same type (defaults: its). A test holds the two together."""

    max_frame: int | None
    max_message_size: int
    max_queue: int
    max_invitations: int
    max_handshakes: int
    max_file_size: int
    file_window: int
    max_group_members: int
    max_groups: int
    connect_timeout: float | None
    request_timeout: float | None
    hello_timeout: float | None
    direct_timeout: float | None
    traverse_after: float
    punch_timeout: float
    relay_after: float
    ping_interval: float
    ping_timeout: float
    reconnect_delay: tuple[float, float] | None


_FIELDS: Mapping[str, dataclasses.Field[Any]] = {
    f.name: f for f in dataclasses.fields(PeerSettings)
}
PEER_DEFAULTS = PeerSettings()


class Ended(Protocol):
    """What ``on_end`` is told of the conversation that ended (a ``Conversation``)."""

    @property
    def peer(self) -> str:
        """The other user's name."""


@dataclass(frozen=True, slots=True)
class ChatSettings:
    """What a peer's conversations share: its limits and timeouts (``max_queue``,
    ``max_message_size``, ``ping_interval``, ``ping_timeout`` of ``limits``) and callbacks."""

    limits: PeerSettings = PEER_DEFAULTS
    on_shipped: Callable[[str, list[str]], None] | None = None
    on_end: Callable[[Ended], None] | None = None
    on_unsent: Callable[[str, list[Message]], None] | None = None
    """Called with (contact, messages of ours) stored after the end: for the next talk."""
    on_frame: Callable[[Any, FileFrame], None] | None = None
    """Called with (the conversation, a file frame received); without it, file frames
    are protocol errors. It must not wait: it runs in the reading task."""
    deliverable: Callable[[str, list[Message]], list[Message]] | None = None
    """Given (contact, messages received and stored, new), returns those for the inbox:
    the others (file offers) are taken by another part."""
    group_note: Callable[[Message], Awaitable[GroupNote]] | None = None
    """What a group message of ours carries on the wire (its roster)."""
    admit_group: (
        Callable[
            [str, Sequence[tuple[Message, GroupNote]]],
            Awaitable[tuple[list[Message], list[str], list[str]]],
        ]
        | None
    ) = None
    """Decides on group messages received: (taken, refused ids, ids left for later)."""
    on_group_stored: Callable[[Sequence[Message]], None] | None = None
    """Called with group messages received and stored, new ones."""

    def check_body(self, body: str) -> None:
        size = len(body.encode("utf-8"))
        if size > (most := self.limits.max_message_size):
            raise MessageTooLarge(f"message of {size} bytes is over the limit of {most} bytes")
