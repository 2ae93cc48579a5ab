"""Background jobs: a started command you hold on to, wait for, talk to, or kill.

Plain asyncio, no IPython. Everything that waits is a coroutine: a blocking wait would
stall the very loop the job runs on.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Callable, Coroutine, Generator, Iterator
from typing import Any

from .readiness import FIRST_PAUSE, LAST_PAUSE, Readiness, parse_readiness
from .result import CommandError, Result, format_seconds
from .running import Running, through_cancellations
from .text import Lines

TRANSCRIPT_LIMIT = 2_000_000
"""Characters of a job's latest output kept for ``expect`` and replay (the Result keeps
its captures, and the log file every byte)."""


class Transcript:
    """A job's latest output, both streams in arrival order, at most ``limit`` characters.

    Positions are absolute: ``end`` counts every chunk ever added, ``dropped_chars`` every
    character let go, so a reader can hold a place while the oldest chunks are dropped.
    """

    def __init__(self, limit: int = TRANSCRIPT_LIMIT) -> None:
        self.limit = limit
        self._chunks: deque[tuple[str, str]] = deque()
        self._first = 0  # absolute index of _chunks[0]
        self._chars = 0
        self.dropped_chars = 0

    def append(self, stream: str, text: str) -> None:
        self._chunks.append((stream, text))
        self._chars += len(text)
        while self._chars > self.limit and len(self._chunks) > 1:
            _, old = self._chunks.popleft()
            self._first += 1
            self._chars -= len(old)
            self.dropped_chars += len(old)

    @property
    def end(self) -> int:
        """The absolute index of the next chunk."""
        return self._first + len(self._chunks)

    def chunks_since(self, index: int) -> tuple[list[tuple[str, str]], bool]:
        """The chunks from absolute ``index`` on, and whether some of them were dropped."""
        skip = max(index - self._first, 0)
        return list(self._chunks)[skip:], index < self._first

    def last_lines(self, count: int) -> list[tuple[str, str]]:
        """The chunks of the last ``count`` lines, as ``tail -n`` counts them (a partial last
        line is one), the first chunk cut to start on a whole line."""
        chunks = list(self._chunks)
        if count <= 0:
            return []
        found = 0
        for index in reversed(range(len(chunks))):
            stream, text = chunks[index]
            pos = len(text) - 1 if index == len(chunks) - 1 and text.endswith("\n") else len(text)
            while (pos := text.rfind("\n", 0, pos)) >= 0:
                found += 1
                if found == count:
                    first = [(stream, text[pos + 1 :])] if pos + 1 < len(text) else []
                    return [*first, *chunks[index + 1 :]]
        return chunks

    def text_since(self, offset: int) -> tuple[str, int]:
        """The text from absolute character ``offset`` on (or from the oldest kept), and
        the absolute offset it starts at."""
        start = max(offset, self.dropped_chars)
        text = "".join(t for _, t in self._chunks)
        return text[start - self.dropped_chars :], start


class _LineScan:
    """A transcript's lines, each looked at once; a partial line waits (per stream) for its end."""

    KEEP = 65_536
    """Characters of a partial line kept: a match must fit in them."""

    def __init__(self, transcript: Transcript) -> None:
        self._transcript = transcript
        self._at = 0
        self._lines = {"stdout": Lines(keep=self.KEEP), "stderr": Lines(keep=self.KEEP)}

    def match(self, pattern: re.Pattern[str]) -> bool:
        """True if a line that arrived since the last call (or a partial one) matches."""
        chunks, _ = self._transcript.chunks_since(self._at)
        self._at = self._transcript.end
        for stream, text in chunks:
            if any(pattern.search(line) for line in self._lines[stream].feed(text)):
                return True
        return any(pattern.search(lines.partial) for lines in self._lines.values() if lines.partial)


class Job:
    """A command running in the background; create with :meth:`JobTable.start`.

    ``await job`` is ``await job.wait()``. Until its process has started (a job started from
    synchronous code starts once the loop runs) ``pid`` is None.
    """

    def __init__(
        self,
        job_id: int,
        command: str,
        starting: Callable[[Job], Coroutine[Any, Any, Running]],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.id = job_id
        self.command = command
        self.created = time.monotonic()
        self.transcript = Transcript()
        self.bytes_out = 0
        self._watchers: list[Callable[[str, str], None]] = []
        self._expect_at = 0
        self._grew = asyncio.Event()
        self._process: Running | None = None
        self._starting: asyncio.Future[Running] = loop.create_future()
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if on_loop or not loop.is_running():
            self._begin(starting)
        else:  # another thread: the loop's own objects are touched only on the loop
            loop.call_soon_threadsafe(self._begin, starting)

    def _begin(self, starting: Callable[[Job], Coroutine[Any, Any, Running]]) -> None:
        task = self._starting.get_loop().create_task(self._start(starting))

        def settle(done: asyncio.Task[Running]) -> None:
            if done.cancelled():
                self._starting.cancel()
            elif done.exception() is not None:
                self._starting.set_exception(done.exception())  # type: ignore[arg-type]
            else:
                self._starting.set_result(done.result())

        task.add_done_callback(settle)

    def record(self, stream: str, text: str) -> None:
        """Output hook: keep the transcript (both streams, in arrival order) for ``expect``."""
        self.transcript.append(stream, text)
        self.bytes_out += len(text.encode())
        self._grew.set()
        for watcher in self._watchers:
            watcher(stream, text)

    def watch(self, callback: Callable[[str, str], None]) -> Callable[[], None]:
        """Call ``callback(stream, text)`` with each piece of output from now on (another
        cell following the job); returns the function that stops it."""
        self._watchers.append(callback)
        return lambda: self._watchers.remove(callback) if callback in self._watchers else None

    async def _start(self, starting: Callable[[Job], Coroutine[Any, Any, Running]]) -> Running:
        try:
            self._process = await starting(self)
        finally:
            self._grew.set()  # wake expect(): started, or failed to
        self._process.add_done_callback(self._grew.set)
        return self._process

    # -- state -------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def done(self) -> bool:
        if self._starting.done() and self._process is None:
            return True  # it failed to start
        return self._process is not None and self._process.done()

    @property
    def result(self) -> Result | None:
        """The Result once done, else None."""
        return None if self._process is None else self._process.result

    @property
    def returncode(self) -> int | None:
        """The exit status once done (``-N`` for signal N), None while running."""
        result = self.result
        return None if result is None else result.returncode

    @property
    def stdout(self) -> str:
        return self._process.stdout if self._process else ""

    @property
    def stderr(self) -> str:
        return self._process.stderr if self._process else ""

    def log_path(self) -> str | None:
        """The file with every byte of the output so far, once started (written now if needed)."""
        return self._process.log_path() if self._process else None

    @property
    def state(self) -> str:
        if self._process is None:
            return "failed" if self._starting.done() else "starting"
        result = self.result
        if result is None:
            return "running"
        return "failed" if result.error is not None else result.ended

    @property
    def elapsed(self) -> float:
        result = self.result
        if result is not None:
            return result.duration
        return time.monotonic() - self.created

    # -- waiting and control -------------------------------------------------------------

    async def process(self) -> Running:
        """The job's Process (or Pipeline), once started (raises what starting it raised)."""
        return await asyncio.shield(self._starting)

    async def wait(self, timeout: float | None = None) -> Result:
        """Wait for the end and return the Result; on ``timeout`` raise TimeoutError (the job runs on)."""
        proc = await self.process()
        return await asyncio.wait_for(proc.wait(), timeout)

    async def wait_quietly(self) -> Result:
        """Wait for the end without the waiting's side effects (no replay, no error raised)."""
        return await (await self.process()).wait()

    def __await__(self) -> Generator[Any, None, Result]:
        return self.wait().__await__()

    async def kill(self, grace: float | None = None) -> Result:
        """End the job's whole process group: SIGTERM, then SIGKILL after ``grace``."""
        proc = await self.process()
        return await proc.stop("killed", grace=grace)

    def kill_now(self, grace: float | None = None) -> None:
        """End the job's whole tree, blocking: for synchronous code while the job's loop
        cannot run (a magic inside a ``def``, ``%autoawait off``). The Result follows once
        the loop runs again."""
        if self._process is not None and not self._process.done():
            self._process.stop_now(grace)

    async def send(self, text: str | bytes) -> None:
        """Write to the job's stdin (``--interactive``) and wait until it is taken."""
        await (await self.process()).send(text)

    async def close_stdin(self) -> None:
        """Send end-of-file on the job's stdin."""
        await (await self.process()).close_stdin()

    async def expect(self, pattern: str | re.Pattern[str], timeout: float | None = 10) -> str:
        """Wait for ``pattern`` in the output (stdout and stderr together) after the last expect.

        Returns the output up to and including the match. Raises TimeoutError, or EOFError
        if the job ends first; either way what was seen is in the message.
        """
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            seen, base = self.transcript.text_since(self._expect_at)
            match = regex.search(seen)
            if match:
                self._expect_at = base + match.end()
                return seen[: match.end()]
            if self.done():
                raise EOFError(
                    f"job {self.id} ended before {regex.pattern!r}; after the last expect: {seen[-500:]!r}"
                )
            self._grew.clear()
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                raise TimeoutError(
                    f"{regex.pattern!r} not seen in {timeout} s; after the last expect: {seen[-500:]!r}"
                )
            try:
                await asyncio.wait_for(self._grew.wait(), left)
            except asyncio.TimeoutError:
                continue

    async def ready(self, spec: str | Readiness, timeout: float | None = 60) -> Job:
        """Wait until the job can be used (``tcp:8000``, ``http://…``, ``/REGEX/``: see
        :mod:`asyncmagic.engine.readiness`) and return it.

        If the job ends first, or ``timeout`` passes, or this wait is cancelled, the job is
        ended (its whole tree) and CommandError says why: a job that never got ready is of
        no use, and left running it would hold its port.
        """
        readiness = parse_readiness(spec) if isinstance(spec, str) else spec
        try:
            return await self._until_ready(readiness, timeout)
        except asyncio.CancelledError:
            await through_cancellations(self._end_once_started())
            raise

    async def _end_once_started(self) -> None:
        try:
            proc = await self.process()
        except Exception:
            return  # it never started: nothing to end
        await proc.stop("killed")

    async def _until_ready(self, readiness: Readiness, timeout: float | None) -> Job:
        proc = await self.process()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        ended = loop.create_future()
        proc.add_done_callback(lambda: ended.done() or ended.set_result(None))
        lines, pause = _LineScan(self.transcript), FIRST_PAUSE
        while True:
            if readiness.pattern is not None:
                found = lines.match(readiness.pattern)
            else:
                found = await readiness.probe()
            if found:
                return self
            if proc.done():
                raise CommandError(
                    proc.result, f"job {self.id} {proc.result.describe()} before ready: {readiness}"
                )
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                result = await proc.stop("killed")
                raise CommandError(
                    result,
                    f"not ready after {format_seconds(timeout)}: {readiness}; job {self.id} killed",
                )
            if readiness.pattern is not None:  # new output, or the end, wakes it
                self._grew.clear()
                grew = asyncio.ensure_future(self._grew.wait())
                try:
                    await asyncio.wait([grew, ended], timeout=left, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    grew.cancel()
            else:
                await asyncio.wait([ended], timeout=pause if left is None else min(pause, left))
                pause = min(pause * 2, LAST_PAUSE)

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.command[:40]!r} {self.state} pid={self.pid}>"


class JobTable:
    """The jobs of one kernel, numbered from 1."""

    def __init__(self) -> None:
        self._jobs: dict[int, Job] = {}
        self._next = 1

    def start(
        self,
        command: str,
        starting: Callable[[Job], Coroutine[Any, Any, Running]],
        loop: asyncio.AbstractEventLoop | None = None,
        make: Callable[..., Job] | None = None,
    ) -> Job:
        """Create job N whose process ``starting(job)`` starts on ``loop`` (default: the running one).

        The coroutine gets the job so it can wire the process's output to ``job.record``.
        ``make`` builds it with Job's arguments (a subclass: the kernel's jobs of a cell).
        """
        job = (make or Job)(self._next, command, starting, loop or asyncio.get_running_loop())
        self._jobs[job.id] = job
        self._next += 1
        return job

    @property
    def next_id(self) -> int:
        """The id the next job will get."""
        return self._next

    def __iter__(self) -> Iterator[Job]:
        return iter(list(self._jobs.values()))

    def __len__(self) -> int:
        return len(self._jobs)

    def get(self, job_id: int) -> Job:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise KeyError(f"no job {job_id}; jobs: {sorted(self._jobs) or 'none'}") from None

    def running(self) -> list[Job]:
        return [job for job in self if not job.done()]

    def clear(self) -> int:
        """Forget finished jobs; return how many."""
        done = [job_id for job_id, job in self._jobs.items() if job.done()]
        for job_id in done:
            del self._jobs[job_id]
        return len(done)
