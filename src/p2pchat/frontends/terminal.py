"""Text from others, made safe for a terminal: control characters are shown, never obeyed.

A message body, a name, a reason given by a peer or a server can hold bytes a terminal
acts on: ``ESC[2J`` clears the screen, ``ESC]0;...`` sets the title, ``\\r`` goes back over
what was printed, a newline starts a line that can pass for a message of its own, and the
bidirectional overrides of Unicode turn text around. ``visible()`` writes each of them as
an escape (``\\x1b``, ``\\r``, ``\\u202e``); ``message_lines()`` keeps the lines of a
multi-line body, each after the first under a bar, so that none can be taken for a new
message (a name never starts with a space).
"""

from __future__ import annotations

__all__ = ["CONTINUATION", "message_lines", "visible"]

CONTINUATION = "  | "
"""What starts each further line of a message shown on a terminal."""

_BIDI = (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
_SEPARATORS = (0x2028, 0x2029)  # line and paragraph separators: a new line to some terminals


def _escape(code: int) -> str:
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


_ESCAPES: dict[int, str] = {
    code: _escape(code)
    for code in (*range(0x00, 0x20), *range(0x7F, 0xA0), *_BIDI, *_SEPARATORS)
    if code != 0x09  # a tab only moves right: kept
}
_ESCAPES.update({0x0A: "\\n", 0x0D: "\\r"})


def visible(text: str) -> str:
    """``text`` on one line with every control character written as an escape."""
    return text.translate(_ESCAPES)


def message_lines(prefix: str, body: str, suffix: str = "") -> list[str]:
    """The lines that show ``body`` after ``prefix``: its further lines each after
    ``CONTINUATION``, ``suffix`` after the last. No line holds a control character."""
    first, *rest = body.split("\n")
    lines = [prefix + visible(first)] + [CONTINUATION + visible(line) for line in rest]
    lines[-1] += suffix
    return lines
