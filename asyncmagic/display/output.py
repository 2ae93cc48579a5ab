"""Output routing: where a command's text goes on its way to the person watching.

:class:`LiveOutput` writes to the cell's stdout and stderr streams (ipykernel's OutStream
in a notebook, the terminal in IPython). It keeps the arrival order of the two streams,
sends a lone line at once and batches a flood, sends only the latest frame of a line
redrawn with ``\\r``, shows the head and the tail of a huge output with a notice between
them, and keeps every command of the kernel together under jupyter_server's iopub rate
limits (:class:`Governor`), which otherwise drop output silently.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TextIO

from ..engine.capture import human_size, notice
from ..engine.flow import Flow
from ..engine.text import Labeller, newlines

MIN_GAP = 0.025
"""Seconds between two flushes of a command's flood (at most 40 a second)."""

PROGRESS_GAP = 0.1
"""Seconds between two frames of a line redrawn with ``\\r`` (at most 10 a second)."""

MAX_BATCH = 100_000
"""Characters one flush sends at the most: a backlog goes out in pieces the governor can pace."""

HIGH_WATER = 2_000_000
"""Characters waiting to be sent at which the reading of the command's pipes pauses..."""

PAGE_CEILING = 2_000_000
"""Characters of one output a notebook shows by default even with ``--max-lines 0``
(``AsyncMagics.page_limit``): its head and its tail, a million each. JupyterLab renders
a stream output whole again at each message, so seven million (a million lines of
``seq``) froze its page for 18 s, as with ``!cmd``."""

LOW_WATER = 500_000
"""...and at which it resumes (see :mod:`asyncmagic.engine.flow`)."""

LABELS = {"stdout": "[out] ", "stderr": "[err] "}
"""What ``--label`` puts before each line of each stream."""

MESSAGE_OVERHEAD = 700
"""Bytes an iopub stream message costs beyond its text (headers, signature), as jupyter_server counts."""


class Governor:
    """Keeps all output of this kernel under jupyter_server's iopub rate limits.

    jupyter_server averages ``iopub_data_rate_limit`` (1,000,000 bytes/s) and
    ``iopub_msg_rate_limit`` (1000 msg/s) over a 3 s window and drops messages above them.
    This keeps any 3 s window under a share of both (80% by default), for every command
    together: a flush that would pass is told how long to wait.
    """

    def __init__(
        self, bytes_per_s: float = 800_000, messages_per_s: float = 800, window: float = 3.0
    ) -> None:
        self.window = window
        self.max_bytes = bytes_per_s * window
        self.max_messages = messages_per_s * window
        self._sent: deque[tuple[float, int, int]] = deque()
        self._bytes = 0
        self._messages = 0

    def delay(self, nbytes: int, messages: int) -> float:
        """Seconds to wait before sending this much; 0 to send now."""
        now = time.monotonic()
        self._forget(now)
        over_bytes = self._bytes + nbytes - self.max_bytes
        over_messages = self._messages + messages - self.max_messages
        if (over_bytes <= 0 and over_messages <= 0) or not self._sent:
            return 0.0
        for t, b, m in self._sent:
            over_bytes -= b
            over_messages -= m
            if over_bytes <= 0 and over_messages <= 0:
                return max(t + self.window - now, 0.001)
        return max(self._sent[-1][0] + self.window - now, 0.001)

    def record(self, nbytes: int, messages: int) -> None:
        self._sent.append((time.monotonic(), nbytes, messages))
        self._bytes += nbytes
        self._messages += messages

    def _forget(self, now: float) -> None:
        while self._sent and self._sent[0][0] <= now - self.window:
            _, b, m = self._sent.popleft()
            self._bytes -= b
            self._messages -= m


GOVERNOR = Governor()
"""The one governor of this kernel: every command's output shares it."""


class HeadTail:
    """Decides what of a huge output is shown: the head now, the tail at the end.

    ``max_lines`` lines in all (half head, half tail; 0 shows everything, or with a
    ``ceiling`` every line up to that many characters), and at most ``max_chars``
    characters on each side, so one endless line cannot flood the browser.
    """

    def __init__(self, max_lines: int, max_chars: int = 256_000, ceiling: int | None = None) -> None:
        self.unlimited = max_lines <= 0 and ceiling is None
        if max_lines <= 0 and ceiling is not None:  # every line, up to ``ceiling`` characters
            max_lines, max_chars = 2 * sys.maxsize, ceiling // 2
        self.head_lines = max_lines // 2
        self.tail_lines = max_lines - self.head_lines
        self.max_chars = max_chars
        self._lines = 0
        self._chars = 0
        self.in_tail = False
        self._tail: deque[tuple[str, str, int]] = deque()
        self._tail_lines = 0
        self._tail_chars = 0
        self.hidden_lines = 0
        self.hidden_chars = 0

    def admit(self, stream: str, text: str) -> str:
        """The part of ``text`` to show now; the rest goes to the tail."""
        if self.unlimited:
            return text
        if self.in_tail:
            self._to_tail(stream, text)
            return ""
        cut = self._head_room(text)
        if cut >= len(text):
            self._lines += newlines(text)
            self._chars += len(text)
            return text
        self.in_tail = True
        self._to_tail(stream, text[cut:])
        return text[:cut]

    def finish(self) -> list[tuple[str, str]]:
        """What to show at the end: the tail, cut to size (call once, before reading ``hidden_*``)."""
        excess_lines = self._tail_lines - self.tail_lines
        excess_chars = self._tail_chars - self.max_chars
        if self._tail and (excess_lines > 0 or excess_chars > 0):
            stream, old, old_lines = self._tail[0]
            cut = 0
            for _ in range(max(excess_lines, 0)):
                cut = old.index("\n", cut) + 1
            cut = max(cut, excess_chars)
            self._tail[0] = (stream, old[cut:], old_lines - old[:cut].count("\n"))
            self._hide(old[:cut], old_lines - self._tail[0][2])
        return [(stream, text) for stream, text, _ in self._tail]

    def _head_room(self, text: str) -> int:
        room = self.max_chars - self._chars
        lines_left = self.head_lines - self._lines
        pos = 0
        while lines_left > 0:
            nl = text.find("\n", pos)
            if nl < 0:
                break
            pos = nl + 1
            lines_left -= 1
        end = len(text) if lines_left > 0 else pos
        return max(min(end, room), 0)

    def _to_tail(self, stream: str, text: str) -> None:
        """Keep the newest pieces: whole pieces are dropped as they fall out of the tail, and
        each piece's newlines are counted once; the first piece is cut in :meth:`finish`."""
        if not text:
            return
        lines = newlines(text)
        self._tail.append((stream, text, lines))
        self._tail_lines += lines
        self._tail_chars += len(text)
        while len(self._tail) > 1:
            _, old, old_lines = self._tail[0]
            if (
                self._tail_lines - old_lines < self.tail_lines
                and self._tail_chars - len(old) < self.max_chars
            ):
                break
            self._tail.popleft()
            self._hide(old, old_lines)

    def _hide(self, text: str, lines: int) -> None:
        self.hidden_lines += lines
        self.hidden_chars += len(text)
        self._tail_lines -= lines
        self._tail_chars -= len(text)


class LiveOutput:
    """Streams a command's output into the cell it was started from.

    Call it as ``live(stream, text)``; await :meth:`aclose` when the command is done. With
    ``label``, every line starts ``[out] `` or ``[err] ``. The
    context (ipykernel keeps "which cell" in ContextVars) and the stream objects are taken
    when it is created, so output keeps going to that cell whatever runs later.
    """

    def __init__(
        self,
        *,
        max_lines: int = 0,
        max_chars: int = 256_000,
        label: bool = False,
        governor: Governor = GOVERNOR,
        min_gap: float = MIN_GAP,
        ceiling: int | None = None,
    ) -> None:
        self._labels = Labeller(self._admit, LABELS) if label else None
        self._at_ceiling = max_lines <= 0 and ceiling is not None
        self._ceiling = ceiling or 0
        self._context = contextvars.copy_context()
        self._streams: dict[str, TextIO] = {"stdout": sys.stdout, "stderr": sys.stderr}
        self._governor = governor
        self._min_gap = min_gap
        self._limit = HeadTail(max_lines, max_chars, ceiling)
        self.cut: str | None = None
        """Once closed: the notice of what was not shown, if anything was cut."""
        self._pending: list[list[str]] = []  # [stream, text] in arrival order
        self._pending_chars = 0
        self.flow = Flow()
        """Paused while more than HIGH_WATER characters wait to be sent (``--max-lines 0``)."""
        self._last_flush = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self.before_first_write: Callable[[], None] | None = None
        """Called once, just before the first output is written (a status line placed above it)."""
        self._sending: dict[str, threading.Event] = {}  # each stream's last send handed to the IO thread
        self._last_stream = ""

    def __call__(self, stream: str, text: str) -> None:
        if self._labels is not None:
            self._labels(stream, text)
        else:
            self._admit(stream, text)

    def _admit(self, stream: str, text: str) -> None:
        shown = self._limit.admit(stream, text)
        if not shown:
            return
        self._queue(stream, shown)
        if self._pending_chars > HIGH_WATER:
            self.flow.pause()
        self._schedule()

    def _queue(self, stream: str, text: str) -> None:
        if self._pending and self._pending[-1][0] == stream:
            self._pending[-1][1] += text
        else:
            self._pending.append([stream, text])
        self._pending_chars += len(text)

    async def aclose(self, log_path: Callable[[], str] | None = None) -> None:
        """Send what is left: pending text, then the notice and the tail of a huge output."""
        if self._labels is not None:
            self._labels.close()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        limit = self._limit
        if limit.in_tail:
            tail = limit.finish()
            if limit.hidden_lines or limit.hidden_chars:
                path = log_path() if log_path is not None else None
                text = notice(limit.hidden_lines, limit.hidden_chars, path)
                if self._at_ceiling:
                    text += f" (a notebook page shows at most {human_size(self._ceiling)} of one output)"
                self.cut = text
                last = self._pending[-1][1] if self._pending else "\n"
                self._queue("stderr", ("" if last.endswith("\n") else "\n") + text + "\n")
            for stream, text in tail:
                self._queue(stream, text)
        while self._pending:
            wait = self._governor.delay(*self._cost())
            if wait <= 0:
                self._flush()
            else:
                await asyncio.sleep(wait)
        if self._timer is not None:  # the last flush may have scheduled another
            self._timer.cancel()
            self._timer = None

    def _schedule(self) -> None:
        if self._timer is not None:
            return
        gap = self._min_gap if any("\n" in text for _, text in self._pending) else PROGRESS_GAP
        wait = max(self._last_flush + gap - time.monotonic(), self._governor.delay(*self._cost()))
        if wait <= 0:
            self._flush()
        else:
            self._timer = asyncio.get_running_loop().call_later(wait, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        wait = self._governor.delay(*self._cost())
        if wait > 0:
            self._timer = asyncio.get_running_loop().call_later(wait, self._on_timer)
        else:
            self._flush()

    def _cost(self) -> tuple[int, int]:
        """Bytes and messages of the next flush, as the governor counts them."""
        room, chars, messages = MAX_BATCH, 0, 0
        for _, text in self._pending:
            if room <= 0:
                break
            take = min(len(text), room)
            room -= take
            chars += take
            messages += 1
        return chars + MESSAGE_OVERHEAD * messages, messages

    def _take_batch(self) -> list[tuple[str, str]]:
        """Up to MAX_BATCH characters from the front of the pending text, cut at a line end."""
        batch: list[tuple[str, str]] = []
        room = MAX_BATCH
        while self._pending and room > 0:
            stream, text = self._pending[0]
            if len(text) <= room:
                self._pending.pop(0)
            else:
                cut = text.rfind("\n", 0, room) + 1 or room
                text, self._pending[0][1] = text[:cut], text[cut:]
            batch.append((stream, text))
            room -= len(text)
            self._pending_chars -= len(text)
        return batch

    def _flush(self) -> None:
        if self._pending:
            batch = [(stream, collapse_frames(text)) for stream, text in self._take_batch()]
            self._governor.record(sum(len(t) + MESSAGE_OVERHEAD for _, t in batch), len(batch))
            self._context.run(self._write, batch)
            if self._pending_chars < LOW_WATER:
                self.flow.resume()
        self._last_flush = time.monotonic()
        if self._pending:
            self._schedule()

    def _write(self, pending: list[tuple[str, str]]) -> None:
        if self.before_first_write is not None:
            first, self.before_first_write = self.before_first_write, None
            first()
        for stream, text in pending:
            out = self._streams[stream]
            sending = self._sending.pop(stream, None)
            if sending is not None and stream != self._last_stream:
                # Its last send must be done before more is written, or the text written to the
                # other stream since would come out after this: one run of a stream per message.
                sending.wait(SEND_TIMEOUT)
            out.write(text)
            sent = send_soon(out)
            if sent is not None:
                self._sending[stream] = sent
            self._last_stream = stream


SEND_TIMEOUT = 10.0
"""Seconds to wait for ipykernel's IO thread to send a stream, as its own ``flush`` waits."""


def send_soon(out: TextIO) -> threading.Event | None:
    """Have ``out`` sent now without waiting for it: the event is set once it is sent.

    ipykernel's ``OutStream.flush`` hands the send to its IO thread and waits for the thread's
    answer, a round trip that cost most of a millisecond for every command's first line.
    The IO thread runs what it is handed in order, so a send handed over now still goes out
    before anything displayed or flushed after it. Any other stream is flushed in place
    (None: done).
    """
    pub = getattr(out, "pub_thread", None)
    thread = getattr(pub, "thread", None)
    send = getattr(out, "_flush", None)
    if send is None or thread is None or thread is threading.current_thread() or not thread.is_alive():
        out.flush()
        return None
    sent = threading.Event()

    def send_and_tell() -> None:
        try:
            send()
        finally:
            sent.set()

    pub.schedule(send_and_tell)
    return sent


def collapse_frames(text: str) -> str:
    """Keep only the last frame of each line redrawn with ``\\r`` (as notebooks render it).

    ``"a\\rb\\rc"`` becomes ``"\\rc"``: the leading ``\\r`` still overwrites a frame sent
    earlier. A trailing ``\\r`` is kept, and ``\\r\\n`` stays a line end.
    """
    if "\r" not in text:
        return text
    out = []
    for line in text.split("\n"):
        if "\r" in line.rstrip("\r"):
            trailing = "\r" if line.endswith("\r") else ""
            frames = [f for f in line.split("\r") if f]
            line = "\r" + (frames[-1] if frames else "") + trailing
        out.append(line)
    return "\n".join(out)
