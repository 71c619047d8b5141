"""The field types every wire message is built from, and the base class of every message.

Validation happens in the decoder (``protocol.py``), against these types: a field of the
wrong type, too long, or not matching its pattern is a protocol error before any handler
sees it, so a handler never sees a malformed value.
"""

from __future__ import annotations

from typing import Annotated, Final, TypeAlias

import msgspec

__all__ = [
    "MAX_TIME",
    "MESSAGE_ID_PATTERN",
    "NAME_PATTERN",
    "Address",
    "Base",
    "Base64",
    "Host",
    "MessageId",
    "Port",
    "Reason",
    "Sealed",
    "Timestamp",
    "Token",
    "UserName",
    "Version",
]

NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}\Z"
r"""User names: 1 to 32 ASCII letters, digits, ``.``, ``_``, ``-``, starting with a letter or
digit. ASCII only, so that no two names look alike; ``\Z``, not ``$``, so that no trailing
newline slips through. The server also keeps names unique whatever their case."""

MESSAGE_ID_PATTERN: Final = r"^[A-Za-z0-9._:-]{1,64}\Z"
"""Message and mail item ids: 1 to 64 ASCII letters, digits, ``.``, ``_``, ``:``, ``-``."""

# Field types. Validation happens in the decoder, so a handler never sees a malformed value.
UserName: TypeAlias = Annotated[
    str, msgspec.Meta(min_length=1, max_length=32, pattern=NAME_PATTERN)
]
Token: TypeAlias = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Host: TypeAlias = Annotated[str, msgspec.Meta(max_length=255)]
Port: TypeAlias = Annotated[int, msgspec.Meta(ge=0, le=65535)]
Version: TypeAlias = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
"""A protocol version: a number of our own, never one past what any store or log takes."""
Address: TypeAlias = tuple[Host, Port]
Reason: TypeAlias = Annotated[str, msgspec.Meta(max_length=1024)]
Base64: TypeAlias = Annotated[str, msgspec.Meta(max_length=2048, pattern=r"^[A-Za-z0-9_-]*$")]
"""URL-safe base64 without padding: keys, signatures, nonces, certificates (DER)."""
Sealed: TypeAlias = Annotated[
    str, msgspec.Meta(min_length=1, max_length=60_000, pattern=r"^[A-Za-z0-9_-]*$")
]
"""A sealed mailbox item, base64 as above; the server bounds it further (mail_item_size)."""
MessageId: TypeAlias = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, pattern=MESSAGE_ID_PATTERN)
]
"""A message's id (a UUID from p2pchat) or a mail item's: printable ASCII, no spaces."""
MAX_TIME: Final = 253_402_300_799.0
"""The last second of the year 9999, in epoch seconds: the latest time a field may hold."""
Timestamp: TypeAlias = Annotated[float, msgspec.Meta(ge=0.0, le=MAX_TIME)]
"""Epoch seconds: finite (never NaN or infinite), not before 1970, not after ``MAX_TIME``."""


class Base(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Common configuration: immutable, keyword-only, tagged by ``type`` on the wire."""
