"""The outcome of a command: a typed Result, and the error raised for a failed one."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from .text import shorten

Ended = Literal["exit", "signal", "timeout", "interrupted", "killed"]
"""How a command ended.

- ``exit``: it exited by itself, whatever the code.
- ``signal``: a signal asyncmagic did not send killed it.
- ``timeout``: asyncmagic ended it because its timeout expired.
- ``interrupted``: asyncmagic ended it because the cell was interrupted.
- ``killed``: asyncmagic ended it on request (a job's ``kill()``, kernel shutdown).
"""


@dataclass(frozen=True, repr=False)
class Result:
    """What a finished command did.

    ``returncode`` follows :mod:`subprocess`: the exit status, or ``-N`` when
    signal N killed the process. ``str(result)`` is the captured stdout.
    """

    command: str
    returncode: int
    stdout: str
    stderr: str
    started_at: datetime
    finished_at: datetime
    ended: Ended = "exit"
    timeout: float | None = None
    pid: int | None = None
    log_path: str | None = None
    """A file with every byte of the output, when it was too big to keep whole in memory."""
    stages: tuple[Result, ...] = field(default=())
    """A pipeline's stages, each a Result of its own (command, pid, returncode, ended)."""
    error: str | None = None
    """Why asyncmagic ended it, when that was a failure of its own side: the input source
    raised (``input failed: ValueError: ...``). Such a Result is never ``ok``."""
    host: str | None = None
    """The host it ran on over SSH, as it was named (``web1``, ``user@db:2222``); None: here."""

    @property
    def duration(self) -> float:
        """Seconds from start to the end of the last output."""
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def ok(self) -> bool:
        """True when the command exited by itself with status 0."""
        return self.ended == "exit" and self.returncode == 0 and self.error is None

    @property
    def lines(self) -> list[str]:
        """The captured stdout split into lines, without their newlines."""
        return self.stdout.splitlines()

    def __str__(self) -> str:
        return self.stdout

    def __repr__(self) -> str:
        return (
            f"<Result {shorten(self.command, 60)!r}: {self.describe()} · {format_seconds(self.duration)}, "
            f"stdout {len(self.stdout):,} chars, stderr {len(self.stderr):,} chars>"
        )

    def describe(self) -> str:
        """How it ended, in a few words: ``exit 1``, ``killed by SIGKILL``, ``timed out after 3 s``."""
        if self.error is not None:
            return self.error
        if self.ended == "timeout":
            return f"timed out after {format_seconds(self.timeout or self.duration)}"
        if self.ended == "interrupted":
            return "interrupted"
        if self.ended == "killed":
            return "killed"
        if self.returncode < 0:
            return f"killed by {_signal_name(-self.returncode)}"
        if self.returncode == 127:
            return "exit 127 (command not found)"
        return f"exit {self.returncode}"

    def summary(self, width: int = 200) -> str:
        """One line for a person: command, how it ended, duration; at most ``width`` characters."""
        tail = f": {self.describe()}"
        if self.ended != "timeout":  # "timed out after N s" already says how long
            tail += f" · {format_seconds(self.duration)}"
        room = max(width - len(tail) - 2, 10)
        return f"{shorten(self.command, room)!s}{tail}"


class CommandError(Exception):
    """A command failed: a non-zero exit, a signal, a timeout or an interrupt.

    It carries the :class:`Result`. In IPython it renders as one line, not a traceback,
    so a failed cell says what failed and nothing more. ``message`` replaces the Result's
    summary where the failure is more than how the command ended (never got ready).
    """

    def __init__(self, result: Result, message: str | None = None) -> None:
        super().__init__(message or result.summary())
        self.result = result

    @property
    def returncode(self) -> int:
        return self.result.returncode

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"[:200]]


def format_seconds(value: float) -> str:
    """A duration for people, one rule: at most one decimal, none from 10 s, milliseconds
    below 0.1 s: ``7 ms``, ``0.3 s``, ``4.2 s``, ``13 s``, ``3 min 4 s``."""
    if value < 0.0995:
        return f"{max(round(value * 1000), 1)} ms"
    if value < 9.95:
        return f"{value:.1f} s"
    if value < 59.5:
        return f"{value:.0f} s"
    minutes, secs = divmod(round(value), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
