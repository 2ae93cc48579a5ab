"""Bytes to text, and text arriving in pieces to whole lines: written once for every reader."""

from __future__ import annotations

import codecs
from collections.abc import Callable


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
    """Prefixes every line of one source with its label, passing on whole lines only, so
    the lines of several sources written to one stream never break into each other."""

    def __init__(self, label: str, emit: Callable[[str, str], None], stream: str | None = None) -> None:
        self._label = label
        self._emit = emit
        self._stream = stream
        """The stream everything goes to (a pipeline's stages: stderr), else each its own."""
        self._lines: dict[str, Lines] = {}

    def __call__(self, stream: str, text: str) -> None:
        lines = self._lines.setdefault(stream, Lines()).feed(text)
        if lines:
            self._emit(self._stream or stream, "".join(f"{self._label}{line}\n" for line in lines))

    def close(self) -> None:
        """Pass on what is left of an unfinished line, as a line."""
        for stream, lines in self._lines.items():
            if rest := lines.rest():
                self._emit(self._stream or stream, f"{self._label}{rest}\n")
