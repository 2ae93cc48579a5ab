"""``%%arun --parallel``: each line of the cell its own command, a few at once, then a summary.

The seed's ``execute_many``, done right: at most ``-j`` commands run together, each line of
output is labelled with its command, an interrupt ends every one of them, and the cell ends
with a table (command, status, exit code, duration, bytes of output) and raises once if any
failed.
"""

from __future__ import annotations

import asyncio
import html
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from IPython.core.error import UsageError
from IPython.display import display

from .foreground import Launch, interrupted, live_output, name_the_source, start_runner
from .options import RunSettings
from .output import LineLabels
from .process import wait_or_interrupt
from .result import CommandError, Result, format_seconds

Launcher = Callable[[str], Launch]
"""The :data:`~asyncmagic.foreground.Launch` that starts one line of the cell."""


class ParallelError(CommandError):
    """Some of the parallel commands failed; ``results`` holds every Result, in line order."""

    def __init__(self, results: Sequence[Result]) -> None:
        failed = [r for r in results if not r.ok]
        super().__init__(failed[0])
        self.results = list(results)
        self.failed = failed
        names = ", ".join(f"{_short(r.command, 30)}: {r.describe()}" for r in failed[:3])
        more = f", and {len(failed) - 3} more" if len(failed) > 3 else ""
        self.args = (f"{len(failed)} of {len(results)} commands failed: {names}{more}",)

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
        error = ParallelError(results)
        if run.raise_on_error:
            raise error
        print(error, file=sys.stderr)
    return results


async def run_parallel(lines: Sequence[str], run: RunSettings, launcher: Launcher) -> list[Result]:
    """Run each of ``lines`` (``launcher(line)`` starts it), ``run.parallel`` at most at once.

    If the cell is interrupted, or a line cannot start, every command already running is
    ended (each task ends its own process when cancelled, so none is missed mid-spawn).
    """
    live = live_output(run)
    gate = asyncio.Semaphore(run.parallel)

    async def one(command: str) -> Result:
        async with gate:
            sink = None
            if live is not None:
                label = f"[{_short(command, 30)}] "
                sink = LineLabels(live, {"stdout": label, "stderr": label})
            proc = await start_runner(launcher(command), sink, getattr(live, "flow", None))
            result, _ = await wait_or_interrupt(proc)
            return name_the_source(result, run)

    tasks = [asyncio.ensure_future(one(line)) for line in lines]
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
        if live is not None:
            await live.aclose()
        display(Summary([t.result() for t in tasks if not t.cancelled() and t.exception() is None]))
    return [task.result() for task in tasks]


def _short(command: str, width: int) -> str:
    command = " ".join(command.split())
    return command if len(command) <= width else command[: width - 1] + "…"


def _bytes_out(result: Result) -> int:
    """Bytes of output: the log file's size when there is one (the captures may be cut)."""
    if result.log_path is not None and os.path.exists(result.log_path):
        return os.path.getsize(result.log_path)
    return len((result.stdout + result.stderr).encode())


class Summary:
    """The table that ends a ``--parallel`` cell, as HTML and as text."""

    COLUMNS = ("command", "status", "exit", "duration", "bytes out")

    def __init__(self, results: Sequence[Result]) -> None:
        self.rows = [
            (
                _short(r.command, 60),
                "ok" if r.ok else r.describe(),
                str(r.returncode),
                format_seconds(r.duration),
                f"{_bytes_out(r):,}",
            )
            for r in results
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
            "<tr>"
            + "".join(f"<td{left if i == 0 else ''}>{html.escape(c)}</td>" for i, c in enumerate(row))
            + "</tr>"
            for row in self.rows
        )
        table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        return f"<p>{html.escape(self.title)}</p>{table}"
