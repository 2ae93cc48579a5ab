"""Background jobs for cells: output into the starting cell, a live status line, replay.

A job's output keeps streaming into the cell that started it (its context is taken at
start), also after that cell finished. Who sees that late output depends on the client:

- JupyterLab, Notebook 7 and jupyter console show it in the job's cell; they send
  ``allow_stdin: true`` with each execute request (a person is there to answer).
- Terminal IPython prints it to the same terminal.
- Headless runs (nbclient, so papermill and ``jupyter execute``) drop it; they send
  ``allow_stdin: false``.

So whoever awaits a job gets printed what was produced after the job's cell finished only
in the last case, where nothing else shows it; ``%ajobs wait --replay`` prints all of it
anywhere.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from dataclasses import replace
from functools import partial
from typing import Any

from IPython.display import DisplayHandle, display

from ..display.output import LiveOutput
from ..display.status import StatusLine, StatusLines, client_kind, has_kernel, redraws_in_place, status_text
from ..engine.capture import until_exit
from ..engine.jobs import Job, JobTable
from ..engine.process import end_all_now
from ..engine.result import Result
from ..engine.running import Running
from .foreground import Launch, live_output, start_running
from .options import RunSettings
from .parallel import HostError
from .policy import report_all, report_job, store

STATUS_EVERY = 1.0
"""Seconds between two updates of a running job's status line, while few run."""

STATUS_PER_SECOND = 20
"""Updates of status lines a second, all jobs together: past 20 jobs each is refreshed less often."""


class StoppedWatching(Exception):
    """An attached cell was interrupted: the watching ended, the job did not. One line."""

    def _render_traceback_(self) -> list[str]:
        return [f"StoppedWatching: {self}"]


class CellJob(Job):
    """A job started by a cell. Awaiting it (``await job``) is the kernel's: it shows what
    this client missed, then raises for a failure as the cell's options say."""

    def __init__(self, *args: Any, background: Background) -> None:
        super().__init__(*args)
        self._background = background

    async def wait(self, timeout: float | None = None) -> Result:
        result = await super().wait(timeout)
        self._background.settle(self)
        return result


class HostsJob(CellJob):
    """A ``--host --bg`` cell's job: one for every host; ``await job`` gives the list of
    Results, one per host in the order named (each with ``.host``)."""

    async def wait(self, timeout: float | None = None) -> list[Result]:  # type: ignore[override]
        return list((await super().wait(timeout)).stages)


class Background:
    """The jobs of one IPython shell and what ties them to cells."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.jobs = JobTable()
        self.loop = _loop()
        """The loop jobs run on, found once: a job started from another thread runs here too."""
        self._followers: dict[int, asyncio.Future[None]] = {}
        """Each job's task that streams its end into its cell (kept: a task needs an owner)."""
        self._statuses = StatusLines(STATUS_EVERY, STATUS_PER_SECOND)
        self._seen: dict[int, int | None] = {}  # job id -> transcript chunks its cell received
        self._settings: dict[int, RunSettings] = {}
        self._quiet: set[int] = set()
        self._cell_running = False
        self._unreported: list[Job] = []  # a terminal's job endings, said at the next prompt
        self._turned_on_asyncio_gui = False
        shell.events.register("pre_run_cell", self._cell_started)
        shell.events.register("post_run_cell", self._cell_finished)

    def close(self) -> None:
        """End every job now (unload, shutdown) and stop listening to cells."""
        for event, callback in (("pre_run_cell", self._cell_started), ("post_run_cell", self._cell_finished)):
            try:
                self.shell.events.unregister(event, callback)
            except ValueError:
                pass
        if self._turned_on_asyncio_gui:
            self.shell.enable_gui(None)
            self._turned_on_asyncio_gui = False
        self._statuses.close()
        end_all_now()

    def start(self, command: str, launch: Launch, settings: RunSettings, namespace: dict[str, Any]) -> Job:
        """Start a job of the current cell with ``launch`` and return it at once."""
        live = live_output(settings)
        in_kernel = has_kernel()
        in_place = redraws_in_place()
        context = contextvars.copy_context()
        if not in_kernel:
            self._keep_the_loop_running_at_the_prompt()

        async def starting(job: Job) -> Running:
            def on_output(stream: str, text: str) -> None:
                job.record(stream, text)
                if live is not None:
                    live(stream, text)

            # The status line goes first, above any output, so it never splits the output;
            # where displays are shown once (jupyter console), only once it says something true.
            handle = display(StatusLine(status_text(job)), display_id=True) if in_place else None
            try:
                running = await start_running(launch, on_output, getattr(live, "flow", None))
            except BaseException:
                if handle is not None:
                    handle.update(StatusLine(f"[job {job.id}] failed to start"))
                raise
            where = f"on {len(settings.hosts)} hosts" if settings.hosts else f"pid {running.pid}"
            started = StatusLine(f"[job {job.id}] started · {where}")
            if handle is not None:
                handle.update(started)
            elif in_kernel:  # still within its cell, so even a headless run keeps it
                handle = display(started, display_id=True)
            self._followers[job.id] = asyncio.ensure_future(
                self._follow(job, running, settings, namespace, live, handle, in_place=in_place)
            )
            return running

        kind = HostsJob if settings.hosts else CellJob
        job = context.run(self.jobs.start, command, starting, self.loop, partial(kind, background=self))
        self._seen[job.id] = None
        self._settings[job.id] = replace(settings, input=None)  # not the source: it may be big
        if settings.quiet:
            self._quiet.add(job.id)
        store(namespace, settings, result=job)
        return job

    async def _follow(
        self,
        job: Job,
        proc: Running,
        settings: RunSettings,
        namespace: dict[str, Any],
        live: LiveOutput | None,
        handle: DisplayHandle | None,
        *,
        in_place: bool,
    ) -> None:
        """Keep the job's status line current; when it ends, store its captures and report."""
        ended = asyncio.ensure_future(proc.wait())
        if handle is not None and in_place:
            self._statuses.add(job.id, handle, partial(status_text, job))
        try:
            # Through a task, so an await of the job in its own cell settles first: a
            # headless client then gets the ending said once, by that await.
            await asyncio.wait([ended])
        finally:
            self._statuses.remove(job.id)
        result = ended.result()
        if live is not None:
            await live.aclose(proc.log_path)
        store(namespace, settings, stdout=result.stdout, stderr=result.stderr)
        if handle is None:  # a terminal: said at the next prompt, not inside another command's output
            self._unreported.append(job)
            if not self._cell_running:
                self._report_endings()
        elif not in_place:  # jupyter console: it shows a display once, never its updates
            handle.update(StatusLine(status_text(job)))  # for whoever does
            print(status_text(job), file=sys.stdout if result.ok else sys.stderr, flush=True)
        else:
            handle.update(StatusLine(status_text(job)))

    def _report_endings(self) -> None:
        for job in self._unreported:
            ok = job.result is not None and job.result.ok
            print(status_text(job), file=sys.stdout if ok else sys.stderr, flush=True)
        self._unreported.clear()

    def _keep_the_loop_running_at_the_prompt(self) -> None:
        """Terminal IPython runs its asyncio loop only while a cell runs: a job would not be
        read, nor its end seen, between prompts (its status stale, its duration inflated).
        IPython's ``%gui asyncio`` runs the prompt on that loop; turned on for the first job,
        unless another event loop integration is active or the prompt is the simple one (no
        hooks: there a job moves on only while a cell runs), and off again at unload."""
        shell = self.shell
        if (
            getattr(shell, "active_eventloop", "") is None
            and hasattr(shell, "enable_gui")
            and not getattr(shell, "simple_prompt", True)  # it has no event loop hooks
        ):
            self.shell.enable_gui("asyncio")
            self._turned_on_asyncio_gui = True

    def _cell_started(self, *args: Any) -> None:
        self._cell_running = True

    def _cell_finished(self, *args: Any) -> None:
        self._cell_running = False
        self._report_endings()
        for job in self.jobs:
            if job.id in self._seen and self._seen[job.id] is None:
                self._seen[job.id] = job.transcript.end

    def replay(self, job: Job, *, whole: bool = False) -> None:
        """Print the job's output that its cell's client may not have received (or all of it)."""
        seen = 0 if whole else self._seen.get(job.id)
        if seen is None:
            return  # still in the starting cell: everything went there live
        chunks, cut = job.transcript.chunks_since(seen)
        if cut:
            log = job.result.log_path if job.result is not None else None
            where = f"full output: {log}{until_exit(log)}" if log else "job.stdout keeps its head and tail"
            print(f"… the job's earlier output is not kept for replay; {where}", file=sys.stderr)
        for stream, text in chunks:
            (sys.stderr if stream == "stderr" else sys.stdout).write(text)
        sys.stdout.flush()
        sys.stderr.flush()
        if not whole:
            self._seen[job.id] = job.transcript.end

    async def show(self, job: Job, max_lines: int) -> None:
        """Print the job's output so far, its head and tail past ``max_lines``, and where the
        whole of it is; the job is not followed."""
        live = LiveOutput(max_lines=max_lines)
        chunks, cut = job.transcript.chunks_since(0)
        log = job.log_path()
        if cut:
            print(f"… the job's earliest output is not kept in memory; full output: {log}", file=sys.stderr)
        for stream, text in chunks:
            live(stream, text)
        await live.aclose(lambda: log or "")
        print(status_text(job) + (f" · full output: {log}{until_exit(log)}" if log else ""))

    async def tail(self, job: Job, lines: int) -> None:
        """Print the job's last ``lines`` lines (both streams, in order) and its status."""
        live = LiveOutput()
        for stream, text in job.transcript.last_lines(lines):
            live(stream, text)
        await live.aclose()
        print(status_text(job))

    async def attach(self, job: Job, lines: int, max_lines: int) -> None:
        """Follow the job in the current cell: its last ``lines`` lines, then its live output
        and status line, until it ends. Interrupting stops the watching, never the job."""
        try:
            await job.process()
        except Exception:
            print(status_text(job), file=sys.stderr)
            return
        handle = display(StatusLine(status_text(job)), display_id=True) if redraws_in_place() else None
        live = LiveOutput(max_lines=max_lines)
        for stream, text in job.transcript.last_lines(lines):
            live(stream, text)
        stop_watching = job.watch(live)  # right after the tail, with no await between: no gap, no repeat
        ended = asyncio.ensure_future(job.wait_quietly())
        try:
            while not ended.done():
                await asyncio.wait([ended], timeout=STATUS_EVERY)
                if handle is not None:
                    handle.update(StatusLine(status_text(job)))
        except asyncio.CancelledError:
            ended.cancel()
            stop_watching()
            await live.aclose()
            raise StoppedWatching(f"{status_text(job)} · stopped watching; the job runs on") from None
        stop_watching()
        await live.aclose()
        if handle is None:
            print(status_text(job), file=sys.stdout if job.result and job.result.ok else sys.stderr)

    def settle(self, job: Job, *, say_status: bool = True) -> None:
        """After a wait for ``job`` ended: show here what this client missed (headless: its
        late output and how it ended), then raise if it failed, as the error policy says."""
        if self._drops_late_output():  # nothing else shows its end here
            if job.id not in self._quiet:
                self.replay(job)
            if say_status:
                print(status_text(job), file=sys.stdout if job.result and job.result.ok else sys.stderr)
        settings = self._settings.get(job.id)
        result = job.result
        if result is not None and settings is not None and settings.hosts and result.ended != "killed":
            if not result.ok:
                report_all(HostError(result.stages), settings)
        elif result is not None:
            report_job(result, settings)

    def _drops_late_output(self) -> bool:
        """True when the client of the current cell runs headless (its execute request said
        ``allow_stdin: false``). A terminal printed the late output itself."""
        return client_kind() == "headless"


def _loop() -> asyncio.AbstractEventLoop:
    """The loop jobs run on: the running one (a kernel), else IPython's own (terminal)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        from IPython.core.async_helpers import get_asyncio_loop

        return get_asyncio_loop()
