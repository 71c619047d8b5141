"""The rules of file transfers, with no I/O: offers, file names, windows.

An offer is a chat message whose body is ``OFFER_MARK`` then a JSON ``FileNote`` (id,
name, size, SHA-256): it goes as every message goes (over the open conversation, else
sealed to the mailbox), exactly once, and keeps a line in the history. Its id is the
transfer's. The bytes go as ``file_data`` frames on the conversation's connection: the
recipient asks for them (``file_accept`` with the offset it has stored and synced), the
sender keeps at most ``window`` bytes unacknowledged, and the recipient acknowledges
(``file_ack``) each ``window / 4`` bytes once they are written and synced, so the last
acknowledged offset is always a resume point, and a restart resends at most a window.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterator
from typing import Annotated, Final

import msgspec

from ..errors import ProtocolError, SizeMismatch, UnsafeFileName
from ..messages import MAX_FILE_DATA

__all__ = [
    "OFFER_MARK",
    "STATES",
    "FileNote",
    "ReceiveWindow",
    "SendWindow",
    "check_file_name",
    "choose_name",
    "chunk_size",
    "free_names",
    "is_offer",
    "offer_body",
    "parse_offer",
    "shown_text",
    "state_of",
    "visible",
]

OFFER_MARK: Final = "\x1ep2pchat-file "
"""How a chat body that is a file offer starts (a control character no one types)."""

STATES: Final = ("offered", "accepted", "done", "refused", "cancelled", "failed")
"""A transfer's ``state``: offered (no answer yet), accepted (bytes going, or to go at the
next talk), then one of the ends: done, refused, cancelled, failed."""
ENDED: Final = frozenset(("done", "refused", "cancelled", "failed"))

MAX_NAME_BYTES: Final = 255
_RESERVED: Final = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{base}{n}" for base in ("COM", "LPT") for n in range(10)]
)
_SHA256: Final = r"^[0-9a-f]{64}\Z"


class FileNote(msgspec.Struct, frozen=True, kw_only=True):
    """What an offer says of its file (the name is checked apart: ``check_file_name``)."""

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+\Z")]
    name: Annotated[str, msgspec.Meta(min_length=1)]
    """Unchecked here: ``check_file_name`` says what is wrong with it (the body's own
    limit, ``max_message_size``, bounds its length)."""
    size: Annotated[int, msgspec.Meta(ge=0, le=2**62)]
    sha256: Annotated[str, msgspec.Meta(pattern=_SHA256)]


_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(FileNote)


def offer_body(note: FileNote) -> str:
    """The chat body that carries ``note``."""
    return OFFER_MARK + _encoder.encode(note).decode("utf-8")


def is_offer(body: str) -> bool:
    return body.startswith(OFFER_MARK)


def parse_offer(body: str) -> FileNote:
    """The note an offer body carries (its name not checked yet: ``check_file_name``).
    Raises ProtocolError if it is malformed."""
    try:
        return _decoder.decode(body[len(OFFER_MARK) :])
    except msgspec.DecodeError as exc:  # ValidationError included
        raise ProtocolError(f"malformed file offer: {exc}") from None


def shown_text(body: str) -> str:
    """What a front end shows for a message body: a file offer as ``[file offered:
    NAME, SIZE bytes]`` (the name as its sender wrote it: a terminal must still make it
    safe), anything else as it is."""
    if not is_offer(body):
        return body
    try:
        note = parse_offer(body)
    except ProtocolError:
        return "[a file offer that could not be read]"
    return f"[file offered: {note.name}, {note.size:,} bytes]"


def visible(name: str) -> str:
    """``name`` with anything unprintable escaped, cut to 80 characters: for a log or
    a record of a name that was refused."""
    return name.encode("unicode_escape").decode("ascii")[:80]


def state_of(code: str) -> str:
    """The state a transfer ends in for the code of its error: a file not taken is
    ``refused`` (refused, too large, an unsafe name), else ``cancelled`` or ``failed``."""
    if code in ("refused", "too_large", "unsafe_name"):
        return "refused"
    return "cancelled" if code == "cancelled" else "failed"


def check_file_name(name: str) -> str:
    """Return ``name`` if it is a bare, plain file name; raise UnsafeFileName if not: path
    separators, ``.`` or ``..``, control or format characters, a hidden name (leading
    dot), a trailing dot or space, a reserved device name (``CON``, ``NUL.txt``), or over
    255 bytes of UTF-8."""
    problem = _name_problem(name)
    if problem is not None:
        raise UnsafeFileName(f"unsafe file name {visible(name)!r}: {problem}")
    return name


def _name_problem(name: str) -> str | None:
    if not isinstance(name, str) or not name:
        return "empty"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        return f"over {MAX_NAME_BYTES} bytes"
    if "/" in name or "\\" in name:
        return "it holds a path separator"
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in name):
        return "it holds a control character"
    if name in (".", "..") or name.startswith("."):
        return "a hidden or relative name"
    if name != name.strip() or name.endswith("."):
        return "leading or trailing space, or a trailing dot"
    if any(c in '<>:"|?*' for c in name):
        return "a character that some systems forbid in names"
    if name.split(".")[0].upper().rstrip() in _RESERVED:
        return "a reserved device name"
    return None


def free_names(name: str) -> Iterator[str]:
    """``name``, then ``stem (1).ext``, ``stem (2).ext``...: candidates for a file that
    must not replace one of the same name."""
    yield name
    stem, dot, ext = name.rpartition(".")
    if not stem:  # no extension
        stem, dot, ext = name, "", ""
    n = 1
    while True:
        candidate = f"{stem} ({n}){dot}{ext}"
        if len(candidate.encode("utf-8")) > MAX_NAME_BYTES:
            candidate = f"file ({n}){dot}{ext[:16]}"
        yield candidate
        n += 1


def choose_name(name: str, taken: Callable[[str], bool]) -> str:
    """The first of ``free_names(name)`` for which ``taken`` (both the name and its
    ``.part``) is false."""
    for candidate in free_names(name):
        if not taken(candidate) and not taken(candidate + ".part"):
            return candidate
    raise AssertionError("unreachable")  # pragma: no cover


def chunk_size(max_frame: int | None) -> int:
    """File bytes per ``file_data`` frame for a frame limit (beside the id and offset)."""
    if max_frame is None:
        return MAX_FILE_DATA
    return max(1, min(MAX_FILE_DATA, max_frame - 128))


class SendWindow:
    """The sender's side of one transfer: what may go next, what is acknowledged."""

    def __init__(self, size: int, window: int, start: int) -> None:
        if not 0 <= start <= size:
            raise ProtocolError(f"asked to send from {start}, past the size ({size})")
        self.size = size
        self.window = window
        self.sent = start  # the next byte to send
        self.acked = start

    def room(self) -> int:
        """How many bytes may go now (0: wait for an acknowledgement, or done)."""
        return max(0, min(self.size - self.sent, self.acked + self.window - self.sent))

    def advance(self, length: int) -> int:
        """``length`` bytes go now; returns their offset."""
        offset = self.sent
        self.sent += length
        return offset

    def acknowledge(self, offset: int) -> bool:
        """The recipient has ``offset`` bytes; True if that is news. ProtocolError for an
        offset past what was sent."""
        if offset > self.sent:
            raise ProtocolError(f"acknowledged {offset} bytes, but {self.sent} were sent")
        if offset <= self.acked:
            return False
        self.acked = offset
        return True


class ReceiveWindow:
    """The recipient's side: checks each ``file_data`` against the offer and the window,
    and says when to sync and acknowledge."""

    def __init__(self, size: int, window: int, start: int) -> None:
        self.size = size
        self.window = window
        self.ack_every = max(1, window // 4)
        self.received = start  # the next byte expected
        self.synced = start  # stored, synced and acknowledged

    def data(self, offset: int, length: int) -> None:
        """Check bytes ``offset .. offset + length``. SizeMismatch past the offered size;
        ProtocolError out of order or past the window."""
        if offset + length > self.size:
            raise SizeMismatch(
                f"more bytes than offered: {offset + length} of a file of {self.size} bytes"
            )
        if offset != self.received:
            raise ProtocolError(f"file bytes at {offset}, expected at {self.received}")
        if offset + length > self.synced + self.window:
            raise ProtocolError("file bytes past the window")
        self.received += length

    @property
    def complete(self) -> bool:
        return self.received == self.size

    def sync_due(self, written: int) -> bool:
        """With ``written`` bytes on disk: time to sync and acknowledge?"""
        return written == self.size or written - self.synced >= self.ack_every
