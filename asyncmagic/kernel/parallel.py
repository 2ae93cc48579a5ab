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
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from IPython.core.error import UsageError
from IPython.display import display

from ..display.status import Progress, has_kernel
from ..display.table import summary_table
from ..engine.fanout import start_failed
from ..engine.pump import OutputCallback
from ..engine.result import CommandError, Result
from ..engine.running import wait_or_interrupt
from ..engine.ssh import ConnectError
from ..engine.text import Labeller, shorten
from .foreground import Launch, interrupted, live_output, start_running
from .options import RunSettings
from .policy import name_the_source, report_all, store_results

LABEL_WIDTH = 30
"""Characters of a line's distinctive part shown in its output labels."""


LaunchLine = Callable[[str], Launch]
"""The :data:`~asyncmagic.kernel.foreground.Launch` that starts one line of the cell."""


class ParallelError(CommandError):
    """Some of the parallel commands failed; ``results`` holds every Result, in line order."""

    noun = "commands"

    def __init__(self, results: Sequence[Result], labels: Sequence[str] | None = None) -> None:
        """``labels``: each line's ``[N part]`` label, to name the failed ones by."""
        names = (
            [n.strip() for n in labels]
            if labels is not None
            else [f"{shorten(r.command, 30)}:" for r in results]
        )
        failed = [r for r in results if not r.ok]
        super().__init__(failed[0])
        self.results = list(results)
        self.failed = failed
        said = [f"{name} {r.describe()}" for name, r in zip(names, results, strict=True) if not r.ok]
        names_of_failed = ", ".join(said[:3])
        more = f", and {len(failed) - 3} more" if len(failed) > 3 else ""
        self.args = (f"{len(failed)} of {len(results)} {self.noun} failed: {names_of_failed}{more}",)

    def __str__(self) -> str:
        return self.args[0]


class HostError(ParallelError):
    """Some hosts failed; ``results`` holds every host's Result (each with ``.host``), in order."""

    noun = "hosts"

    def __init__(self, results: Sequence[Result]) -> None:
        super().__init__(results, [f"{r.host}:" for r in results])


async def run_lines_for_cell(
    cell: str, settings: RunSettings, launcher: LaunchLine, namespace: dict[str, Any]
) -> list[Result]:
    """``%%arun --parallel``: run the cell's lines, store the captures, raise once for failures."""
    lines = [line.strip() for line in cell.splitlines() if line.strip()]
    if not lines:
        raise UsageError("--parallel needs commands: one per line of the cell")
    started_at = datetime.now(timezone.utc)
    try:
        results = await run_parallel(lines, line_labels(lines), settings, launcher)
    except asyncio.CancelledError:
        raise CommandError(interrupted(" & ".join(lines), started_at)) from None
    store_results(results, settings, namespace)
    if any(not r.ok for r in results):
        report_all(ParallelError(results, line_labels(lines)), settings)
    return results


async def run_parallel(
    items: Sequence[str],
    labels: Sequence[str] | None,
    settings: RunSettings,
    launcher: LaunchLine,
    *,
    at_once: int | None = None,
    what: str = "command",
    summary: bool = True,
    command: str | None = None,
) -> list[Result]:
    """Run each of ``items`` (``launcher(item)`` starts it), ``at_once`` (default
    ``settings.parallel``) at most at once, each line of output labelled with its label.

    If the cell is interrupted, or an item cannot start, every command already running is
    ended (each task ends its own process when cancelled, so none is missed mid-spawn). A
    host that cannot be reached is that host's failed Result; the others go on. The cell
    ends with a table of them all (``what`` names its first column) unless ``summary`` is
    False. ``command``: what every item runs (``--host``); else each item is its command.
    """
    progress = Progress(len(items)) if not settings.quiet and has_kernel() else None
    live = live_output(settings)
    gate = asyncio.Semaphore(at_once or settings.parallel)

    async def one(index: int, item: str) -> Result:
        async with gate:
            sink: OutputCallback | None = live
            if live is not None and labels is not None:
                sink = Labeller(live, dict.fromkeys(("stdout", "stderr"), labels[index]))
            started_at = datetime.now(timezone.utc)
            try:
                proc = await start_running(launcher(item), sink, getattr(live, "flow", None))
            except asyncio.CancelledError:
                # Interrupted while it started: the engine ended it; it still ran, and the
                # summary says so (the cell's cancellation goes on from the gather).
                return interrupted(command or item, started_at)
            except ConnectError as exc:
                result = start_failed(command or item, exc, started_at, item)
                if sink is not None:
                    sink("stderr", f"{result.describe()}\n")
                if progress is not None:
                    progress.ended(result)
                return result
            if progress is not None:
                progress.started()
            try:
                result, _ = await wait_or_interrupt(proc)
            finally:
                if isinstance(sink, Labeller):
                    sink.close()
            if progress is not None:
                progress.ended(result)
            return name_the_source(result, settings)

    tasks = [asyncio.ensure_future(one(i, item)) for i, item in enumerate(items)]
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
        if summary:
            names = [labels[i].strip() if labels is not None else items[i] for i in ended]
            display(summary_table([tasks[i].result() for i in ended], names, what=what))
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
        labels.append(f"[{number} {shorten(own or ' '.join(line_words), LABEL_WIDTH)}] ")
    return labels
