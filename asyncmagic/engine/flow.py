"""Backpressure: a consumer of output that falls behind pauses the reading of the pipes.

A notebook may only receive output at the pace jupyter_server's rate limits allow. When
everything must be shown (``--max-lines 0``) and a command writes faster than that, the
text waiting to be sent would grow without bound. Instead the consumer pauses the reading
of the command's pipes; the command then blocks on its next write, as it would in a
terminal that cannot keep up, until the backlog has been sent.
"""

from __future__ import annotations

from typing import Protocol


class Readable(Protocol):
    """What can be paused: asyncio's read transports, and a pseudo-terminal reader."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def is_closing(self) -> bool: ...


class Flow:
    """Pauses and resumes every reader of one command's output together."""

    def __init__(self) -> None:
        self._readers: list[Readable] = []
        self.paused = False

    def watch(self, reader: Readable) -> None:
        """Add a reader; it starts paused if the flow is paused."""
        self._readers.append(reader)
        if self.paused:
            _pause(reader)

    def pause(self) -> None:
        if not self.paused:
            self.paused = True
            for reader in self._readers:
                _pause(reader)

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            for reader in self._readers:
                if not reader.is_closing():
                    reader.resume_reading()


def _pause(reader: Readable) -> None:
    if not reader.is_closing():
        reader.pause_reading()
