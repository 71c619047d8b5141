"""What a peer's conversations share: their limits, timeouts and callbacks, in one frozen
object that the peer builds and every ``Conversation`` it opens is handed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..errors import MessageTooLarge
from ..store import Message

__all__ = ["ChatSettings", "Ended"]


class Ended(Protocol):
    """What ``on_end`` is told of the conversation that ended (a ``Conversation``)."""

    @property
    def peer(self) -> str:
        """The other user's name."""


@dataclass(frozen=True, slots=True)
class ChatSettings:
    """What a peer's conversations share: its limits, timeouts and callbacks."""

    max_queue: int = 1024
    max_message_size: int = 16 * 1024
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    on_shipped: Callable[[str, list[str]], None] | None = None
    on_end: Callable[[Ended], None] | None = None
    on_unsent: Callable[[str, list[Message]], None] | None = None
    """Called with (contact, messages of ours) stored after the end: for the next talk."""

    def check_body(self, body: str) -> None:
        size = len(body.encode("utf-8"))
        if size > self.max_message_size:
            raise MessageTooLarge(
                f"message of {size} bytes is over the limit of {self.max_message_size} bytes"
            )
