"""Every limit and timeout of a server, in one frozen object, checked in one place.

``ServerSettings`` holds them with their defaults; ``SignallingServer`` builds one from its
keyword arguments (``ServerLimits``: their names and types, their defaults are these) or
takes one whole, keeps it as ``server.settings`` and hands it to each of its parts, which
read their limits from it. The command line builds its options and environment variables
from its fields (``frontends/settings.py``), so that a limit is defined once. A value
outside its range is a ValueError naming the keyword, whoever gives it:
``max_connections=-5`` is refused by the library as ``--max-connections -5`` is by the
command. The rules themselves are ``shared/checks.py``'s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

from ..protocol import DEFAULT_MAX_FRAME
from ..shared.checks import check_int, check_networks, check_rate, check_seconds

__all__ = ["DEFAULTS", "ServerLimits", "ServerSettings"]


def _limit(default: int | None, minimum: int = 1) -> Any:
    return field(default=default, metadata={"kind": "int", "minimum": minimum})


def _seconds(default: float | None) -> Any:
    return field(default=default, metadata={"kind": "float"})


def _rate(default: tuple[float, int] | None) -> Any:
    return field(default=default, metadata={"kind": "rate"})


@dataclass(frozen=True, kw_only=True, slots=True)
class ServerSettings:
    """A server's limits and timeouts; None turns off those typed ``| None``."""

    # Limits
    max_frame: int | None = _limit(DEFAULT_MAX_FRAME, 1024)
    max_list: int = _limit(1000)
    presence_broadcast: int | None = _limit(250, 0)
    outbox_size: int = _limit(1024)
    rate_limit: tuple[float, int] | None = _rate((20.0, 200))
    backlog: int = _limit(1024)
    max_connections: int = _limit(4096)
    max_connections_per_address: int | None = _limit(256)
    registration_rate: tuple[float, int] | None = _rate((10 / 3600, 20))
    trusted_networks: Sequence[str] = field(
        default=("127.0.0.0/8", "::1/128"), metadata={"kind": "networks"}
    )
    max_relays: int = _limit(100, 0)
    max_relays_per_user: int = _limit(2, 0)
    relay_rate: int | None = _limit(1 << 20)
    max_punches: int = _limit(6, 0)
    max_invitations: int = _limit(16)
    max_invitations_per_pair: int = _limit(2)
    mailbox_items: int | None = _limit(1000, 0)
    mailbox_bytes: int | None = _limit(8 << 20, 0)
    mailbox_items_per_sender: int | None = _limit(250)
    mailbox_bytes_per_sender: int | None = _limit(2 << 20)
    mail_item_size: int = _limit(32 * 1024)
    deposit_rate: tuple[float, int] | None = _rate((10.0, 100))
    receipt_rate: tuple[float, int] | None = _rate((10.0, 100))
    redis_connections: int = _limit(32)
    # Timeouts
    hello_timeout: float | None = _seconds(10.0)
    invitation_ttl: float = _seconds(120.0)
    dial_window: float = _seconds(60.0)
    ping_interval: float = _seconds(20.0)
    ping_timeout: float = _seconds(20.0)
    relay_timeout: float = _seconds(10.0)
    relay_idle: float | None = _seconds(60.0)
    relay_lifetime: float | None = _seconds(4 * 3600.0)
    mail_ttl: float = _seconds(7 * 86400.0)
    redis_timeout: float = _seconds(5.0)
    heartbeat_interval: float = _seconds(1.0)
    node_ttl: float = _seconds(5.0)

    def __post_init__(self) -> None:
        for name in NAMES:
            if (reason := self.check(name, getattr(self, name))) is not None:
                raise ValueError(f"{name}: {reason}, got {getattr(self, name)!r}")

    @staticmethod
    def check(name: str, value: object) -> str | None:
        """What ``name`` expects if ``value`` is not one (None if it is)."""
        if value is None:
            return None if OPTIONAL[name] else "expected a value (it cannot be turned off)"
        spec = FIELDS[name].metadata
        if spec["kind"] == "int":
            return check_int(value, spec["minimum"])
        if spec["kind"] == "float":
            return check_seconds(value)
        if spec["kind"] == "rate":
            return check_rate(value)
        return check_networks(value)

    @classmethod
    def build(cls, base: ServerSettings | None, limits: ServerLimits) -> ServerSettings:
        """``base`` (default: the defaults) with ``limits`` given as keywords, checked."""
        if base is None:
            return cls(**limits)
        return dataclasses.replace(base, **limits) if limits else base

    @staticmethod
    def kind(name: str) -> str:
        """``int``, ``float`` (seconds), ``rate`` or ``networks``."""
        return str(FIELDS[name].metadata["kind"])

    @staticmethod
    def minimum(name: str) -> int:
        return int(FIELDS[name].metadata.get("minimum", 0))

    @staticmethod
    def optional(name: str) -> bool:
        """True if None turns it off (``... | None``)."""
        return OPTIONAL[name]


class ServerLimits(TypedDict, total=False):
    """The keywords of ``SignallingServer`` that are settings: each field of
    ``ServerSettings``, of the same type (defaults: its). A test holds the two together."""

    max_frame: int | None
    max_list: int
    presence_broadcast: int | None
    outbox_size: int
    rate_limit: tuple[float, int] | None
    backlog: int
    max_connections: int
    max_connections_per_address: int | None
    registration_rate: tuple[float, int] | None
    trusted_networks: Sequence[str]
    max_relays: int
    max_relays_per_user: int
    relay_rate: int | None
    max_punches: int
    max_invitations: int
    max_invitations_per_pair: int
    mailbox_items: int | None
    mailbox_bytes: int | None
    mailbox_items_per_sender: int | None
    mailbox_bytes_per_sender: int | None
    mail_item_size: int
    deposit_rate: tuple[float, int] | None
    receipt_rate: tuple[float, int] | None
    redis_connections: int
    hello_timeout: float | None
    invitation_ttl: float
    dial_window: float
    ping_interval: float
    ping_timeout: float
    relay_timeout: float
    relay_idle: float | None
    relay_lifetime: float | None
    mail_ttl: float
    redis_timeout: float
    heartbeat_interval: float
    node_ttl: float


FIELDS: Mapping[str, dataclasses.Field[Any]] = {
    f.name: f for f in dataclasses.fields(ServerSettings)
}
NAMES: tuple[str, ...] = tuple(FIELDS)
OPTIONAL: Mapping[str, bool] = {
    name: "None" in str(f.type).split(" | ") for name, f in FIELDS.items()
}
"""The settings that None turns off (``... | None``)."""
DEFAULTS = ServerSettings()
