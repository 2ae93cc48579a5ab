"""What receives a command's output, local or remote: decode, capture, log, forward."""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .capture import Capture, KeptLog, Spill
from .flow import Flow
from .result import Ended, Result
from .running import now
from .stdin import WriteGate
from .text import utf8_decoder

OutputCallback = Callable[[str, str], None]
"""Called as ``on_output(stream, text)`` with ``stream`` "stdout" or "stderr", in arrival order."""

PROMPT_TAIL = 500
"""Characters of the last line an ``ask`` command printed that are kept (its prompt)."""

_STREAM_NAMES = {1: "stdout", 2: "stderr"}

PIPE_SIZE = 1 << 20
"""Bytes an output pipe holds, and the largest read of a flood (Linux's limit for a user,
``/proc/sys/fs/pipe-max-size``)."""

SMALL_READ = 64 * 1024
"""The read of a trickle: ``os.read(fd, n)`` allocates ``n`` bytes first, and above about
128 KiB that is a fresh mapping each time (13 µs for a 10-byte line at asyncio's 256 KiB,
1.3 µs at 64 KiB)."""

TRICKLE = 4096
"""A read this small means the output trickles again (a flood's reads stay larger)."""

GATHER = 0.05
"""Seconds a trickling stdout is left to fill between two reads, while stderr is silent.
A command that prints a line every few milliseconds is then read a few lines at a time:
a hundred such commands cost the kernel less than half the CPU. The first line after a pause is
read at once, and a notebook shows output at ipykernel's 0.2 s flushes anyway."""


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
        self._loop = loop
        self._sized: dict[int, Any] = {}
        self._last_read: dict[int, float] = {}
        self._gathering = False
        self._stderr_seen = False
        self._flow: Flow | None = None

    def size_reads(self, fd: int, pipe: asyncio.BaseTransport | None, flow: Flow | None) -> None:
        """Read output pipe ``fd`` in pieces that fit what arrives: 64 KiB while it
        trickles; once a read fills that, up to 1 MiB from a pipe grown to hold it, until a
        read brings less than 4 KiB. A flood then costs a sixteenth of the loop's turns and
        system calls. Where the pipe cannot grow (a user over ``pipe-user-pages-soft``)
        reads stay small. A steady trickle on stdout is read every :data:`GATHER` seconds; ``flow``
        is the consumer's (a pipe it paused stays paused)."""
        if pipe is None or not hasattr(pipe, "max_size"):
            return
        self._flow = flow
        pipe.max_size = SMALL_READ  # type: ignore[attr-defined]
        try:
            fcntl.fcntl(pipe.get_extra_info("pipe").fileno(), fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except (OSError, AttributeError, ValueError):
            return
        self._sized[fd] = pipe

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd == 2 and not self._stderr_seen:
            self._stderr_seen = True
            self._end_gathering()
        pipe = self._sized.get(fd)
        if pipe is not None:
            if len(data) >= SMALL_READ:
                pipe.max_size = PIPE_SIZE
            elif len(data) < TRICKLE:
                pipe.max_size = SMALL_READ
                self._gather(fd, pipe)
        self._receive(fd, data)

    def _receive(self, fd: int, data: bytes) -> None:
        self.spill.write(data)
        self._emit(fd, self._decoders[fd].decode(data))

    def _gather(self, fd: int, pipe: Any) -> None:
        """Pause stdout, read twice within a gathering, for :data:`GATHER` seconds.

        Only while stderr is silent: a paused pipe's place in the order of the two streams
        is lost. Not for a prompt (it is answered from what was read), nor once the command
        has exited."""
        now = self._loop.time()
        last, self._last_read[fd] = self._last_read.get(fd), now
        if fd != 1 or self._stderr_seen or self.watches_prompts or self.exited.done():
            return
        if last is None or now - last > 2 * GATHER:
            return
        pipe.pause_reading()
        self._gathering = True
        self._loop.call_later(GATHER, self._ungather)

    def _ungather(self) -> None:
        self._gathering = False
        pipe = self._sized[1]
        if not pipe.is_closing() and not (self._flow is not None and self._flow.paused):
            pipe.resume_reading()

    def _end_gathering(self) -> None:
        """stderr spoke: what the gathering stdout holds was written before, so it is read
        and delivered first, and stdout is read as it comes from now on. (Its end of file
        is left for its transport.)"""
        if not self._gathering or (self._flow is not None and self._flow.paused):
            return
        pipe = self._sized[1]
        reader = pipe.get_extra_info("pipe").fileno()
        while not pipe.is_closing():
            try:
                chunk = os.read(reader, pipe.max_size)
            except OSError:  # BlockingIOError: it is empty
                break
            if not chunk:
                break
            self._receive(1, chunk)
        self._ungather()

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 0:
            self.stdin.lose()
            return
        self._emit(fd, self._decoders[fd].decode(b"", final=True))
        if fd in self.eof and not self.eof[fd].done():
            self.eof[fd].set_result(None)

    def process_exited(self) -> None:
        if self._gathering:  # its end is not left waiting on a gathering
            self._ungather()
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


class PumpedOutput:
    """The output of a command whose :class:`Pump` receives it, for a
    :class:`~asyncmagic.engine.running.Running` (a local process and a remote one alike)."""

    _pump: Pump
    _finished: asyncio.Future[Result]
    command: str
    started_at: datetime
    _ended: Ended | None
    _timeout: float | None

    @property
    def stdout(self) -> str:
        """Standard output received so far (head and tail past the capture limit)."""
        if self._finished.done():
            return self._finished.result().stdout
        return self._pump.captured[1].text(self._pump.spill.path)

    @property
    def stderr(self) -> str:
        """Standard error received so far (head and tail past the capture limit)."""
        if self._finished.done():
            return self._finished.result().stderr
        return self._pump.captured[2].text(self._pump.spill.path)

    def log_path(self) -> str:
        """A file holding every byte of the output (stdout and stderr as they arrived)."""
        return self._pump.spill.materialize()

    def _output_result(self, returncode: int, **fields: Any) -> Result:
        """The Result once the output is over: the log closed (materialized first if a
        capture was cut, so the notice can name it), the captures taken and released."""
        pump = self._pump
        if any(c.truncated for c in pump.captured.values()):
            pump.spill.materialize()
        pump.spill.close()
        stdout, stderr = (pump.captured[fd].text(pump.spill.path) for fd in (1, 2))
        for capture in pump.captured.values():
            capture.release()
        return Result(
            command=self.command,
            returncode=returncode,
            stdout=stdout,
            stderr=stderr,
            log_path=pump.spill.path,
            started_at=self.started_at,
            finished_at=now(),
            ended=self._ended or ("signal" if returncode < 0 else "exit"),
            timeout=self._timeout,
            **fields,
        )
