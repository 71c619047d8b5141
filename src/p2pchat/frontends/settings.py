"""Every limit and timeout of the server, as command-line options and environment variables.

One table says what each ``SignallingServer`` keyword means; the defaults, which ones
``off`` turns off, and the range of each come from ``ServerSettings`` (where the library
checks them too), so the command and the library cannot disagree.
``p2pchat-server --max-connections 20000`` or ``P2PCHAT_MAX_CONNECTIONS=20000
p2pchat-server`` (options win over the environment).
A value of ``off`` turns a bound off where the library takes None.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..server import ServerSettings
from ..shared.checks import check_int, check_networks, check_seconds

__all__ = ["SERVER_SETTINGS", "Setting", "add_server_settings", "server_settings"]


_UNITS = {"s": 1.0, "second": 1.0, "min": 60.0, "minute": 60.0, "h": 3600.0}
_UNITS |= {"hour": 3600.0, "d": 86400.0, "day": 86400.0}
_SHOWN_UNITS = (("s", 1.0), ("min", 60.0), ("hour", 3600.0), ("day", 86400.0))


def _number(text: str, kind: Callable[[str], Any], minimum: int) -> Any:
    """A finite number of ``kind``: an int at least ``minimum``, or a float above 0."""
    noun = "a whole number" if kind is int else "a number"
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
    reason = check_int(value, minimum) if kind is int else check_seconds(value)
    if reason is not None:
        raise argparse.ArgumentTypeError(f"{reason}, got {text!r}")
    return value


def _rate(text: str) -> tuple[float, int]:
    """N/UNIT[/BURST] (10/hour/20, 20/s/200), or N[/BURST] per second (20/200).

    The burst (how many at once) defaults to N, at least 1."""
    parts = [part.strip() for part in text.split("/")]
    unit = 1.0
    if len(parts) >= 2 and parts[1].lower() in _UNITS:
        unit = _UNITS[parts.pop(1).lower()]
    try:
        if len(parts) > 2:
            raise argparse.ArgumentTypeError("too many parts")
        count = _number(parts[0], float, 0)
        burst = _number(parts[1], int, 1) if len(parts) == 2 else max(1, int(count))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected N/UNIT/BURST (N above 0 per UNIT s, min, hour or day; BURST 1 or more; "
            f"e.g. 10/hour/20) or off, got {text!r}"
        ) from None
    return count / unit, burst


def _show_rate(rate: float, burst: int) -> str:
    """The rate in the largest unit of these that makes it a whole number: 10/hour/20."""
    for unit, seconds in _SHOWN_UNITS:
        count = rate * seconds
        if count >= 1 and abs(count - round(count)) < 1e-6 * count:
            return f"{round(count)}/{unit}/{burst}"
    return f"{rate * 86400:g}/day/{burst}"


def _networks(text: str) -> tuple[str, ...]:
    """CIDR[,CIDR...]: each a network (10.0.0.0/8, fd00::/8); an empty list trusts none."""
    networks = tuple(n.strip() for n in text.split(",") if n.strip())
    if (reason := check_networks(networks)) is not None:
        raise argparse.ArgumentTypeError(reason)
    return networks


@dataclass(frozen=True)
class Setting:
    """One keyword of SignallingServer as an option, with its help; what it takes is
    ``ServerSettings``'s: ``kind`` is int (at least ``minimum``), float (seconds, above
    0), rate or networks."""

    name: str
    help: str

    @property
    def kind(self) -> str:
        return ServerSettings.kind(self.name)

    @property
    def minimum(self) -> int:
        return ServerSettings.minimum(self.name)

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def variable(self) -> str:
        return "P2PCHAT_" + self.name.upper()

    @property
    def optional(self) -> bool:
        """True if the library takes None for it: then ``off`` turns it off."""
        return ServerSettings.optional(self.name)

    @property
    def metavar(self) -> str:
        shown = {"int": "N", "float": "SECONDS", "rate": "N/UNIT/BURST", "networks": "CIDR,..."}
        return shown[self.kind] + ("|off" if self.optional else "")

    def parse(self, text: str) -> Any:
        """The value of ``text``; ArgumentTypeError, in one line, if it is not one."""
        if text.strip().lower() == "off" and self.optional:
            return None
        if self.kind == "rate":
            return _rate(text)
        if self.kind == "networks":
            return _networks(text)
        return _number(text, int if self.kind == "int" else float, self.minimum)


SERVER_SETTINGS: tuple[Setting, ...] = (
    # Limits
    Setting("max_connections", "connections at once; beyond: server_busy"),
    Setting("max_connections_per_address", "connections per address (IPv6: per /64)"),
    Setting("trusted_networks", "networks with no per-address bounds"),
    Setting("registration_rate", "new names per address"),
    Setting("backlog", "connections waiting to be accepted"),
    Setting("rate_limit", "requests per connection"),
    Setting("max_frame", "largest frame, in bytes"),
    Setting("max_list", "names in one answer to ls"),
    Setting("presence_broadcast", "users online beyond which logins are told to watchers only"),
    Setting("outbox_size", "messages' worth (256 bytes each) unsent to a peer: then dropped"),
    Setting("max_invitations", "pending invitations per user, sent and received"),
    Setting("max_invitations_per_pair", "pending invitations from one user to one"),
    Setting("max_relays", "relayed conversations at once (0: no relay)"),
    Setting("max_relays_per_user", "relayed conversations per user"),
    Setting("relay_rate", "bytes per second each way in one relay"),
    Setting("max_punches", "hole punch requests passed on per invitation and side"),
    Setting("mailbox_items", "mail items kept per recipient (0: no mail)"),
    Setting("mailbox_bytes", "bytes of mail kept per recipient"),
    Setting("mailbox_items_per_sender", "of those, mail items from one sender"),
    Setting("mailbox_bytes_per_sender", "of those, bytes of mail from one sender"),
    Setting("mail_item_size", "largest sealed mail item, in bytes"),
    Setting("deposit_rate", "mail deposits per sender"),
    Setting("receipt_rate", "mail receipts per user"),
    Setting("redis_connections", "connections to Redis at most (with --redis)"),
    # Timeouts
    Setting("hello_timeout", "seconds a new connection has to log in"),
    Setting("invitation_ttl", "seconds an unanswered invitation lives"),
    Setting("dial_window", "seconds an accepted invitation allows a relay request"),
    Setting("ping_interval", "seconds of quiet before a ping"),
    Setting("ping_timeout", "seconds more without an answer before a drop"),
    Setting("relay_timeout", "seconds the first side of a relay waits for the second"),
    Setting("relay_idle", "seconds a relay may pass nothing before it ends"),
    Setting("relay_lifetime", "seconds one relayed conversation may last"),
    Setting("mail_ttl", "seconds a mail item is kept"),
    Setting("redis_timeout", "seconds any Redis call may take (with --redis)"),
    Setting("heartbeat_interval", "seconds between a node's heartbeats (with --redis)"),
    Setting("node_ttl", "seconds without a heartbeat before a node counts as dead"),
)


def _defaults() -> Mapping[str, Any]:
    defaults = ServerSettings()
    return {s.name: getattr(defaults, s.name) for s in SERVER_SETTINGS}


def _shown(value: Any) -> str:
    if value is None:
        return "off"
    if isinstance(value, tuple) and len(value) == 2 and not isinstance(value[0], str):
        return _show_rate(*value)
    if isinstance(value, tuple):
        return ",".join(value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def add_server_settings(
    parser: argparse.ArgumentParser, environ: Mapping[str, str] = os.environ
) -> None:
    """Add an option per setting; its default is the environment's, else the library's."""
    group = parser.add_argument_group(
        "limits and timeouts",
        "each also from the environment: P2PCHAT_<NAME>, e.g. "
        "P2PCHAT_MAX_CONNECTIONS; 'off' turns a bound off where |off is shown; a rate is "
        "N/UNIT/BURST: N per UNIT (s, min, hour, day), BURST at once (e.g. 10/hour/20)",
    )
    defaults = _defaults()
    for setting in SERVER_SETTINGS:
        default = defaults[setting.name]
        if setting.variable in environ:
            try:
                default = setting.parse(environ[setting.variable])
            except argparse.ArgumentTypeError as exc:
                parser.error(f"${setting.variable}: {exc}")
        group.add_argument(
            setting.option,
            type=setting.parse,
            default=default,
            metavar=setting.metavar,
            help=f"{setting.help} (default {_shown(default)}; ${setting.variable})",
        )


def server_settings(args: argparse.Namespace) -> ServerSettings:
    """The server's settings from parsed options (each from its option, else its
    variable, else the default), checked once: ``SignallingServer(settings=...)``."""
    return ServerSettings(**{s.name: getattr(args, s.name) for s in SERVER_SETTINGS})
