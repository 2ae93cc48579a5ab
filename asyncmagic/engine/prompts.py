"""Telling that a command waits for a person at its terminal, and what it asked.

A command run with ``ask=`` has a pseudo-terminal as its controlling terminal and as its
stdin, stdout and stderr. Silence alone proves nothing (a build can be quiet for minutes),
so "it is asking" is read from what Linux exposes:

- the terminal's foreground process group (``tcgetpgrp`` on the master) holds a process
  blocked in ``read``: ``/proc/PID/syscall`` names the syscall and its first argument, the
  fd, and ``/proc/PID/fd/FD`` leads to this terminal's slave (or to ``/dev/tty``, which is
  the same terminal for a process of its session: ``getpass``, ``ssh`` and ``sudo`` open it);
- nothing is left to read for it: the master holds no unread output (the prompt has
  arrived) and no answer given in advance is still being written;
- the prompt is the output that arrived after the last newline; a secret is asked when
  the terminal's ECHO flag is off (``tcgetattr`` on a Linux master reads the slave's modes),
  as ``getpass``, ``read -s``, ``sudo`` and ``ssh`` set it.

A program that waits in ``poll``/``select`` before reading (a full-screen editor, a REPL
with readline) is not recognised: it is not asking a line of text.
"""

from __future__ import annotations

import fcntl
import os
import platform
import re
import struct
import termios
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

_READS = {"x86_64": {0, 17, 19}, "aarch64": {63, 65, 67}}.get(platform.machine(), {0, 17, 19})
"""Syscall numbers of read, pread64 and readv on this machine."""


@dataclass(frozen=True)
class Prompt:
    """A question the command is waiting on."""

    text: str
    """What it printed on the line it waits on (``Password: ``)."""
    secret: bool
    """The terminal does not echo: a password; the answer must show nowhere."""


class NoAnswer(Exception):
    """Raised by an ``ask`` callback when no one can answer: the command is ended, and its
    Result's ``error`` is this message."""


Ask = Callable[[Prompt], Awaitable[str]]
"""Gets the answer to a prompt (a line, without its newline)."""

FIRST_PAUSE, LAST_PAUSE = 0.03, 0.3
"""Seconds between two looks at whether a command waits: short after output, growing while
it is quiet."""

_CSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")


def prompt_text(partial: str) -> str:
    """The prompt as a person reads it: after the last carriage return, without escapes."""
    return _CSI.sub("", partial.rsplit("\r", 1)[-1])


def reading_terminal(master: int, slave_path: str) -> bool:
    """True if a process of the terminal's foreground group is blocked reading it."""
    try:
        group = os.tcgetpgrp(master)
    except OSError:
        return False
    for pid in _members(group):  # only those asleep: a woken reader is already answered
        if _blocked_reading(pid, slave_path):
            return True
    return False


def unread_output(master: int) -> int:
    """Bytes the command wrote that have not been read from the master yet."""
    try:
        return struct.unpack("i", fcntl.ioctl(master, termios.FIONREAD, b"\0\0\0\0"))[0]
    except OSError:
        return 0


def echo_off(master: int) -> bool:
    """True while the terminal does not echo what is typed (a password is being read)."""
    try:
        return not termios.tcgetattr(master)[3] & termios.ECHO
    except termios.error:
        return False


def _members(group: int) -> list[int]:
    """The processes of ``group`` that sleep (so may wait), from ``/proc/PID/stat``."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] == b"S":  # pgrp; asleep (a woken reader is "R")
            members.append(int(entry))
    return members


def _blocked_reading(pid: int, slave_path: str) -> bool:
    try:
        with open(f"/proc/{pid}/syscall") as f:
            call = f.read().split()
    except OSError:
        return False
    if len(call) < 2 or not call[0].isdigit() or int(call[0]) not in _READS:
        return False  # "running", or another syscall
    try:
        target = os.readlink(f"/proc/{pid}/fd/{int(call[1], 16)}")
    except (OSError, ValueError):
        return False
    return target in (slave_path, "/dev/tty")
