"""What receives a command's output, local or remote: decode, capture, log, forward."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from .capture import Capture, KeptLog, Spill
from .stdin import WriteGate
from .text import utf8_decoder

OutputCallback = Callable[[str, str], None]
"""Called as ``on_output(stream, text)`` with ``stream`` "stdout" or "stderr", in arrival order."""

PROMPT_TAIL = 500
"""Characters of the last line an ``ask`` command printed that are kept (its prompt)."""

_STREAM_NAMES = {1: "stdout", 2: "stderr"}


class Pump(asyncio.SubprocessProtocol):
    """Receives a command's output: decodes, captures, logs and forwards it as it arrives.

    A local child's pipes call it as asyncio's subprocess protocol; a remote command's
    SSH channel calls the same methods (fd 1 for data, 2 for extended data)."""

    def __init__(
        self,
        on_output: OutputCallback | None,
        loop: asyncio.AbstractEventLoop,
        pipes: tuple[int, ...],
        capture_limit: int | None,
        keep_log: KeptLog | None,
        watches_prompts: bool,
    ) -> None:
        self._on_output = on_output
        self._decoders = {fd: utf8_decoder() for fd in (1, 2)}
        self.captured = {fd: Capture(capture_limit) for fd in (1, 2)}
        self.spill = Spill(keep=keep_log)
        self.eof = {fd: loop.create_future() for fd in pipes}
        self.exited: asyncio.Future[None] = loop.create_future()
        self.stdin = WriteGate()
        self.watches_prompts = watches_prompts
        """For ``ask``: then the pump counts the pieces of output and keeps the last line."""
        self.partial_line = ""
        """The output after the last newline (a prompt), for ``ask``."""
        self.received = 0

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.spill.write(data)
        self._emit(fd, self._decoders[fd].decode(data))

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 0:
            self.stdin.lose()
            return
        self._emit(fd, self._decoders[fd].decode(b"", final=True))
        if fd in self.eof and not self.eof[fd].done():
            self.eof[fd].set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def pause_writing(self) -> None:
        self.stdin.pause()

    def resume_writing(self) -> None:
        self.stdin.resume()

    def _emit(self, fd: int, text: str) -> None:
        if not text:
            return
        if self.watches_prompts:
            self.received += 1
            newline = text.rfind("\n")
            tail = self.partial_line + text[-PROMPT_TAIL:] if newline < 0 else text[newline + 1 :]
            self.partial_line = tail[-PROMPT_TAIL:]
        self.captured[fd].append(text)
        if self._on_output is not None:
            self._on_output(_STREAM_NAMES[fd], text)
