"""The p2pchat wire protocol: frames, typed messages and their codec. No I/O here.

A frame is a 4-byte big-endian unsigned length N followed by N bytes of UTF-8 JSON holding
one object whose string field ``type`` names the message. N = 0, or N over the limit, is a
protocol error, detected from the 4-byte header before any of the body is buffered.

Every connection starts with ``hello`` (or ``relay`` / ``starttls``). Requests carry an
``id`` that their answer echoes; pushes carry none. Three kinds of connection:

- peer <-> signalling server: login (hello, challenge, auth, welcome), list, whois,
  invitations (``rendezvous.py``), relay and punch requests, and the mailbox (deposit,
  collect, settle, receipt; ``mailbox.py``);
- relay: ``relay{ticket}`` then, once both sides are there, bytes passed unread;
- peer <-> peer: ``starttls{invitation}``, ``proceed``, TLS 1.3, then hello, msg, ack, bye
  (a connection the inviter opened starts with ``reverse{invitation}``), and the file
  frames: ``file_accept``, ``file_data``, ``file_ack``, ``file_done``, ``file_stop``.

One frame is not JSON: ``file_data`` carries file bytes as they are (base64 in JSON would
cost a third more to encrypt and much more to encode). Its body starts with a 0 byte,
which no JSON text does: ``0x00``, the id's length (1 byte), the id (ASCII), the offset
(8 bytes, big-endian), then the bytes. It is checked as strictly as any JSON message.

``docs/protocol.md`` describes each message, in order, with the rules around it.
"""

from __future__ import annotations

import re
import struct
from typing import Final, NoReturn

import msgspec

from .errors import FrameTooLarge, InvalidName, ProtocolError
from .messages import (
    MAX_FILE_DATA,
    MESSAGE_ID_PATTERN,
    NAME_PATTERN,
    REQUEST_TYPES,
    Accept,
    Accepted,
    Ack,
    Auth,
    Bye,
    Cancel,
    Cancelled,
    Challenge,
    Collect,
    Deposit,
    Error,
    FileAccept,
    FileAck,
    FileData,
    FileDone,
    FileStop,
    GroupNote,
    Hello,
    Invite,
    Invited,
    Key,
    ListUsers,
    Mail,
    MailItem,
    Msg,
    Ok,
    Ping,
    Pong,
    Presence,
    Proceed,
    PunchNote,
    PunchRequest,
    Receipt,
    Refuse,
    Refused,
    Relay,
    Relaying,
    RelayOffer,
    RelayRequest,
    RelayTicket,
    Request,
    Reverse,
    Ringing,
    Roster,
    Settle,
    StartTls,
    Users,
    Watch,
    Welcome,
    Whois,
    WireMessage,
)

__all__ = [
    "DEFAULT_MAX_FRAME",
    "DEFAULT_PORT",
    "NAME_PATTERN",
    "PROTOCOL_VERSION",
    "REQUEST_TYPES",
    "Accept",
    "Accepted",
    "Ack",
    "Auth",
    "Bye",
    "Cancel",
    "Cancelled",
    "Challenge",
    "Collect",
    "Decoder",
    "Deposit",
    "Error",
    "FileAccept",
    "FileAck",
    "FileData",
    "FileDone",
    "FileStop",
    "GroupNote",
    "Hello",
    "Invite",
    "Invited",
    "Key",
    "ListUsers",
    "Mail",
    "MailItem",
    "Msg",
    "Ok",
    "Ping",
    "Pong",
    "Presence",
    "Proceed",
    "PunchNote",
    "PunchRequest",
    "Receipt",
    "Refuse",
    "Refused",
    "Relay",
    "RelayOffer",
    "RelayRequest",
    "RelayTicket",
    "Relaying",
    "Request",
    "Reverse",
    "Ringing",
    "Roster",
    "Settle",
    "StartTls",
    "Users",
    "Watch",
    "Welcome",
    "Whois",
    "WireMessage",
    "check_name",
    "encode",
]

PROTOCOL_VERSION: Final = 3
DEFAULT_PORT: Final = 5535
"""Where a signalling server listens unless told otherwise."""
DEFAULT_MAX_FRAME: Final = 64 * 1024
HEADER: Final = struct.Struct(">I")


_json_encoder: Final = msgspec.json.Encoder()
_json_decoder: Final[msgspec.json.Decoder[WireMessage]] = msgspec.json.Decoder(WireMessage)


BINARY: Final = b"\x00"
"""How the body of a binary frame (``file_data``) starts."""
_OFFSET: Final = struct.Struct(">Q")
_MESSAGE_ID: Final = re.compile(MESSAGE_ID_PATTERN.encode("ascii"))
MAX_OFFSET: Final = 2**62


def encode(message: WireMessage, *, max_frame: int | None = DEFAULT_MAX_FRAME) -> bytes:
    """Return ``message`` as one frame. Raises FrameTooLarge over ``max_frame`` bytes."""
    if isinstance(message, FileData):
        ident = message.id.encode("ascii")
        body = b"".join(
            (BINARY, bytes((len(ident),)), ident, _OFFSET.pack(message.offset), message.data)
        )
    else:
        body = _json_encoder.encode(message)
    if max_frame is not None and len(body) > max_frame:
        raise FrameTooLarge(len(body), max_frame)
    return HEADER.pack(len(body)) + body


_NAME: Final = re.compile(NAME_PATTERN)


def check_name(name: str) -> str:
    """Return ``name`` if it follows the rule for user names; raise InvalidName if not."""
    if not isinstance(name, str) or _NAME.match(name) is None:
        raise InvalidName(
            f"invalid user name {name!r}: use 1 to 32 ASCII letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def decode_file_data(body: bytes) -> FileData:
    """Parse a binary ``file_data`` body. Raises ProtocolError saying what is wrong."""
    size = body[1] if len(body) > 1 else 0
    start = 2 + size + _OFFSET.size
    if size == 0 or len(body) <= start:
        raise ProtocolError("invalid file_data: too short")
    ident = body[2 : 2 + size]
    if _MESSAGE_ID.match(ident) is None:
        raise ProtocolError("invalid file_data: the id breaks the rule for ids")
    (offset,) = _OFFSET.unpack_from(body, 2 + size)
    if offset > MAX_OFFSET:
        raise ProtocolError(f"invalid file_data: offset {offset} out of range")
    if len(body) - start > MAX_FILE_DATA:
        raise ProtocolError(f"invalid file_data: over {MAX_FILE_DATA} bytes")
    return FileData(id=ident.decode("ascii"), offset=offset, data=body[start:])


def decode_body(body: bytes) -> WireMessage:
    """Parse one frame's body. Raises ProtocolError saying precisely what is wrong."""
    if body[:1] == BINARY:
        return decode_file_data(body)
    try:
        return _json_decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise ProtocolError(f"invalid message: {exc}") from None
    except msgspec.DecodeError as exc:
        if "UTF-8" in str(exc):  # msgspec >= 0.20 checks the encoding while it parses
            raise ProtocolError(f"invalid UTF-8: {exc}") from None
        raise ProtocolError(f"invalid JSON: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"invalid UTF-8: {exc.reason} at byte {exc.start}") from None
    except RecursionError:  # msgspec's own bound on nesting, on [[[[... in a hostile frame
        raise ProtocolError("invalid JSON: nested too deeply") from None


class Decoder:
    """Incremental frame decoder: feed it bytes in any chunks, pull typed messages out.

    After a protocol error the decoder is failed: it raises the same error again and
    buffers nothing more. Buffered bytes never exceed one frame plus the last chunk fed.
    """

    def __init__(self, *, max_frame: int | None = DEFAULT_MAX_FRAME) -> None:
        # Limits
        self.max_frame = max_frame
        self._buffer = bytearray()
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """How many received bytes are not yet part of a returned message."""
        return len(self._buffer)

    def receive_data(self, data: bytes) -> None:
        """Buffer ``data``. Call ``next_message()`` until it returns None."""
        if self._error is not None:
            raise self._error
        self._buffer += data

    def receive_eof(self) -> None:
        """The stream ended. Raises ProtocolError if it ended inside a frame."""
        if self._error is None and self._buffer:
            self._fail(ProtocolError(f"connection closed inside a frame ({self.buffered} bytes)"))

    def next_message(self) -> WireMessage | None:
        """Return the next complete message, or None if more bytes are needed."""
        if self._error is not None:
            raise self._error
        buffer = self._buffer
        if len(buffer) < HEADER.size:
            return None
        (size,) = HEADER.unpack_from(buffer)
        if size == 0:
            self._fail(ProtocolError("empty frame"))
        if self.max_frame is not None and size > self.max_frame:
            self._fail(FrameTooLarge(size, self.max_frame))
        end = HEADER.size + size
        if len(buffer) < end:
            return None
        body = bytes(buffer[HEADER.size : end])
        del buffer[:end]
        try:
            return decode_body(body)
        except ProtocolError as exc:
            self._fail(exc)

    def feed(self, data: bytes) -> list[WireMessage]:
        """Buffer ``data`` and return every message now complete, in order."""
        self.receive_data(data)
        messages = []
        while (message := self.next_message()) is not None:
            messages.append(message)
        return messages

    def _fail(self, error: ProtocolError) -> NoReturn:
        self._error = error
        self._buffer.clear()
        raise error
