"""A pseudo-terminal for a command (``pty=True``, ``ask=``): the child has the slave end, we
read the master. Output newlines stay ``\\n`` (no ``\\r\\n`` translation), and reading ends at
EIO, which is how Linux says every slave end is closed."""

from __future__ import annotations

import asyncio
import fcntl
import os
import struct
import termios
from collections.abc import Callable
from typing import Protocol

READ_CHUNK = 256 * 1024
SIZE = (40, 120)
"""Rows and columns the command sees."""


class Receiver(Protocol):
    """Where what the terminal reads goes (a process's pump, as fd 1)."""

    def pipe_data_received(self, fd: int, data: bytes) -> None: ...
    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None: ...


class Terminal:
    """One pseudo-terminal: open from creation, read once :meth:`start` is called, closed by
    :meth:`close` (idempotent)."""

    master: int
    slave: int
    slave_path: str
    _echo: bytes
    """What we typed that the terminal echoes back: not output of the command."""
    _loop: asyncio.AbstractEventLoop | None
    _receiver: Receiver | None

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        self.slave_path = os.ttyname(self.slave)
        self._echo = b""
        self._loop = None
        self._receiver = None
        attrs = termios.tcgetattr(self.slave)
        attrs[1] &= ~termios.ONLCR
        termios.tcsetattr(self.slave, termios.TCSANOW, attrs)
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", *SIZE, 0, 0))

    def start(self, loop: asyncio.AbstractEventLoop, receiver: Receiver) -> None:
        """The child holds the slave now: close ours (EOF comes when it and its children
        close theirs) and read the master on the loop."""
        os.close(self.slave)
        self.slave = -1
        os.set_blocking(self.master, False)
        self._loop, self._receiver = loop, receiver
        loop.add_reader(self.master, self._ready)

    # The reading side of a transport, for a Flow.
    def pause_reading(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.master)

    def resume_reading(self) -> None:
        if self._loop is not None:
            self._loop.add_reader(self.master, self._ready)

    def is_closing(self) -> bool:
        return self._loop is None

    def answer(self, text: str, echoed: bool) -> None:
        """Type ``text`` and Enter at the terminal; its echo (if the terminal echoes) is not
        output of the command, so it is left out (the person's answer shows where they typed it)."""
        data = text.encode() + (b"" if text == "\x04" else b"\n")
        if echoed and text != "\x04":
            self._echo += data
        while data:  # an answer is one line: the terminal's input queue takes it
            try:
                data = data[os.write(self.master, data) :]
            except BlockingIOError:
                break
            except OSError:
                return

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.master)
            self._loop = None
        for fd in (self.master, self.slave):
            if fd >= 0:
                os.close(fd)
        self.master = self.slave = -1

    def _ready(self) -> None:
        assert self._receiver is not None
        try:
            data = os.read(self.master, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data and self._echo:
            data = self._without_echo(data)
            if not data:
                return
        if data:
            self._receiver.pipe_data_received(1, data)
        else:
            receiver = self._receiver
            self.close()
            receiver.pipe_connection_lost(1, None)

    def _without_echo(self, data: bytes) -> bytes:
        same = 0
        while same < min(len(data), len(self._echo)) and data[same] == self._echo[same]:
            same += 1
        self._echo = self._echo[same:] if same == len(data) else b""
        return data[same:]


def controlling_terminal(before: Callable[[], None] | None) -> Callable[[], None]:
    """A ``preexec_fn`` that makes stdin (the pty slave) the child's controlling terminal;
    it runs after ``setsid()``, so the child leads a session without one."""

    def preexec() -> None:
        if before is not None:
            before()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    return preexec
