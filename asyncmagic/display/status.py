"""Status as it looks: a job's status line, a command's elapsed time, the table of jobs."""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable
from typing import Literal

from IPython import get_ipython
from IPython.display import DisplayHandle, display

from ..engine.jobs import Job
from ..engine.result import Result, format_seconds

Client = Literal["terminal", "notebook", "console", "headless"]


def client_kind() -> Client:
    """Who shows the current cell's output, from its execute request: a notebook frontend
    (JupyterLab, Notebook 7, VS Code) names the cell in the metadata (``cellId``) and
    redraws displays in place; a headless run (nbclient, papermill, ``jupyter execute``)
    says ``allow_stdin: false`` and saves what it got; jupyter console does neither and
    shows a display once, never its updates. No kernel: terminal IPython."""
    kernel = getattr(get_ipython(), "kernel", None)
    if kernel is None:
        return "terminal"
    request = kernel.get_parent("shell") or {}
    if not request.get("content", {}).get("allow_stdin", False):
        return "headless"
    metadata = request.get("metadata") or {}
    return "notebook" if "cellId" in metadata or "cell_id" in metadata else "console"


def has_kernel() -> bool:
    """True in a kernel (a notebook, a console, a headless run), False in terminal IPython."""
    return getattr(get_ipython(), "kernel", None) is not None


def redraws_in_place() -> bool:
    """True when a status line can change where it stands (a notebook frontend)."""
    return client_kind() == "notebook"


def status_text(job: Job) -> str:
    """``running · pid 4242 · 12 s``, later ``exit 0 · 3 min 4 s``."""
    result = job.result
    if result is not None:
        return f"[job {job.id}] {result.describe()} · {format_seconds(result.duration)}"
    if job.state != "running":
        return f"[job {job.id}] {job.state}"
    pid = f" · pid {job.pid}" if job.pid is not None else ""  # a --host job has none of its own
    return f"[job {job.id}] running{pid} · {format_seconds(job.elapsed)}"


class StatusLine:
    """One line of status for IPython's display machinery: plain text, drawn like the output
    around it (a job's ``[job 1] running · pid 4242 · 12 s``, a command's elapsed time)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


class StatusLines:
    """Keeps many status lines current, evenly: each at most once every ``every`` seconds,
    and all of them together at most ``per_second`` updates a second, one at a time.

    A hundred jobs started together would otherwise refresh in one burst every second (each
    update a formatted, signed iopub message), and an execute request waits behind it. Each
    line is updated in the context it was added from, so it goes to its own cell.
    """

    def __init__(self, every: float = 1.0, per_second: float = 20.0) -> None:
        self.every, self.per_second = every, per_second
        self._lines: dict[object, tuple[DisplayHandle, Callable[[], str], contextvars.Context]] = {}
        self._task: asyncio.Task[None] | None = None

    def add(self, key: object, handle: DisplayHandle, text: Callable[[], str]) -> None:
        """Refresh ``handle`` with ``text()`` until :meth:`remove` (the current context's cell)."""
        self._lines[key] = (handle, text, contextvars.copy_context())
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._refresh())

    def remove(self, key: object) -> None:
        self._lines.pop(key, None)

    def close(self) -> None:
        self._lines.clear()
        if self._task is not None:
            self._task.cancel()

    async def _refresh(self) -> None:
        while self._lines:
            await asyncio.sleep(max(self.every / len(self._lines), 1 / self.per_second))
            if not self._lines:
                return
            key = next(iter(self._lines))
            handle, text, context = self._lines.pop(key)
            self._lines[key] = (handle, text, context)  # to the back of the round
            context.run(handle.update, StatusLine(text()))


ELAPSED_AFTER = 1.0
"""Seconds a foreground command runs before its cell shows the elapsed time."""


class Elapsed:
    """A status line at the top of the cell's output: elapsed time, then how the command ended.

    Jupyter appends outputs, so the line is placed before any output, empty (an empty text
    renders with no height); it shows ``running · pid 42 · 3 s`` only once the command has
    run for :data:`ELAPSED_AFTER`, so quick commands leave no visible trace, is updated once
    a second, and ends as the final status (``exit 0 · 3.2 s``). It is placed (:meth:`place`)
    just before the command's first output or its first word, not at its start: a quick
    silent command then sends nothing, and the cell's first moments, when ipykernel's IO
    thread is busy with the cell's own messages, are left to the spawn.
    """

    def __init__(self) -> None:
        self.pid: int | None = None
        self._context = contextvars.copy_context()
        self._started = time.monotonic()
        self._shown = False
        self._placed = False
        self._handle = DisplayHandle()
        self._timer = asyncio.get_running_loop().call_later(ELAPSED_AFTER, self._tick)

    def _tick(self) -> None:
        self._shown = True
        pid = f" · pid {self.pid}" if self.pid is not None else ""
        self._update(f"running{pid} · {format_seconds(time.monotonic() - self._started)}")
        self._timer = asyncio.get_running_loop().call_later(1.0, self._tick)

    def place(self) -> None:
        """Put the (empty) line in the cell, once: before anything else the command shows."""
        if not self._placed:
            self._placed = True
            self._context.run(_placeholder, self._handle.display_id)

    def _update(self, text: str) -> None:
        self.place()
        self._context.run(self._handle.update, StatusLine(text))

    def stop(self) -> None:
        self._timer.cancel()

    def stopping(self, interrupt_grace: float) -> None:
        """Say at once that the stop button was heard, while Ctrl-C handlers get their time."""
        self.stop()
        self._shown = True
        self._update(
            f"stopping… · Ctrl-C sent, SIGTERM after {format_seconds(interrupt_grace)} if still running"
        )

    def finish(self, result: Result, cut: str | None = None) -> None:
        """Show the final status, if the running line was ever shown, and the notice of
        output not shown (``cut``) in any case: at the top, where a person starts reading."""
        self.stop()
        status = final_status(result)
        if cut is not None:
            self._update(f"{status} · {cut}")
        elif self._shown:
            self._update(status)

    def clear(self, cut: str | None = None) -> None:
        """Empty the line again (what follows it says how it ended), but for the notice of
        output not shown, ``cut``."""
        self.stop()
        if self._shown or cut is not None:
            self._update(cut or "")


def final_status(result: Result) -> str:
    """``exit 0 · 3.2 s``; ``timed out after 2.0 s`` already says how long."""
    took = "" if result.ended == "timeout" else f" · {format_seconds(result.duration)}"
    return result.describe() + took


def _placeholder(display_id: str) -> None:
    """Display an empty line to fill in later, at the cost of one iopub message.

    Sent straight to iopub where ipykernel is there: ``display()`` first waits for the
    kernel's output streams to flush, which would add most of a millisecond to every command.
    """
    publisher = getattr(get_ipython(), "display_pub", None)
    session = getattr(publisher, "session", None)
    if session is None:
        display(StatusLine(""), display_id=display_id)
        return
    content = {"data": {"text/plain": ""}, "metadata": {}, "transient": {"display_id": display_id}}
    session.send(
        publisher.pub_socket, "display_data", content, parent=publisher.parent_header, ident=publisher.topic
    )


PROGRESS_EVERY = 0.25
"""Seconds between two updates of a ``--parallel`` cell's progress line."""


class Progress:
    """The line above a ``--parallel`` cell's output: ``3/5 done · 1 failed · 2 running``,
    updated at most every :data:`PROGRESS_EVERY` seconds, exact once the cell ends."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.running = self.done = self.failed = 0
        self._context = contextvars.copy_context()
        self._started = time.monotonic()
        self._handle = DisplayHandle()
        self._context.run(self._handle.display, StatusLine(self.text()))
        self._timer: asyncio.TimerHandle | None = None

    def text(self, final: bool = False) -> str:
        parts = [f"{self.done}/{self.total} done"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.running and not final:
            parts.append(f"{self.running} running")
        if final:
            parts.append(format_seconds(time.monotonic() - self._started))
        return " · ".join(parts)

    def started(self) -> None:
        self.running += 1
        self._later()

    def ended(self, result: Result) -> None:
        self.running -= 1
        self.done += 1
        self.failed += not result.ok
        self._later()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._context.run(self._handle.update, StatusLine(self.text(final=True)))

    def _later(self) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(PROGRESS_EVERY, self._update)

    def _update(self) -> None:
        self._timer = None
        self._context.run(self._handle.update, StatusLine(self.text()))
