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
from datetime import datetime, timezone
from typing import Any

from IPython.core.error import UsageError

from ..display.output import LiveOutput
from ..display.splitview import SplitView
from ..display.status import ELAPSED_AFTER, Elapsed, client_kind, final_status, has_kernel, redraws_in_place
from ..engine.flow import Flow
from ..engine.process import OutputCallback
from ..engine.result import CommandError, Result
from ..engine.running import Running, wait_or_interrupt
from ..engine.ssh import ConnectError
from .options import RunSettings
from .policy import name_the_source, report, store_result

Launch = Callable[[OutputCallback | None, Flow | None], Awaitable[Running]]
"""Starts a command or pipeline given where its output goes and the :class:`Flow` that may
pause its reading when the display falls behind: ``launch(on_output, flow)``."""


async def run_for_cell(
    launch: Launch, settings: RunSettings, namespace: dict[str, Any], *, command: str = ""
) -> Result:
    """Start with ``launch`` and run to the end, streaming into the current cell.

    An interrupt of the cell (its task cancelled) ends the whole tree and raises
    :class:`CommandError` saying "interrupted", with or without ``--no-raise``: the person
    asked everything to stop.
    """
    indicator = Elapsed() if not settings.quiet and redraws_in_place() else None
    live = live_output(settings)
    if isinstance(live, LiveOutput) and indicator is not None:
        live.before_first_write = indicator.place
    elif indicator is not None:
        indicator.place()  # a split view draws at once: the line goes above it now
    started_at = datetime.now(timezone.utc)
    try:
        try:
            running = await start_running(launch, live, getattr(live, "flow", None))
        except asyncio.CancelledError:  # the engine ended what it had started
            if live is not None:
                await live.aclose()
            result = interrupted(command, started_at)
            store_result(result, settings, namespace)
            raise CommandError(result) from None
        if indicator is not None:
            indicator.pid = running.pid
        try:
            stopping = None if indicator is None else lambda: indicator.stopping(settings.interrupt_grace)
            result, _ = await wait_or_interrupt(running, stopping)
        finally:
            if live is not None:
                await live.aclose(running.log_path)
    finally:
        if indicator is not None:
            indicator.stop()
    cut = getattr(live, "cut", None)
    if indicator is not None and not result.ok and settings.raise_on_error:
        indicator.clear(cut)  # the error's one line says how it ended: once is enough
    elif indicator is not None:
        indicator.finish(result, cut)
    elif _says_how_it_ended(settings, result, cut):
        ending = final_status(result) + (f" · {cut}" if cut else "")
        print(ending, file=sys.stdout if result.ok else sys.stderr)
    result = name_the_source(result, settings)
    store_result(result, settings, namespace)
    report(result, settings)
    return result


def _says_how_it_ended(settings: RunSettings, result: Result, cut: str | None) -> bool:
    """Where no status line redraws (headless, jupyter console) a command that ran long
    enough to show one, or whose output was cut, ends with it as a line (the notice again,
    at the end: there is no top line to put it in); a quick one leaves nothing, and a
    failure that raises says it in its error."""
    return (
        not settings.quiet
        and has_kernel()
        and (result.duration >= ELAPSED_AFTER or cut is not None)
        and (result.ok or not settings.raise_on_error)
    )


async def start_running(launch: Launch, on_output: OutputCallback | None, flow: Flow | None) -> Running:
    """Start, turning every error of starting into a one-line UsageError."""
    try:
        return await launch(on_output, flow)
    except ConnectError:
        raise  # that host's failure, not the cell's
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


def live_output(settings: RunSettings) -> LiveOutput | SplitView | None:
    """Where a run's output is shown, as its options say; None for ``--quiet``."""
    if settings.quiet:
        return None
    # A notebook redraws the two columns in place; a headless run keeps their last state.
    if settings.split and client_kind() in ("notebook", "headless"):
        return SplitView(max_lines=settings.max_lines)
    # A terminal (or jupyter console) cannot redraw two columns in place: each line as it
    # comes, labelled.
    # "Everything" in a notebook stops where a browser page would freeze.
    ceiling = settings.page_limit if settings.max_lines == 0 and has_kernel() else None
    return LiveOutput(max_lines=settings.max_lines, label=settings.label or settings.split, ceiling=ceiling)
