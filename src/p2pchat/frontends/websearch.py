"""The web page's search: the newest matches of a search that fit in one event, each
marked where it matched and named by the talk it is in (a user's, or a group's).

``found`` serves ``WebUI`` (web.py) through the public ``Peer`` API only; the page
inserts the names and bodies as text only, and marks the matches by the offsets given.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

import msgspec

from .. import InvalidQuery, Peer, search_spans
from . import webevents as ev

__all__ = ["SEARCH_SHOWN", "found"]

SEARCH_SHOWN: Final = 50
"""Matches a search sends at most, the newest."""
_encoder: Final = msgspec.json.Encoder()


async def found(
    peer: Peer, text: str, *, budget: int, group_name: Callable[[str], str]
) -> ev.Found:
    """The newest matches of ``text`` whose event fits in ``budget`` bytes, the match
    marked. A group's match names its group (``group_name`` of its id: "" if this page
    does not know it), for the page to show it so and to open that group's talk."""
    try:
        messages = await peer.search(text, limit=SEARCH_SHOWN)
    except InvalidQuery as exc:
        return ev.Found(text=text, reason=str(exc))
    me = peer.name
    left = budget - len(ev.encode_event(ev.Found(text=text)))
    matches = []
    shown_all = [ev.WebMessage.of(m) for m in messages]  # an offer: the line it shows as
    # Off the event loop: a body of thousands of strange characters takes ms to read
    # (stores.search.Folding), and the other talks go on meanwhile.
    marks_all = await asyncio.to_thread(lambda: [_marks(text, s.body) for s in shown_all])
    for message, shown, marks in zip(messages, shown_all, marks_all, strict=True):
        if message.group is not None:
            match = ev.Match(
                user=message.sender,
                message=shown,
                marks=marks,
                group=message.group,
                group_name=group_name(message.group),
            )
        else:
            match = ev.Match(
                user=message.recipient if message.sender == me else message.sender,
                message=shown,
                marks=marks,
            )
        left -= len(_encoder.encode(match)) + 1
        if left < 0:
            break
        matches.append(match)
    return ev.Found(text=text, matches=matches)


def _marks(text: str, shown: str) -> list[tuple[int, int]]:
    """Where ``text`` matched in the body as the page shows it, in the page's string
    units."""
    return [_utf16(shown, span) for span in search_spans(text, shown)]


def _utf16(body: str, span: tuple[int, int]) -> tuple[int, int]:
    """``span``, offsets in ``body``'s code points, as offsets in its UTF-16 code units."""
    start, end = span
    before = len(body[:start].encode("utf-16-le")) // 2
    return before, before + len(body[start:end].encode("utf-16-le")) // 2
