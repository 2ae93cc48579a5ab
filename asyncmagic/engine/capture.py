"""Keeping a command's output within a memory cap, and every byte of it on disk when it is big.

:class:`Capture` holds one stream's text whole up to a limit, then its head and its tail
and a count of what was dropped between them. :class:`Spill` keeps the raw bytes of both
streams (as they arrived, like ``2>&1``) in memory up to a threshold, then in a log file,
so a huge output stays available in full without staying in memory.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import stat
import tempfile
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO

from .pagecache import DROP_AFTER, DROP_EVERY, drop_behind
from .text import newlines

JOIN_EVERY = 4 << 20
"""Characters of small pieces a :class:`Capture` gathers before joining them into one block."""

SPILL_AFTER = 1 << 20
"""Raw bytes kept in memory before they move to a log file."""


class Capture:
    """One stream's text: whole up to ``limit`` characters; past it, only ``keep`` of its head
    and ``keep`` of its tail, so a gigabyte costs about ``limit`` of memory at its peak."""

    def __init__(self, limit: int | None = None, keep: int = 1_000_000) -> None:
        self.limit = limit
        self.keep = keep if limit is None else min(keep, limit // 2)
        self._head: list[str] = []
        self._head_chars = 0
        self._tail: deque[tuple[str, int]] = deque()
        """Pieces of the tail, each with its newlines (counted as it comes)."""
        self._tail_chars = 0
        self._over = False
        self._mid_line = False
        self._unjoined = 0
        self._joined_pieces = 0
        self.dropped_chars = 0
        self.dropped_newlines = 0

    def append(self, text: str) -> None:
        if not self._over:
            self._head.append(text)
            self._head_chars += len(text)
            self._unjoined += len(text)
            if self.limit is not None and self._head_chars > self.limit:
                self._shrink()
            elif self._unjoined >= JOIN_EVERY:
                self._join_recent()
            return
        self._tail.append((text, newlines(text)))
        self._tail_chars += len(text)
        self._trim_tail()

    def _join_recent(self) -> None:
        """Join the pieces added since the last join into one block.

        Reads arrive in pieces of up to 256 KiB, freed and reused by the allocator as
        they come; kept as they are, they pin a fragmented heap of about twice their size.
        One block of a few MB is mapped on its own and given back whole when dropped.
        """
        recent = self._head[self._joined_pieces :]
        del self._head[self._joined_pieces :]
        self._head.append("".join(recent))
        self._joined_pieces = len(self._head)
        self._unjoined = 0

    def _shrink(self) -> None:
        """Past the limit: keep ``keep`` characters at each end, drop the middle.

        Built from the pieces at each end, never by joining everything: at its peak the
        capture holds the limit and little more.
        """
        self._over = True
        pieces = deque(self._head)
        head: list[str] = []
        taken = 0
        while pieces and taken < self.keep:
            piece = pieces.popleft()
            take = piece[: self.keep - taken]
            head.append(take)
            taken += len(take)
            if len(take) < len(piece):
                pieces.appendleft(piece[len(take) :])
        self._head, self._head_chars = head, taken
        self._tail = deque((piece, newlines(piece)) for piece in pieces)
        self._tail_chars = sum(map(len, pieces))
        self._trim_tail()

    def _trim_tail(self) -> None:
        """Drop whole pieces that fall out of the tail; the first kept one is cut in :meth:`text`."""
        while len(self._tail) > 1 and self._tail_chars - len(self._tail[0][0]) >= self.keep:
            old, old_newlines = self._tail.popleft()
            self._tail_chars -= len(old)
            self.dropped_chars += len(old)
            self.dropped_newlines += old_newlines
            self._mid_line = not old.endswith("\n")

    @property
    def truncated(self) -> bool:
        return self.dropped_chars > 0 or self._tail_chars > self.keep

    def text(self, log_path: str | None = None) -> str:
        """All of it, or head + a notice + tail when the limit was passed (built in one join)."""
        if not self.truncated:
            return "".join([*self._head, *(piece for piece, _ in self._tail)])
        lines, chars, mid_line = self.dropped_newlines, self.dropped_chars, self._mid_line
        tail = [piece for piece, _ in self._tail]
        excess = self._tail_chars - self.keep
        if excess > 0:
            cut, tail[0] = tail[0][:excess], tail[0][excess:]
            lines, chars, mid_line = lines + newlines(cut), chars + len(cut), not cut.endswith("\n")
        # Start the tail on a whole line, when it has one: one huge line keeps its end.
        while mid_line and tail and any("\n" in piece for piece in tail):
            cut = tail[0].find("\n")
            if cut < 0:
                chars += len(tail.pop(0))
                continue
            lines, chars, tail[0] = lines + 1, chars + cut + 1, tail[0][cut + 1 :]
            break
        ends_line = not self._head or self._head[-1].endswith("\n")
        middle = ("" if ends_line else "\n") + notice(lines, chars, log_path) + "\n"
        return "".join([*self._head, middle, *tail])

    def release(self) -> None:
        """Drop the pieces (once their text has been taken): memory goes back at once."""
        self._head.clear()
        self._tail.clear()


def notice(lines: int, chars: int, log_path: str | None) -> str:
    """``… 1,234,567 lines (98 MB) not shown; full output: /tmp/asyncmagic-…/3.log``"""
    where = f"full output: {log_path}{until_exit(log_path)}" if log_path else "full output in the Result"
    if lines == 0:
        return f"… {human_size(chars)} not shown; {where}"
    return f"… {lines:,} lines ({human_size(chars)}) not shown; {where}"


def until_exit(log_path: str) -> str:
    """`` (deleted when the kernel exits)`` for a log in the private temporary folder: a
    saved notebook's notice must not promise a file that is gone."""
    if _log_dir is not None and log_path.startswith(_log_dir + os.sep):
        return " (deleted when the kernel exits)"
    return ""


def human_size(n: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1000
    raise AssertionError  # unreachable


_counter = 0
_log_dir: str | None = None


def log_dir() -> str:
    """This process's folder for output logs: made fresh on first use (``mkdtemp``: mode
    0700, an unpredictable name, never an existing folder), removed at exit."""
    global _log_dir
    if _log_dir is None or not os.path.isdir(_log_dir):
        _log_dir = tempfile.mkdtemp(prefix=f"asyncmagic-{os.getpid()}-")
        atexit.register(shutil.rmtree, _log_dir, ignore_errors=True)
    return _log_dir


def create_private(path: str) -> BinaryIO:
    """Open a new file at ``path`` for writing, mode 0600; never through a symlink, never
    over an existing file (command output can hold secrets)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    return os.fdopen(fd, "wb")


@dataclass(frozen=True)
class KeptLog:
    """A log written from the start and kept after the kernel exits: ``directory/stem.log``
    (``stem_2.log`` and on when that name is taken)."""

    directory: str
    stem: str


def log_stem(who: str, command: str, when: datetime) -> str:
    """A name a person can find a log by: ``2026-12-02_061503_job3_python3-m-http.server``
    (``_`` only between the parts)."""
    first = command.strip().splitlines()[0] if command.strip() else "command"
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", first).strip("-.")[:40].rstrip("-.") or "command"
    return f"{when:%Y-%m-%d_%H%M%S}_{who}_{slug}"


def prepare_log_dir(path: str) -> str:
    """Make ``path`` (``~`` expanded) a folder for kept logs, mode 0700, and return it; a
    ValueError says why it cannot be one. An existing folder others can enter is refused,
    not changed: its owner decides who reads command output."""
    folder = os.path.abspath(os.path.expanduser(path))
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        info = os.stat(folder)
    except OSError as exc:
        raise ValueError(f"cannot use log_dir {path!r}: {exc.strerror or exc}") from None
    if info.st_uid != os.geteuid():
        raise ValueError(f"log_dir {path!r} belongs to another user")
    if stat.S_IMODE(info.st_mode) & 0o077:
        mode = stat.S_IMODE(info.st_mode)
        raise ValueError(
            f"log_dir {path!r} is open to other users (mode {mode:o}): chmod 700 it, or pick another"
        )
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".asyncmagic-probe-")
    except OSError as exc:
        raise ValueError(f"log_dir {path!r} is not writable: {exc.strerror or exc}") from None
    os.close(fd)
    os.unlink(probe)
    return folder


class Spill:
    """Raw output bytes: in memory up to ``threshold``, then appended to a log file; with
    ``keep``, in a kept log from the first byte."""

    def __init__(self, threshold: int = SPILL_AFTER, keep: KeptLog | None = None) -> None:
        self.threshold = threshold
        self.size = 0
        self._memory: list[bytes] = []
        self._file: BinaryIO | None = None
        self._closed = False
        self._keep = keep
        self._dropped_to = 0
        self.path: str | None = None

    @property
    def kept(self) -> bool:
        """True when the log goes to a kept folder (it is then written from the start)."""
        return self._keep is not None

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self._file is not None:
            self._file.write(data)
            if self._keep is not None:
                self._file.flush()  # someone may be following a kept log
            if self.size >= DROP_AFTER and self.size - self._dropped_to >= 2 * DROP_EVERY:
                self._dropped_to = self.size - DROP_EVERY
                drop_behind(self._file.fileno(), self._dropped_to)
            return
        self._memory.append(data)
        if self.size > self.threshold:
            self.materialize()

    def materialize(self) -> str:
        """Move everything to the log file (if not yet) and return its path."""
        global _counter
        if self.path is None:
            tries = 0
            while self._file is None:
                tries += 1
                if self._keep is not None:
                    suffix = "" if tries == 1 else f"_{tries}"
                    path = os.path.join(self._keep.directory, f"{self._keep.stem}{suffix}.log")
                else:
                    _counter += 1
                    path = os.path.join(log_dir(), f"{_counter}.log")
                try:
                    self._file = create_private(path)
                except FileExistsError:  # taken (or planted): never reused, never followed
                    continue
                except OSError:
                    if self._keep is None:
                        raise
                    self._keep = None  # the kept folder went away: the private one, not nothing
                    continue
                self.path = path
            self._file.writelines(self._memory)
            self._memory = []
            if self._closed:
                self._file.close()
                self._file = None
        return self.path

    def close(self) -> None:
        """No more output: close the log (a later :meth:`materialize` writes and closes at once)."""
        self._closed = True
        if self._file is not None:
            self._file.close()
            self._file = None
