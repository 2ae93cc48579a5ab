"""Pipelines without a shell: processes joined by OS pipes, with Python stages between them.

Adjacent process stages share an ``os.pipe()``: between two processes the data never
passes through Python. A Python stage reads and writes the neighbouring pipes itself (a
plain function in a thread of its own, an async generator on the loop). Each stage's
stderr is shown labelled ``[N name]``; the last stage's stdout streams as a command's does.
Plain asyncio: no IPython here.
"""

from __future__ import annotations

import asyncio
import codecs
import errno
import inspect
import os
import signal
import threading
import traceback
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from .capture import Capture, KeptLog, Spill
from .flow import Flow
from .process import EOF_AFTER_GROUP_GONE, OutputCallback, start, wait_or_interrupt
from .result import Ended, Result
from .stdin import InputSource, byte_chunks, check_source, input_failed
from .stopping import INTERRUPT_GRACE, end_groups_now

READ_CHUNK = 256 * 1024


@dataclass(frozen=True)
class Command:
    """A process stage: its argv, executed directly."""

    argv: tuple[str, ...]

    @property
    def name(self) -> str:
        return os.path.basename(self.argv[0])

    def __str__(self) -> str:
        return " ".join(self.argv)


@dataclass(frozen=True)
class PyStage:
    """A Python stage: ``func(lines) -> lines``, plain (in a thread) or an async generator."""

    func: Callable[..., Any]
    name: str

    def __str__(self) -> str:
        return f"py:{self.name}"


Stage = Command | PyStage


def is_sigpipe(result: Result) -> bool:
    """True when a stage ended because the next one stopped reading (SIGPIPE or exit 141)."""
    return result.ended in ("exit", "signal") and result.returncode in (-signal.SIGPIPE, 128 + signal.SIGPIPE)


class Pipeline:
    """A running pipeline, started by :func:`start_pipeline`; shaped like a :class:`Process`."""

    def __init__(self, *, _token: object) -> None:
        if _token is not _TOKEN:
            raise TypeError("use asyncmagic.pipeline.start_pipeline() to start a pipeline")

    @property
    def pid(self) -> int | None:
        """The first process stage's pid."""
        return next((p.pid for p in self._procs.values()), None)

    def done(self) -> bool:
        return self._finished.done()

    @property
    def result(self) -> Result | None:
        return self._finished.result() if self._finished.done() else None

    @property
    def stdout(self) -> str:
        return self._out.text(self._spill.path)

    @property
    def stderr(self) -> str:
        return self._err.text(self._spill.path)

    def log_path(self) -> str:
        """A file with all the output shown: the last stage's stdout and the labelled stderr."""
        return self._spill.materialize()

    def add_done_callback(self, callback: Callable[[], None]) -> None:
        self._finished.add_done_callback(lambda _: callback())

    async def wait(self) -> Result:
        return await asyncio.shield(self._finished)

    async def stop(self, ended: Ended = "killed", *, grace: float | None = None) -> Result:
        """End every stage (processes with their whole trees) and return the Result.

        The first reason is kept; a stop after an internal one (a Python stage failed, the
        input raised) still reaches every stage, including one started since.
        """
        if not self._finished.done():
            if self._ended is None:
                self._ended = ended
            self._halt(ended, grace)
        return await self.wait()

    def stop_now(self, grace: float | None = None) -> None:
        """End every process stage now, blocking (see :meth:`Process.stop_now`)."""
        if self._ended is None:
            self._ended = "killed"
        for proc in self._procs.values():
            proc._mark_stopped("killed")
        end_groups_now({p.pgid: p._grace if grace is None else grace for p in self._procs.values()})

    async def interrupt(self) -> Result:
        return await self.stop("interrupted")

    async def send(self, data: str | bytes) -> None:
        raise BrokenPipeError("a pipeline's stdin is not interactive")

    async def close_stdin(self) -> None:
        raise BrokenPipeError("a pipeline's stdin is not interactive")

    # -- inside ------------------------------------------------------------------------

    def _halt(self, ended: Ended, grace: float | None) -> None:
        """Stop every stage started so far; a stage started later is stopped as it starts."""
        self._halted = (ended, grace)
        for proc in self._procs.values():
            self._stops.append(asyncio.ensure_future(proc.stop(ended, grace=grace)))
        for task in self._py_tasks.values():
            task.cancel()
        if self._feeder is not None:
            self._feeder.cancel()
        _close(self._kernel_fds)

    def _emit(self, stream: str, text: str) -> None:
        (self._out if stream == "stdout" else self._err).append(text)
        self._spill.write(text.encode())
        if self._on_output is not None:
            self._on_output(stream, text)

    def _input_failed(self, error: BaseException) -> None:
        """The input source raised: end every stage; the Result says why."""
        self._input_error = error
        if self._ended is None:
            self._ended = "killed"
        self._halt("killed", None)

    def _stage_failed(self, index: int, error: BaseException) -> None:
        """A Python stage raised: show its error, end the others, keep it as the pipeline's."""
        self._labels[index]("stderr", failure_text(error))
        if self._ended is None:
            self._ended = "killed"
            self._failed_stage = index
            self._halt("killed", None)

    async def _finish(self) -> Result:
        results: dict[int, Result] = {}
        try:
            for index, proc in self._procs.items():
                results[index] = await proc.wait()
            for index, task in self._py_tasks.items():
                results[index] = await _py_result(task, self.stages[index], self._started_at)
            if self._reader is not None:
                await self._read_to_end()
            if self._feeder is not None:
                await asyncio.wait([self._feeder])
            for stop in self._stops:
                await stop
        finally:
            if self._timer is not None:
                self._timer.cancel()
            _close(self._kernel_fds)
            for label in self._labels.values():
                label.close()
        if self._out.truncated or self._err.truncated:
            self._spill.materialize()
        self._spill.close()
        return self._result([results[i] for i in range(len(self.stages))])

    async def _read_to_end(self) -> None:
        """Read the last pipe to its end, but not for a holder that is no stage of ours.

        Every stage has ended here; a process that left the group (``setsid``) or a Python
        thread we stopped waiting for may still hold the pipe. As in the process engine, we
        keep reading while output arrives or a slow display holds the reading paused, then
        close it (a thread still writing then gets a broken pipe and ends).
        """
        assert self._reader is not None
        while True:
            done, _ = await asyncio.wait([self._reader], timeout=EOF_AFTER_GROUP_GONE)
            if done or not (self._flow is not None and self._flow.paused):
                break
        if not self._reader.done():
            self._reader.cancel()
            await asyncio.wait([self._reader])

    def _result(self, stages: list[Result]) -> Result:
        stages = [replace(r, command=str(stage)) for stage, r in zip(self.stages, stages, strict=True)]
        deciding = None
        for index, stage in enumerate(stages):
            last = index == len(stages) - 1
            if stage.ok or (not last and is_sigpipe(stage)):
                continue
            if self._failed_stage is not None and index != self._failed_stage and stage.ended == "killed":
                continue  # ended because a Python stage failed; that one tells
            deciding = stage
        ended: Ended
        if self._ended is not None and self._failed_stage is None:
            ended = self._ended  # timeout, interrupted, killed: what we did to it
        else:
            ended = "exit" if deciding is None else deciding.ended
        return Result(
            command=self.command,
            returncode=0 if deciding is None else deciding.returncode,
            stdout=self.stdout,
            stderr=self.stderr,
            started_at=self._started_at,
            finished_at=_now(),
            ended=ended,
            timeout=self._timeout,
            pid=self.pid,
            log_path=self._spill.path,
            stages=tuple(stages),
            error=None if self._input_error is None else input_failed(self._input_error),
        )

    def _on_timeout(self) -> None:
        self._timed_out = asyncio.ensure_future(self.stop("timeout"))


_TOKEN = object()


async def start_pipeline(
    stages: Sequence[Stage],
    *,
    timeout: float | None = None,
    grace: float = 2.0,
    interrupt_grace: float = INTERRUPT_GRACE,
    input: InputSource | None = None,
    stdin_path: str | os.PathLike[str] | None = None,
    stdout_path: str | os.PathLike[str] | None = None,
    append: bool = False,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str | None] | None = None,
    on_output: OutputCallback | None = None,
    flow: Flow | None = None,
    capture_limit: int | None = None,
    keep_log: KeptLog | None = None,
) -> Pipeline:
    """Start ``stages`` joined by pipes and return the :class:`Pipeline`.

    ``input`` (or the file ``stdin_path``) feeds the first stage; the last stage writes to
    the file ``stdout_path`` (``append`` for ``>>``) or streams to ``on_output``. A stage
    that cannot start ends the ones already started before the error propagates.
    ``capture_limit`` caps what is kept in memory, and ``flow`` lets a slow consumer pause
    the reading, and ``keep_log`` keeps the whole output, as for :func:`~asyncmagic.start`.
    """
    if not stages:
        raise ValueError("a pipeline needs at least one stage")
    if timeout is not None and timeout <= 0:
        raise ValueError(f"timeout must be positive, not {timeout}")
    if input is not None:
        if stdin_path is not None:
            raise ValueError("give input= or stdin_path=, not both")
        check_source(input)
    loop = asyncio.get_running_loop()
    pipe = Pipeline(_token=_TOKEN)
    pipe.stages = tuple(stages)
    pipe.command = " | ".join(str(s) for s in stages)
    pipe._on_output = on_output
    pipe._out, pipe._err = Capture(capture_limit), Capture(capture_limit)
    pipe._spill = Spill(keep=keep_log)
    pipe._procs, pipe._py_tasks, pipe._stops = {}, {}, []
    pipe._kernel_fds = []
    pipe._ended, pipe._failed_stage, pipe._timeout = None, None, timeout
    pipe._started_at = _now()
    pipe._reader = None
    pipe._feeder = None
    pipe._flow = flow
    pipe._halted = None
    pipe._input_error = None
    pipe._labels = {
        i: _Labeller(i + 1, str(s) if isinstance(s, PyStage) else s.name, pipe._emit)
        for i, s in enumerate(stages)
    }

    # The fds: what each stage reads and writes. The kernel closes its copy of every fd
    # a child got, right after starting it, so end-of-file propagates.
    fds: list[int] = []
    try:
        stdin_fd = _open_input(stdin_path, fds)
        stdout_fd = await _open_output(stdout_path, append, fds)
        reads: list[int | None] = [stdin_fd]
        writes: list[int | None] = []
        for _ in range(len(stages) - 1):
            r, w = os.pipe()
            fds += [r, w]
            writes.append(w)
            reads.append(r)
        if stdout_fd is None:
            r, w = os.pipe()
            fds += [r, w]
            writes.append(w)
            last_read = r
        else:
            writes.append(stdout_fd)
            last_read = None
        if input is not None:
            r, w = os.pipe()
            fds += [r, w]
            reads[0] = r
            feeder_fd = w
        else:
            feeder_fd = None
    except BaseException:
        _close(fds)
        raise

    try:
        for index, stage in enumerate(stages):
            if isinstance(stage, Command):
                proc = await start(
                    list(stage.argv),
                    grace=grace,
                    interrupt_grace=interrupt_grace,
                    stdin=reads[index],
                    stdout=writes[index],
                    cwd=cwd,
                    env=env,
                    on_output=pipe._labels[index],
                    flow=flow,
                )
                pipe._procs[index] = proc
                _close(fds, (reads[index], writes[index]))
            else:
                read_fd, write_fd = reads[index], writes[index]
                for fd in (read_fd, write_fd):
                    if fd is not None:
                        fds.remove(fd)  # the stage owns and closes them
                pipe._py_tasks[index] = _start_py_stage(stage, read_fd, write_fd, pipe, index, loop)
            if pipe._halted is not None:  # a stage before it failed while this one started
                pipe._halt(*pipe._halted)
    except BaseException:
        _close(fds)
        for proc in pipe._procs.values():
            await proc.stop("killed")
        for task in pipe._py_tasks.values():
            task.cancel()
        raise

    pipe._kernel_fds = fds  # what is left: the feeder's and the reader's ends
    if feeder_fd is not None:
        fds.remove(feeder_fd)
        pipe._feeder = asyncio.ensure_future(_feed(input, feeder_fd, pipe._input_failed))
    if last_read is not None:
        fds.remove(last_read)
        pipe._reader = asyncio.ensure_future(_read(last_read, pipe._emit, flow))
    pipe._timer = loop.call_later(timeout, pipe._on_timeout) if timeout is not None else None
    pipe._finished = asyncio.ensure_future(pipe._finish())
    if pipe._spill.kept:
        pipe._spill.materialize()
    return pipe


async def run_pipeline(stages: Sequence[Stage], **options: Any) -> Result:
    """Run a pipeline to the end (options as for :func:`start_pipeline`); cancelling interrupts it."""
    pipe = await start_pipeline(stages, **options)
    result, cancelled = await wait_or_interrupt(pipe)
    if cancelled:
        raise asyncio.CancelledError
    return result


# -- the fds ---------------------------------------------------------------------------


def _open_input(path: str | os.PathLike[str] | None, fds: list[int]) -> int | None:
    if path is None:
        return None
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    fds.append(fd)
    return fd


FIFO_POLL = 0.05
"""Seconds between two tries to open a FIFO for writing while it has no reader."""


async def _open_output(path: str | os.PathLike[str] | None, append: bool, fds: list[int]) -> int | None:
    """Open the ``>`` file. A FIFO waits for its reader as in a shell, but on the loop's
    terms: a blocking ``open`` would freeze the loop, so we retry a non-blocking one."""
    if path is None:
        return None
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK | (os.O_APPEND if append else os.O_TRUNC)
    while True:
        try:
            fd = os.open(path, flags, 0o666)
            break
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: a FIFO that no one reads yet
                raise
        await asyncio.sleep(FIFO_POLL)
    os.set_blocking(fd, True)
    fds.append(fd)
    return fd


def _close(fds: list[int], which: Iterable[int | None] | None = None) -> None:
    """Close ``which`` of ``fds`` (default: all of them) and drop them from the list."""
    for fd in list(fds if which is None else which):
        if fd is None or fd not in fds:
            continue
        fds.remove(fd)
        try:
            os.close(fd)
        except OSError:
            pass


async def _feed(source: InputSource, fd: int, failed: Callable[[BaseException], None]) -> None:
    """Write ``source`` into the first stage's stdin pipe, with back-pressure.

    An error of the source goes to ``failed`` (it ends the pipeline), never out of this
    task: a SystemExit raised by a source must not stop the event loop.
    """
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.connect_write_pipe(_Drain, os.fdopen(fd, "wb", 0))
    try:
        async for chunk in byte_chunks(source):
            if transport.is_closing():
                break
            transport.write(chunk)
            await protocol.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        failed(exc)
    finally:
        transport.close()


async def _read(fd: int, emit: Callable[[str, str], None], flow: Flow | None) -> None:
    """Read the last stage's stdout to the end, decoding incrementally."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    transport, _ = await loop.connect_read_pipe(lambda: _Reader(emit, done), os.fdopen(fd, "rb", 0))
    if flow is not None:
        flow.watch(transport)
    try:
        await done
    finally:
        transport.close()


class _Reader(asyncio.Protocol):
    def __init__(self, emit: Callable[[str, str], None], done: asyncio.Future[None]) -> None:
        self._emit = emit
        self._done = done
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def data_received(self, data: bytes) -> None:
        if text := self._decoder.decode(data):
            self._emit("stdout", text)

    def connection_lost(self, exc: Exception | None) -> None:
        if text := self._decoder.decode(b"", final=True):
            self._emit("stdout", text)
        if not self._done.done():
            self._done.set_result(None)


class _Drain(asyncio.Protocol):
    def __init__(self) -> None:
        self._paused: asyncio.Future[None] | None = None

    def pause_writing(self) -> None:
        self._paused = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._paused is not None and not self._paused.done():
            self._paused.set_result(None)
        self._paused = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.resume_writing()

    async def drain(self) -> None:
        if self._paused is not None:
            await self._paused


class _Labeller:
    """Turns one stage's stderr into lines labelled ``[N name]``."""

    def __init__(self, number: int, name: str, emit: Callable[[str, str], None]) -> None:
        self._prefix = f"[{number} {name}] "
        self._emit = emit
        self._partial = ""

    def __call__(self, stream: str, text: str) -> None:
        *lines, self._partial = (self._partial + text).split("\n")
        if lines:
            self._emit("stderr", "".join(f"{self._prefix}{line}\n" for line in lines))

    def close(self) -> None:
        if self._partial:
            self._emit("stderr", f"{self._prefix}{self._partial}\n")
            self._partial = ""


# -- Python stages ---------------------------------------------------------------------


def _start_py_stage(
    stage: PyStage,
    read_fd: int | None,
    write_fd: int | None,
    pipe: Pipeline,
    index: int,
    loop: asyncio.AbstractEventLoop,
) -> asyncio.Future[BaseException | None]:
    if inspect.isasyncgenfunction(stage.func) or inspect.iscoroutinefunction(stage.func):
        task = asyncio.ensure_future(_async_stage(stage, read_fd, write_fd, pipe, index))
    else:
        task = _thread_stage(stage, read_fd, write_fd, pipe, index, loop)
    return task


def _thread_stage(
    stage: PyStage,
    read_fd: int | None,
    write_fd: int | None,
    pipe: Pipeline,
    index: int,
    loop: asyncio.AbstractEventLoop,
) -> asyncio.Future[BaseException | None]:
    """Run a plain function in a thread of its own, on blocking reads and writes of the fds.

    A thread each, not a pool: a pool's few workers could all wait on pipes fed by a
    stage still queued behind them.
    """
    future: asyncio.Future[BaseException | None] = loop.create_future()

    def settle(error: BaseException | None) -> None:
        if future.done():
            return
        future.set_result(error)
        if error is not None:
            pipe._stage_failed(index, error)

    def body() -> None:
        error = None
        fin = open(read_fd, encoding="utf-8", errors="replace", newline="") if read_fd is not None else None
        fout = open(write_fd, "w", encoding="utf-8", newline="") if write_fd is not None else None
        try:
            lines = (_strip(line) for line in (fin if fin is not None else ()))
            for item in stage.func(lines) or ():
                if fout is not None:
                    fout.write(f"{item}\n")
            if fout is not None:
                fout.flush()
        except BrokenPipeError:
            pass  # the next stage stopped reading: as SIGPIPE, not a failure
        except BaseException as exc:
            error = exc
        finally:
            for f in (fin, fout):
                if f is not None:
                    try:
                        f.close()
                    except OSError:
                        pass
            if not loop.is_closed():
                loop.call_soon_threadsafe(settle, error)

    threading.Thread(target=body, name=f"asyncmagic-{stage}", daemon=True).start()
    return future


async def _async_stage(
    stage: PyStage, read_fd: int | None, write_fd: int | None, pipe: Pipeline, index: int
) -> BaseException | None:
    """Run an async stage on the loop; its error is returned, not raised (SystemExit or
    KeyboardInterrupt raised out of a task would stop the kernel's event loop)."""
    loop = asyncio.get_running_loop()
    writer = None
    # The input pipe is the stage's, not its lines' generator: a function that raises
    # before reading to the end (or never reads) must not leave the pipe open.
    reading = None if read_fd is None else os.fdopen(read_fd, "rb", 0)
    reader: asyncio.StreamReader | None = None
    input_transport: asyncio.ReadTransport | None = None
    try:
        if reading is not None:
            reader = asyncio.StreamReader(limit=2**62)
            input_transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader), reading
            )
        if write_fd is not None:
            transport, protocol = await loop.connect_write_pipe(_Drain, os.fdopen(write_fd, "wb", 0))
            writer = (transport, protocol)
        produced = stage.func(_lines_of(reader))
        if inspect.iscoroutine(produced):
            produced = await produced
        if hasattr(produced, "__aiter__"):
            async for item in produced:
                await _write_line(writer, item)
        else:
            for item in produced or ():
                await _write_line(writer, item)
    except (BrokenPipeError, ConnectionResetError):
        pass
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        # Once this task is done: the halt cancels the stages, and must not cancel this one.
        loop.call_soon(pipe._stage_failed, index, exc)
        return exc
    finally:
        if writer is not None:
            writer[0].close()
        if input_transport is not None:
            input_transport.close()
        elif reading is not None:
            reading.close()
    return None


async def _write_line(writer: tuple[asyncio.WriteTransport, _Drain] | None, item: object) -> None:
    if writer is None:
        return
    transport, protocol = writer
    if transport.is_closing():
        raise BrokenPipeError
    transport.write(f"{item}\n".encode())
    await protocol.drain()


async def _lines_of(reader: asyncio.StreamReader | None) -> AsyncIterator[str]:
    """The lines read from ``reader``, newline-stripped; any length, split reads rejoined."""
    if reader is None:
        return
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    partial = ""
    while chunk := await reader.read(READ_CHUNK):
        *lines, partial = (partial + decoder.decode(chunk)).split("\n")
        for line in lines:
            yield _strip(line)
    partial += decoder.decode(b"", final=True)
    if partial:
        yield _strip(partial)


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def failure_text(error: BaseException) -> str:
    """A Python stage's error as a person needs it: the line of their own code that raised
    (the innermost frame outside asyncmagic), then the exception."""
    own = [f for f in traceback.extract_tb(error.__traceback__) if not f.filename.startswith(_PACKAGE)]
    where = ""
    if own:
        frame = own[-1]
        where = f"in {frame.name}, line {frame.lineno}" + (f": {frame.line}" if frame.line else "") + "\n"
    return where + "".join(traceback.format_exception_only(type(error), error))


def _strip(line: str) -> str:
    return line[:-1] if line.endswith("\n") else line


async def _py_result(
    task: asyncio.Future[BaseException | None], stage: Stage, started_at: datetime
) -> Result:
    """A Python stage's Result: exit 0, or 1 with its error as stderr; killed if cancelled."""
    returncode, stderr, ended = 0, "", "exit"
    try:
        error = await task
    except asyncio.CancelledError:
        returncode, ended, error = -signal.SIGTERM, "killed", None
    if error is not None:
        returncode = 1
        stderr = failure_text(error)
    return Result(
        command=str(stage),
        returncode=returncode,
        stdout="",
        stderr=stderr,
        started_at=started_at,
        finished_at=_now(),
        ended=ended,  # type: ignore[arg-type]
    )


def _now() -> datetime:
    return datetime.now(timezone.utc)


__all__ = ["Command", "Pipeline", "PyStage", "Stage", "run_pipeline", "start_pipeline"]
