"""Bytes to text, and text arriving in pieces to whole lines: written once for every reader."""

from __future__ import annotations

import codecs
from collections.abc import Callable, Mapping

COUNT_SLICE = 64 * 1024
"""Characters :func:`newlines` counts at a time: what stays in the CPU cache."""


_last_counted: tuple[str, int] = ("", 0)


def newlines(text: str) -> int:
    """How many newlines ``text`` holds; every piece of a flood of output is counted.

    ``str.count`` of one character checks every character in a loop that does not
    vectorize (about 0.55 s per GB here). Deleting the newlines from ASCII bytes with
    ``bytes.replace`` finds them with ``memchr``: about 0.2 s per GB, in slices that stay
    in the cache (one copy of a whole megabyte is slower than the count).

    A piece of output is counted by the capture and then by the display, one after the
    other: the last piece's count is kept (with the piece, so its identity stays its own).
    """
    global _last_counted
    last_text, last_count = _last_counted  # one read: another thread may count meanwhile
    if text is last_text:
        return last_count
    if not text.isascii():
        count = text.count("\n")
    else:
        count = 0
        for start in range(0, len(text), COUNT_SLICE):
            data = text[start : start + COUNT_SLICE].encode("ascii")
            count += len(data) - len(data.replace(b"\n", b""))
    if len(text) >= COUNT_SLICE:
        _last_counted = (text, count)
    return count


def utf8_decoder() -> codecs.IncrementalDecoder:
    """An incremental UTF-8 decoder: a character split across two reads is decoded whole,
    and bytes that are not UTF-8 become U+FFFD (the log keeps them as they were)."""
    return codecs.getincrementaldecoder("utf-8")("replace")


class Lines:
    """Text that arrives in pieces, split into whole lines; the unfinished rest waits."""

    def __init__(self, keep: int | None = None) -> None:
        self.partial = ""
        self._keep = keep
        """At most this many characters of an unfinished line are kept (its end)."""

    def feed(self, text: str) -> list[str]:
        """The lines ``text`` completes, without their newlines."""
        *whole, partial = (self.partial + text).split("\n")
        self.partial = partial if self._keep is None else partial[-self._keep :]
        return whole

    def rest(self) -> str:
        """The unfinished line, taken (at the end of the stream)."""
        rest, self.partial = self.partial, ""
        return rest


class Labeller:
    """Prefixes every line with its stream's label and passes on whole lines only, so the
    lines of several sources written to one stream never break into each other; what is
    left of an unfinished line is passed on, as a line, by :meth:`close`."""

    def __init__(
        self, emit: Callable[[str, str], None], labels: Mapping[str, str], into: str | None = None
    ) -> None:
        self._emit = emit
        self._labels = labels
        self._into = into
        """The stream everything goes to (a pipeline's stages: stderr), else each its own."""
        self._lines: dict[str, Lines] = {}

    def __call__(self, stream: str, text: str) -> None:
        lines = self._lines.setdefault(stream, Lines()).feed(text)
        if lines:
            label = self._labels[stream]
            self._emit(self._into or stream, "".join(f"{label}{line}\n" for line in lines))

    def close(self) -> None:
        for stream, lines in self._lines.items():
            if rest := lines.rest():
                self._emit(self._into or stream, f"{self._labels[stream]}{rest}\n")


def shorten(command: str, room: int) -> str:
    """A command in at most ``room`` characters on one line: its first line, spaces
    collapsed, ending ``…`` when anything was left out."""
    lines = command.strip().splitlines()
    first = " ".join(lines[0].split()) if lines else ""
    if len(first) > room or len(lines) > 1:
        first = first[: room - 1] + "…"
    return first
