"""``%%arun --parallel``: each line of the cell its own command, a few at once, then a summary.

The seed's ``execute_many``, done right: at most ``-j`` commands run together, each line of
output is labelled with its line's number and what sets that command apart from the others
(``[2 experiment_beta]``), a progress line (``3/5 done · 1 failed``) stays current above the
output, an interrupt ends every command, and the cell ends with a table (command, status,
exit code, duration, bytes of output; failed rows highlighted) and raises once if any
failed.
"""

from __future__ import annotations

import asyncio
import contextvars
import html
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from IPython import get_ipython
from IPython.core.error import UsageError
from IPython.display import DisplayHandle, display

from ..display.output import LineLabels
from ..display.status import StatusLine
from ..engine.result import CommandError, Result, format_seconds
from ..engine.running import wait_or_interrupt
from .foreground import Launch, interrupted, live_output, name_the_source, start_runner
from .options import RunSettings

LABEL_WIDTH = 30
"""Characters of a line's distinctive part shown in its output labels."""

PROGRESS_EVERY = 0.25
"""Seconds between two updates of the progress line."""

Launcher = Callable[[str], Launch]
"""The :data:`~asyncmagic.kernel.foreground.Launch` that starts one line of the cell."""


class ParallelError(CommandError):
    """Some of the parallel commands failed; ``results`` holds every Result, in line order."""

    def __init__(self, results: Sequence[Result], labels: Sequence[str] | None = None) -> None:
        """``labels``: each line's ``[N part]`` label, to name the failed ones by."""
        names = (
            [n.strip() for n in labels]
            if labels is not None
            else [f"{_short(r.command, 30)}:" for r in results]
        )
        failed = [r for r in results if not r.ok]
        super().__init__(failed[0])
        self.results = list(results)
        self.failed = failed
        said = [f"{name} {r.describe()}" for name, r in zip(names, results, strict=True) if not r.ok]
        names_of_failed = ", ".join(said[:3])
        more = f", and {len(failed) - 3} more" if len(failed) > 3 else ""
        self.args = (f"{len(failed)} of {len(results)} commands failed: {names_of_failed}{more}",)

    def __str__(self) -> str:
        return self.args[0]


async def run_for_cell(
    cell: str, run: RunSettings, launcher: Launcher, namespace: dict[str, Any]
) -> list[Result]:
    """``%%arun --parallel``: run the cell's lines, store the captures, raise once for failures."""
    lines = [line.strip() for line in cell.splitlines() if line.strip()]
    if not lines:
        raise UsageError("--parallel needs commands: one per line of the cell")
    started_at = datetime.now(timezone.utc)
    try:
        results = await run_parallel(lines, run, launcher)
    except asyncio.CancelledError:
        raise CommandError(interrupted(" & ".join(lines), started_at)) from None
    if run.out:
        namespace[run.out] = "".join(r.stdout for r in results)
    if run.err:
        namespace[run.err] = "".join(r.stderr for r in results)
    if run.result:
        namespace[run.result] = results
    if any(not r.ok for r in results):
        error = ParallelError(results, line_labels(lines))
        if run.raise_on_error:
            raise error
        print(error, file=sys.stderr)
    return results


async def run_parallel(lines: Sequence[str], run: RunSettings, launcher: Launcher) -> list[Result]:
    """Run each of ``lines`` (``launcher(line)`` starts it), ``run.parallel`` at most at once.

    If the cell is interrupted, or a line cannot start, every command already running is
    ended (each task ends its own process when cancelled, so none is missed mid-spawn).
    """
    progress = Progress(len(lines)) if not run.quiet and hasattr(get_ipython(), "kernel") else None
    live = live_output(run)
    gate = asyncio.Semaphore(run.parallel)
    labels = line_labels(lines)

    async def one(index: int, command: str) -> Result:
        async with gate:
            sink = None
            if live is not None:
                sink = LineLabels(live, {"stdout": labels[index], "stderr": labels[index]})
            started_at = datetime.now(timezone.utc)
            try:
                proc = await start_runner(launcher(command), sink, getattr(live, "flow", None))
            except asyncio.CancelledError:
                # Interrupted while it started: the engine ended it; it still ran, and the
                # summary says so (the cell's cancellation goes on from the gather).
                return interrupted(command, started_at)
            if progress is not None:
                progress.started()
            result, _ = await wait_or_interrupt(proc)
            if progress is not None:
                progress.ended(result)
            return name_the_source(result, run)

    tasks = [asyncio.ensure_future(one(i, line)) for i, line in enumerate(lines)]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        while True:  # each task ends its own process; a second interrupt must not cut that short
            try:
                await asyncio.wait(tasks)
                break
            except asyncio.CancelledError:
                continue
        raise
    finally:
        if progress is not None:
            progress.close()
        if live is not None:
            await live.aclose()
        ended = [i for i, t in enumerate(tasks) if not t.cancelled() and t.exception() is None]
        display(Summary([tasks[i].result() for i in ended], [labels[i].strip() for i in ended]))
    return [task.result() for task in tasks]


def line_labels(lines: Sequence[str]) -> list[str]:
    """``[N part] ``: the line's number and what sets it apart. Words the lines all begin
    or all end with are left out (three runs of one script that differ in ``--config
    experiment_alpha/beta/gamma`` read ``[1 experiment_alpha]``, ``[2 experiment_beta]``...);
    a line with nothing of its own shows its whole command."""
    words = [line.split() for line in lines]
    prefix = suffix = 0
    if len(words) > 1:
        shortest = min(len(w) for w in words)
        while prefix < shortest and len({w[prefix] for w in words}) == 1:
            prefix += 1
        while suffix < shortest - prefix and len({w[len(w) - suffix - 1] for w in words}) == 1:
            suffix += 1
    labels = []
    for number, line_words in enumerate(words, 1):
        own = " ".join(line_words[prefix : len(line_words) - suffix])
        labels.append(f"[{number} {_short(own or ' '.join(line_words), LABEL_WIDTH)}] ")
    return labels


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


def _short(command: str, width: int) -> str:
    command = " ".join(command.split())
    return command if len(command) <= width else command[: width - 1] + "…"


def _bytes_out(result: Result) -> int:
    """Bytes of output: the log file's size when there is one (the captures may be cut)."""
    if result.log_path is not None and os.path.exists(result.log_path):
        return os.path.getsize(result.log_path)
    return len((result.stdout + result.stderr).encode())


_FAILED_ROW = (
    '<tr class="asyncmagic-failed" style="color:var(--jp-error-color1,#c33);'
    'background:var(--jp-rendermime-error-background,#fdd)">'
)
"""A failed row: JupyterLab's own error colours where they exist."""


class Summary:
    """The table that ends a ``--parallel`` cell, as HTML and as text."""

    COLUMNS = ("command", "status", "exit", "duration", "bytes out")

    def __init__(self, results: Sequence[Result], labels: Sequence[str] | None = None) -> None:
        names = labels if labels is not None else [_short(r.command, 60) for r in results]
        self.commands = [r.command for r in results]
        self.rows = [
            (
                name,
                "ok" if r.ok else r.describe(),
                str(r.returncode),
                format_seconds(r.duration),
                f"{_bytes_out(r):,}",
            )
            for name, r in zip(names, results, strict=True)
        ]
        failed = sum(row[1] != "ok" for row in self.rows)
        self.title = f"{len(self.rows)} command{'s' if len(self.rows) != 1 else ''}, {failed} failed"

    def __repr__(self) -> str:
        rows = [self.COLUMNS, *self.rows]
        widths = [max(len(r[i]) for r in rows) for i in range(len(self.COLUMNS))]
        table = "\n".join(
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
        )
        return f"{self.title}\n{table}"

    def _repr_html_(self) -> str:
        left = ' style="text-align:left"'  # the command; numbers keep the frontend's alignment
        head = "".join(f"<th{left if i == 0 else ''}>{c}</th>" for i, c in enumerate(self.COLUMNS))
        body = "".join(
            (_FAILED_ROW if row[1] != "ok" else "<tr>")
            + f'<td{left} title="{html.escape(command)}">{html.escape(row[0])}</td>'
            + "".join(f"<td>{html.escape(c)}</td>" for c in row[1:])
            + "</tr>"
            for row, command in zip(self.rows, self.commands, strict=True)
        )
        table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        return f"<p>{html.escape(self.title)}</p>{table}"
