"""Where a console reads lines and shows news: a terminal, or pipes.

A ``TerminalScreen`` edits lines with readline and prints news above the line being
typed; a ``PipeScreen`` (standard input and output are pipes or files) has no prompt and
writes one line per event, so that the command can be scripted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
from typing import Any

import aioconsole

__all__ = ["PipeScreen", "Screen", "TerminalScreen"]


class Screen:
    """Where the console reads lines and shows news."""

    prompt = ""

    async def read_line(self) -> str | None:
        """The next line typed, or None at the end of input."""
        raise NotImplementedError

    async def show(self, text: str) -> None:
        raise NotImplementedError

    async def show_progress(self, text: str) -> None:
        """A progress line: where the screen can, it replaces the one shown before."""
        await self.show(text)


class PipeScreen(Screen):
    """Standard input and output are pipes or files: no prompt, one line per event."""

    async def read_line(self) -> str | None:
        try:
            return str(await aioconsole.ainput(""))
        except EOFError:
            return None

    async def show(self, text: str) -> None:
        await aioconsole.aprint(text)


class TerminalScreen(Screen):
    """A terminal: line editing with readline; news is printed above the line being
    typed, which is then drawn again as it was."""

    def __init__(self) -> None:
        try:
            import readline
        except ImportError:  # no readline on this platform: plain input()
            self._readline = None
        else:
            self._readline = readline
        self.prompt = "> "
        self._reading = False  # an input() is waiting for a line
        self._progress_last = False  # the last line shown is a progress line
        self._mode = _terminal_mode()  # as found, for restore()

    def restore(self) -> None:
        """Put the terminal back in the mode it was found in. Ctrl-C ends the console
        while readline, in its thread, holds the terminal with echo and line editing off;
        nothing else would turn them on again for the next program."""
        if self._mode is not None:
            import termios  # found it: a POSIX terminal

            with contextlib.suppress(OSError, termios.error):
                termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self._mode)

    async def read_line(self) -> str | None:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[str | None] = loop.create_future()

        def read() -> None:  # a daemon thread: exiting never waits for a pending input()
            try:
                self._reading = True
                line: str | None = input(self.prompt)
            except (EOFError, KeyboardInterrupt):
                line = None
            except Exception as exc:  # stdin closed: report as end of input
                logging.getLogger(__name__).debug("reading the terminal failed: %s", exc)
                line = None
            finally:
                self._reading = False
                self._progress_last = False  # the line typed came after it

            def deliver() -> None:
                if not answer.done():
                    answer.set_result(line)

            with contextlib.suppress(RuntimeError):  # the loop may be gone at exit
                loop.call_soon_threadsafe(deliver)

        threading.Thread(target=read, name="p2pchat-input", daemon=True).start()
        return await answer

    async def show(self, text: str) -> None:
        self._write(text, over="")
        self._progress_last = False

    async def show_progress(self, text: str) -> None:
        """Redraw the progress line in place if it is the last line shown."""
        self._write(text, over="\x1b[1A\r\x1b[2K" if self._progress_last else "")
        self._progress_last = True

    def _write(self, text: str, *, over: str) -> None:
        """Write ``text`` as a line, after ``over`` (to go back over the last one)."""
        if not self._reading:
            sys.stdout.write(f"{over}{text}\n")
        else:  # clear the line being typed, print above it, then draw it again
            typed = self._readline.get_line_buffer() if self._readline is not None else ""
            sys.stdout.write(f"\r\x1b[2K{over}{text}\n{self.prompt}{typed}")
        sys.stdout.flush()


def _terminal_mode() -> list[Any] | None:
    """The mode of the terminal on standard input, if it is one (and POSIX)."""
    try:
        import termios
    except ImportError:
        return None
    try:
        return termios.tcgetattr(sys.stdin.fileno())
    except (OSError, ValueError, termios.error):
        return None
