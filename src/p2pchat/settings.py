"""Every limit and timeout of the server, as command-line options and environment variables.

One table says what each ``SignallingServer`` keyword means; the defaults come from the
signature itself, so the two cannot disagree. ``p2pchat-server --max-connections 20000``
or ``P2PCHAT_MAX_CONNECTIONS=20000 p2pchat-server`` (options win over the environment).
A value of ``off`` turns a bound off where the library takes None.
"""

from __future__ import annotations

import argparse
import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["SERVER_SETTINGS", "Setting", "add_server_settings", "server_settings"]


def _rate(text: str) -> tuple[float, int] | None:
    """RATE/BURST (per second, at once), or off."""
    if text == "off":
        return None
    rate, sep, burst = text.partition("/")
    try:
        return float(rate), int(burst) if sep else max(1, int(float(rate)))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected RATE/BURST or off, got {text!r}") from None


def _optional(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        if text == "off":
            return None
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number or off, got {text!r}") from None

    parse.__name__ = kind.__name__
    return parse


def _networks(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


@dataclass(frozen=True)
class Setting:
    name: str
    parse: Callable[[str], Any]
    help: str

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def variable(self) -> str:
        return "P2PCHAT_" + self.name.upper()


INT, FLOAT = _optional(int), _optional(float)

SERVER_SETTINGS: tuple[Setting, ...] = (
    # Limits
    Setting("max_connections", INT, "connections at once; beyond: server_busy"),
    Setting("max_connections_per_address", INT, "connections per address (IPv6: per /64)"),
    Setting("trusted_networks", _networks, "comma-separated networks with no per-address bounds"),
    Setting("registration_rate", _rate, "new names per address, RATE/BURST per second"),
    Setting("backlog", INT, "connections waiting to be accepted"),
    Setting("rate_limit", _rate, "requests per connection, RATE/BURST per second"),
    Setting("max_frame", INT, "largest frame, in bytes"),
    Setting("max_list", INT, "names in one answer to ls"),
    Setting(
        "presence_broadcast", INT, "users online beyond which logins are told to watchers only"
    ),
    Setting("outbox_size", INT, "messages' worth (256 bytes each) unsent to a peer: then dropped"),
    Setting("max_invitations", INT, "pending invitations per user, sent and received"),
    Setting("max_invitations_per_pair", INT, "pending invitations from one user to one"),
    Setting("max_relays", INT, "relayed conversations at once"),
    Setting("max_relays_per_user", INT, "relayed conversations per user"),
    Setting("relay_rate", INT, "bytes per second each way in one relay"),
    Setting("max_punches", INT, "hole punch requests passed on per invitation and side"),
    Setting("mailbox_items", INT, "mail items kept per recipient"),
    Setting("mailbox_bytes", INT, "bytes of mail kept per recipient"),
    Setting("mailbox_items_per_sender", INT, "of those, mail items from one sender"),
    Setting("mailbox_bytes_per_sender", INT, "of those, bytes of mail from one sender"),
    Setting("mail_item_size", INT, "largest sealed mail item, in bytes"),
    Setting("deposit_rate", _rate, "mail deposits per sender, RATE/BURST per second"),
    Setting("receipt_rate", _rate, "mail receipts per user, RATE/BURST per second"),
    Setting("redis_connections", INT, "connections to Redis at most (with --redis)"),
    # Timeouts
    Setting("hello_timeout", FLOAT, "seconds a new connection has to log in"),
    Setting("invitation_ttl", FLOAT, "seconds an unanswered invitation lives"),
    Setting("dial_window", FLOAT, "seconds an accepted invitation allows a relay request"),
    Setting("ping_interval", FLOAT, "seconds of quiet before a ping"),
    Setting("ping_timeout", FLOAT, "seconds more without an answer before a drop"),
    Setting("relay_timeout", FLOAT, "seconds the first side of a relay waits for the second"),
    Setting("relay_idle", FLOAT, "seconds a relay may pass nothing before it ends"),
    Setting("relay_lifetime", FLOAT, "seconds one relayed conversation may last"),
    Setting("mail_ttl", FLOAT, "seconds a mail item is kept"),
    Setting("redis_timeout", FLOAT, "seconds any Redis call may take (with --redis)"),
    Setting("heartbeat_interval", FLOAT, "seconds between a node's heartbeats (with --redis)"),
    Setting("node_ttl", FLOAT, "seconds without a heartbeat before a node counts as dead"),
)


def _defaults() -> Mapping[str, Any]:
    from .server import SignallingServer

    parameters = inspect.signature(SignallingServer.__init__).parameters
    return {s.name: parameters[s.name].default for s in SERVER_SETTINGS}


def _shown(value: Any) -> str:
    if value is None:
        return "off"
    if isinstance(value, tuple) and len(value) == 2 and not isinstance(value[0], str):
        return f"{value[0]:g}/{value[1]}"
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
        "P2PCHAT_MAX_CONNECTIONS; 'off' turns a bound off",
    )
    defaults = _defaults()
    for setting in SERVER_SETTINGS:
        default = defaults[setting.name]
        if setting.variable in environ:
            default = setting.parse(environ[setting.variable])
        group.add_argument(
            setting.option,
            type=setting.parse,
            default=default,
            metavar="N",
            help=f"{setting.help} (default {_shown(default)}; ${setting.variable})",
        )


def server_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments for SignallingServer from parsed options."""
    return {s.name: getattr(args, s.name) for s in SERVER_SETTINGS}
