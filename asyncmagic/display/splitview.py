"""``--split``: stdout and stderr side by side, in one display updated in place.

While the command runs the two columns show the latest lines of each stream; at the end
they show each stream's head and tail (with a notice when lines were left out). HTML for
notebooks, and a ``text/plain`` rendering (stdout, then stderr, under a heading each) for
terminals, plain frontends and saved notebooks.
"""

from __future__ import annotations

import asyncio
import contextvars
import html
import re
import time
from collections import deque
from collections.abc import Callable

from IPython.display import DisplayHandle, display

from ..engine.capture import notice
from ..engine.text import Lines
from .output import GOVERNOR, MESSAGE_OVERHEAD, Governor, HeadTail
from .status import has_kernel

UPDATE_EVERY = 0.25
"""Seconds between two updates of the view while the command runs."""

LIVE_LINES = 40
"""Lines of each stream the view shows while the command runs."""

ALL_LINES = 20_000
"""Lines of each stream the final view holds for ``--max-lines 0``: the view is kept whole
in memory and sent whole at each update, so "everything" has a ceiling here."""

STDERR_BACKGROUND = "var(--jp-rendermime-error-background, #fdd)"
"""JupyterLab's (and Notebook 7's) background for stderr output, with a fallback elsewhere."""

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class SplitContent:
    """One rendering of the two columns, for IPython's display machinery."""

    def __init__(self, stdout: str, stderr: str) -> None:
        self.stdout = last_frames(stdout)
        self.stderr = last_frames(stderr)

    def __repr__(self) -> str:
        return f"── stdout ──\n{_ends_line(self.stdout)}── stderr ──\n{_ends_line(self.stderr)}".rstrip("\n")

    def _repr_html_(self) -> str:
        # Not a table: JupyterLab colours a hovered table row. Columns as wide as their
        # content (wrapping at word boundaries once they share the width), stderr on the
        # background JupyterLab gives stderr elsewhere.
        def column(name: str, text: str, style: str) -> str:
            body = html.escape(_ANSI.sub("", text))
            return (
                f'<div class="asyncmagic-{name}" style="flex:1 1 auto;min-width:0;padding:0 6px;{style}">'
                f'<div style="font-weight:bold">{name}</div>'
                f'<pre style="margin:0;white-space:pre-wrap;overflow-wrap:break-word;background:none">'
                f"{body}</pre></div>"
            )

        return (
            '<div class="asyncmagic-split" style="display:flex;gap:8px;align-items:flex-start">'
            + column("stdout", self.stdout, "")
            + column("stderr", self.stderr, f"background:{STDERR_BACKGROUND}")
            + "</div>"
        )


def last_frames(text: str) -> str:
    """Each line as a terminal leaves it: a progress bar redrawn with ``\r`` is its last
    frame, one row (``\r\n`` is a line end)."""
    if "\r" not in text:
        return text
    lines = text.replace("\r\n", "\n").split("\n")
    return "\n".join(next((f for f in reversed(line.split("\r")) if f), "") for line in lines)


def _ends_line(text: str) -> str:
    return text if not text or text.endswith("\n") else text + "\n"


class SplitView:
    """The output sink for ``--split``: call it as ``view(stream, text)``, then ``await aclose()``."""

    def __init__(self, *, max_lines: int = 0, governor: Governor = GOVERNOR) -> None:
        self._context = contextvars.copy_context()
        self._governor = governor
        shown = max_lines or ALL_LINES
        self._limits = {name: HeadTail(shown) for name in ("stdout", "stderr")}
        self._head = {name: [] for name in ("stdout", "stderr")}
        self._recent: dict[str, deque[str]] = {
            name: deque(maxlen=LIVE_LINES) for name in ("stdout", "stderr")
        }
        self._lines = {name: Lines() for name in ("stdout", "stderr")}
        self._live = has_kernel()  # a terminal cannot update in place
        self._handle: DisplayHandle | None = None
        self._last = 0.0
        self._timer: asyncio.TimerHandle | None = None
        if self._live:
            self._handle = self._context.run(display, SplitContent("", ""), display_id=True)

    def __call__(self, stream: str, text: str) -> None:
        shown = self._limits[stream].admit(stream, text)
        if shown:
            self._head[stream].append(shown)
        self._recent[stream].extend(line + "\n" for line in self._lines[stream].feed(text))
        if self._live and self._timer is None:
            wait = max(self._last + UPDATE_EVERY - time.monotonic(), 0)
            self._timer = asyncio.get_running_loop().call_later(wait, self._update)

    async def aclose(self, log_path: Callable[[], str] | None = None) -> None:
        """Show the final view: each stream's head, a notice if lines were left out, its tail."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        columns = {}
        for name, limit in self._limits.items():
            text = "".join(self._head[name])
            tail = "".join(t for _, t in limit.finish())
            if limit.hidden_lines or limit.hidden_chars:
                path = log_path() if log_path is not None else None
                text = _ends_line(text) + notice(limit.hidden_lines, limit.hidden_chars, path) + "\n"
            text += tail
            columns[name] = text
        content = SplitContent(columns["stdout"], columns["stderr"])
        while (wait := self._governor.delay(self._cost(content), 1)) > 0:
            await asyncio.sleep(wait)
        self._send(content, final=True)

    def _update(self) -> None:
        self._timer = None
        content = SplitContent(
            "".join(self._recent["stdout"]) + self._lines["stdout"].partial,
            "".join(self._recent["stderr"]) + self._lines["stderr"].partial,
        )
        wait = self._governor.delay(self._cost(content), 1)
        if wait > 0:
            self._timer = asyncio.get_running_loop().call_later(wait, self._update)
            return
        self._send(content)

    def _send(self, content: SplitContent, final: bool = False) -> None:
        self._governor.record(self._cost(content), 1)
        self._last = time.monotonic()
        if self._handle is not None:
            self._context.run(self._handle.update, content)
        elif final:
            self._context.run(display, content)

    @staticmethod
    def _cost(content: SplitContent) -> int:
        return 2 * (len(content.stdout) + len(content.stderr)) + 600 + MESSAGE_OVERHEAD
