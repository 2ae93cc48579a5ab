"""Running a command for a cell in the foreground: stream it in, then report and store.

Between the magics (which only parse) and the engine (which knows no IPython): it wires
the engine's output to the cell, turns a cancelled cell into an interrupt of the whole
process tree, stores the captures in the user's variables, and applies the error policy.
"""

from __future__ import annotations

import asyncio
import errno
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Protocol

from IPython import get_ipython
from IPython.core.error import UsageError

from ..display.output import LiveOutput
from ..display.splitview import SplitView
from ..display.status import ELAPSED_AFTER, Elapsed, client_kind, final_status, redraws_in_place
from ..engine.flow import Flow
from ..engine.process import OutputCallback
from ..engine.result import CommandError, Ended, Result
from ..engine.running import wait_or_interrupt
from .options import RunSettings


class Runner(Protocol):
    """What runs for a cell: a :class:`~asyncmagic.Process` or a pipeline."""

    async def wait(self) -> Result: ...
    async def interrupt(self) -> Result: ...
    async def stop(self, ended: Ended = "killed", *, grace: float | None = None) -> Result: ...
    def log_path(self) -> str: ...


Launch = Callable[[OutputCallback | None, Flow | None], Awaitable[Runner]]
"""Starts a command or pipeline given where its output goes and the :class:`Flow` that may
pause its reading when the display falls behind: ``launch(on_output, flow)``."""


async def run_for_cell(
    launch: Launch, run: RunSettings, namespace: dict[str, Any], *, command: str = ""
) -> Result:
    """Start with ``launch`` and run to the end, streaming into the current cell.

    An interrupt of the cell (its task cancelled) ends the whole tree and raises
    :class:`CommandError` saying "interrupted", with or without ``--no-raise``: the person
    asked everything to stop.
    """
    indicator = Elapsed() if not run.quiet and redraws_in_place() else None
    live = live_output(run)
    started_at = datetime.now(timezone.utc)
    try:
        try:
            runner = await start_runner(launch, live, getattr(live, "flow", None))
        except asyncio.CancelledError:  # the engine ended what it had started
            if live is not None:
                await live.aclose()
            result = interrupted(command, started_at)
            store(result, run, namespace)
            raise CommandError(result) from None
        if indicator is not None:
            indicator.pid = getattr(runner, "pid", None)
        try:
            stopping = None if indicator is None else lambda: indicator.stopping(run.interrupt_grace)
            result, _ = await wait_or_interrupt(runner, stopping)
        finally:
            if live is not None:
                await live.aclose(runner.log_path)
    finally:
        if indicator is not None:
            indicator.stop()
    cut = getattr(live, "cut", None)
    if indicator is not None and not result.ok and run.raise_on_error:
        indicator.clear(cut)  # the error's one line says how it ended: once is enough
    elif indicator is not None:
        indicator.finish(result, cut)
    elif _says_how_it_ended(run, result, cut):
        ending = final_status(result) + (f" · {cut}" if cut else "")
        print(ending, file=sys.stdout if result.ok else sys.stderr)
    result = name_the_source(result, run)
    store(result, run, namespace)
    report(result, run)
    return result


def _says_how_it_ended(run: RunSettings, result: Result, cut: str | None) -> bool:
    """Where no status line redraws (headless, jupyter console) a command that ran long
    enough to show one, or whose output was cut, ends with it as a line (the notice again,
    at the end: there is no top line to put it in); a quick one leaves nothing, and a
    failure that raises says it in its error."""
    return (
        not run.quiet
        and _in_notebook()
        and (result.duration >= ELAPSED_AFTER or cut is not None)
        and (result.ok or not run.raise_on_error)
    )


async def start_runner(launch: Launch, on_output: OutputCallback | None, flow: Flow | None) -> Runner:
    """Start, turning every error of starting into a one-line UsageError."""
    try:
        return await launch(on_output, flow)
    except (OSError, ValueError, TypeError) as exc:
        raise start_error(exc) from None


def start_error(exc: BaseException) -> UsageError:
    """One line for a command that could not start: what, and why."""
    if isinstance(exc, OSError):
        what = f"cannot start {exc.filename}" if exc.filename else "cannot start the command"
        why = exc.strerror or str(exc)
        if exc.errno == errno.E2BIG:
            why = "its arguments are longer than Linux allows (E2BIG: 128 KiB one, 2 MiB in all)"
        return UsageError(f"{what}: {why[:1].lower() + why[1:]}")
    return UsageError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def interrupted(command: str, started_at: datetime) -> Result:
    """The Result of a cell interrupted before its command (or all of its commands) had a
    Result of its own: while it started, or ``--parallel`` as a whole."""
    return Result(
        command=command,
        returncode=-signal.SIGINT,
        stdout="",
        stderr="",
        started_at=started_at,
        finished_at=datetime.now(timezone.utc),
        ended="interrupted",
    )


def live_output(run: RunSettings) -> LiveOutput | SplitView | None:
    """Where a run's output is shown, as its options say; None for ``--quiet``."""
    if run.quiet:
        return None
    if run.split and client_kind() in ("notebook", "headless"):  # who redraws it, or keeps its last state
        return SplitView(max_lines=run.max_lines)
    # A terminal (or jupyter console) cannot redraw two columns in place: each line as it
    # comes, labelled.
    # "Everything" in a notebook stops where a browser page would freeze.
    ceiling = run.page_limit if run.max_lines == 0 and _in_notebook() else None
    return LiveOutput(max_lines=run.max_lines, label=run.label or run.split, ceiling=ceiling)


def _in_notebook() -> bool:
    return hasattr(get_ipython(), "kernel")


def name_the_source(result: Result, run: RunSettings) -> Result:
    """Say which option an input error came from: ``--stdin nums: input failed: ...``."""
    if result.error is None or run.input_name is None:
        return result
    return replace(result, error=f"{run.input_name}: {result.error}")


def store(result: Result, run: RunSettings, namespace: dict[str, Any]) -> None:
    """Put the captures and the Result into the user's variables named by the options."""
    if run.out:
        namespace[run.out] = result.stdout
    if run.err:
        namespace[run.err] = result.stderr
    if run.result:
        namespace[run.result] = result


def report(result: Result, run: RunSettings) -> None:
    """Raise CommandError for a failure, or with ``--no-raise`` print its one line."""
    if result.ok:
        return
    if run.raise_on_error or result.ended == "interrupted":
        raise CommandError(result)
    print(result.summary(), file=sys.stderr, flush=True)
