"""Output routing: where a command's text goes on its way to the person watching.

:class:`LiveOutput` writes to the cell's stdout and stderr streams (ipykernel's
OutStream in a notebook, the terminal in IPython). It keeps the true arrival order of
the two streams, sends a lone line at once, and batches a flood into few messages.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
import time
from typing import TextIO

MIN_GAP = 0.025
"""Seconds between two flushes of a flood on one stream (at most 40 messages a second);
a line after a quiet spell goes out at once."""


class LiveOutput:
    """Streams a command's output into the cell it was started from.

    Call it as ``live(stream, text)``; call :meth:`close` when the command is done.
    The context (ipykernel keeps "which cell" in ContextVars) and the stream objects are
    taken when it is created, so output keeps going to that cell whatever runs later.
    """

    def __init__(self, *, min_gap: float = MIN_GAP) -> None:
        self._context = contextvars.copy_context()
        self._streams: dict[str, TextIO] = {"stdout": sys.stdout, "stderr": sys.stderr}
        self._min_gap = min_gap
        self._last_flush = 0.0
        self._dirty: str | None = None
        self._timer: asyncio.TimerHandle | None = None

    def __call__(self, stream: str, text: str) -> None:
        self._context.run(self._write, stream, text)

    def close(self) -> None:
        """Send whatever is still buffered."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._context.run(self._flush)

    def _write(self, stream: str, text: str) -> None:
        if self._dirty is not None and self._dirty != stream:
            self._flush()  # keep stdout and stderr in arrival order
        self._streams[stream].write(text)
        self._dirty = stream
        wait = self._last_flush + self._min_gap - time.monotonic()
        if wait <= 0:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(wait, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._flush()

    def _flush(self) -> None:
        if self._dirty is not None:
            self._streams[self._dirty].flush()
            self._dirty = None
        self._last_flush = time.monotonic()
