"""The rules a setting's value follows, for the settings of either side and the command
line: each returns what was expected (``"expected 1 or more"``), or None if the value is
one."""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Sequence

__all__ = ["check_int", "check_networks", "check_rate", "check_seconds"]


def check_int(value: object, minimum: int) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return "expected a whole number"
    return None if value >= minimum else f"expected {minimum} or more"


def check_seconds(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "expected a number above 0"
    return None if math.isfinite(value) and value > 0 else "expected a number above 0"


def check_rate(value: object) -> str | None:
    """A rate is (per second, burst): a number above 0, and a whole number 1 or more."""
    if (
        isinstance(value, tuple)
        and len(value) == 2
        and check_seconds(value[0]) is None
        and check_int(value[1], 1) is None
    ):
        return None
    return "expected (per second above 0, burst 1 or more)"


def check_networks(value: object) -> str | None:
    if isinstance(value, str) or not isinstance(value, Sequence):
        return "expected a list of networks"
    for network in value:
        try:
            ipaddress.ip_network(network)
        except (TypeError, ValueError) as exc:
            return f"expected CIDR[,CIDR...]: {exc}"
    return None
