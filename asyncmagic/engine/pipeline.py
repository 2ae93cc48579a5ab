"""Pipelines without a shell: processes joined by OS pipes, with Python stages between them.

Adjacent process stages share an ``os.pipe()``: between two processes the data never
passes through Python. A Python stage reads and writes the neighbouring pipes itself (a
plain function in a thread of its own, an async generator on the loop). The first stage
may run on a host over SSH: its output enters the first pipe as it arrives. Each stage's
stderr is shown labelled ``[N name]``; the last stage's stdout streams as a command's does.
Plain asyncio: no IPython here.
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import os
import shlex
import signal
import threading
import traceback
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from .capture import Capture, KeptLog, Spill
from .flow import Flow
from .process import EOF_AFTER_GROUP_GONE, OutputCallback, start
from .result import Ended, Result
from .running import Running, now, run_to_end, through_cancellations
from .ssh import SSHSettings
from .stdin import GatedPipe, InputSource, check_source, feed, input_failed
from .stopping import INTERRUPT_GRACE
from .text import Labeller, Lines, utf8_decoder

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


@dataclass(frozen=True)
class RemoteCommand:
    """A process stage run on ``host`` over SSH: its argv, quoted for the host's shell (so
    it runs as given, nothing expanded). Only a pipeline's first stage can be remote."""

    host: str
    argv: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("a remote stage needs a host")
        if not self.argv:
            raise ValueError(f"a remote stage needs a command to run on {self.host}")

    @property
    def name(self) -> str:
        return f"{os.path.basename(self.argv[0])}@{self.host}"

    @property
    def script(self) -> str:
        return shlex.join(self.argv)

    def __str__(self) -> str:
        return f"@{self.host} {' '.join(self.argv)}"


Stage = Command | PyStage | RemoteCommand


def _label(index: int, stage: Stage) -> str:
    return f"[{index + 1} {stage if isinstance(stage, PyStage) else stage.name}] "


def is_sigpipe(result: Result) -> bool:
    """True when a stage ended because the next one stopped reading (SIGPIPE or exit 141)."""
    return result.ended in ("exit", "signal") and result.returncode in (-signal.SIGPIPE, 128 + signal.SIGPIPE)


class Pipeline(Running):
    """A running pipeline, started by :func:`start_pipeline` (no public constructor); it
    has the lifecycle of a :class:`~asyncmagic.engine.process.Process`."""

    _made_by = "asyncmagic.start_pipeline()"
    stages: tuple[Stage, ...]
    _on_output: OutputCallback | None
    _flow: Flow | None
    _out: Capture
    _err: Capture
    _spill: Spill
    """Everything shown (the last stage's stdout, the labelled stderr), as it arrived."""
    _labels: dict[int, Labeller]
    _procs: dict[int, Running]
    """The process stages, local or remote, started so far."""
    _py_tasks: dict[int, asyncio.Future[BaseException | None]]
    _stops: list[asyncio.Future[Result]]
    _halted: tuple[Ended, float | None] | None
    """The stop under way, for a stage that starts after it began."""
    _failed_stage: int | None
    """The Python stage whose error ended the pipeline: its Result decides."""
    _error: str | None
    _feeder: asyncio.Task[None] | None
    _reader: asyncio.Task[None] | None

    def __init__(
        self,
        stages: tuple[Stage, ...],
        *,
        timeout: float | None,
        on_output: OutputCallback | None,
        flow: Flow | None,
        capture_limit: int | None,
        keep_log: KeptLog | None,
    ) -> None:
        super().__init__(" | ".join(str(s) for s in stages), started_at=now(), timeout=timeout)
        self.stages = stages
        self._on_output, self._flow = on_output, flow
        self._out, self._err = Capture(capture_limit), Capture(capture_limit)
        self._spill = Spill(keep=keep_log)
        self._labels = {
            i: Labeller(self._emit, dict.fromkeys(("stdout", "stderr"), _label(i, s)), into="stderr")
            for i, s in enumerate(stages)
        }
        self._procs, self._py_tasks, self._stops = {}, {}, []
        self._halted = self._failed_stage = self._error = None
        self._feeder = self._reader = None

    @property
    def pid(self) -> int | None:
        """The first local process stage's pid."""
        return next((p.pid for p in self._procs.values() if p.pid is not None), None)

    @property
    def stdout(self) -> str:
        return self._out.text(self._spill.path)

    @property
    def stderr(self) -> str:
        return self._err.text(self._spill.path)

    def log_path(self) -> str:
        """A file with all the output shown: the last stage's stdout and the labelled stderr."""
        return self._spill.materialize()

    # -- starting ------------------------------------------------------------------------

    async def _start_stage(
        self,
        index: int,
        reads: _Fd | None,
        writes: _Fd | None,
        remote: dict[str, Any],
        **options: Any,
    ) -> None:
        """Start stage ``index`` on its fds; a process gets copies (ours are closed at once,
        so end-of-file propagates), a Python stage takes them. A remote stage writes into
        its copy of ``writes``; ``remote`` is its input and SSH settings."""
        stage = self.stages[index]
        if isinstance(stage, RemoteCommand):
            from .remote import start_remote  # asyncssh is imported with it, when first needed

            assert reads is None and writes is not None
            self._procs[index] = await start_remote(
                stage.script,
                stage.host,
                stdout_fd=writes.fd,
                on_output=self._labels[index],
                grace=options["grace"],
                interrupt_grace=options["interrupt_grace"],
                env=options["env"],
                **remote,
            )
            writes.close()
        elif isinstance(stage, Command):
            self._procs[index] = await start(
                list(stage.argv),
                stdin=None if reads is None else reads.fd,
                stdout=None if writes is None else writes.fd,
                on_output=self._labels[index],
                flow=self._flow,
                **options,
            )
            for fd in (reads, writes):
                if fd is not None:
                    fd.close()
        else:
            read_fd = None if reads is None else reads.take()
            write_fd = None if writes is None else writes.take()
            failed = partial(self._stage_failed, index)
            self._py_tasks[index] = _start_py_stage(stage, read_fd, write_fd, failed)
        if self._halted is not None:  # a stage before it failed while this one started
            self._halt(*self._halted)

    def _connect(self, input: InputSource | None, feeder: _Fd | None, last: _Fd | None) -> None:
        """Feed the first stage and read the last one, once every stage has started."""
        if input is not None and feeder is not None:
            self._feeder = asyncio.ensure_future(_feed_fd(input, feeder.take(), self._input_failed))
        if last is not None:
            self._reader = asyncio.ensure_future(_read(last.take(), self._emit, self._flow))
        if self._spill.kept:
            self._spill.materialize()
        self._begin(self._finish())

    async def _abandon(self) -> None:
        """A stage could not start: end the ones that did, then let the error go on."""
        for proc in self._procs.values():
            await through_cancellations(proc.stop("killed"))
        for task in self._py_tasks.values():
            task.cancel()

    # -- the lifecycle ---------------------------------------------------------------------

    def _begin_stop(self, ended: Ended, grace: float | None) -> None:
        """The first reason is kept; a stop after an internal one (a Python stage failed,
        the input raised) still reaches every stage, including one started since."""
        if self._ended is None:
            self._ended = ended
        self._halt(ended, grace)

    def _ending_now(self, grace: float | None) -> dict[int, float]:
        if self._ended is None:
            self._ended = "killed"
        groups: dict[int, float] = {}
        for proc in self._procs.values():
            groups.update(proc._ending_now(grace))
        return groups

    def _halt(self, ended: Ended, grace: float | None) -> None:
        """Stop every stage started so far; a stage started later is stopped as it starts."""
        self._halted = (ended, grace)
        for proc in self._procs.values():
            self._stops.append(asyncio.ensure_future(proc.stop(ended, grace=grace)))
        for task in self._py_tasks.values():
            task.cancel()
        if self._feeder is not None:
            self._feeder.cancel()

    def _emit(self, stream: str, text: str) -> None:
        (self._out if stream == "stdout" else self._err).append(text)
        self._spill.write(text.encode())
        if self._on_output is not None:
            self._on_output(stream, text)

    def _input_failed(self, error: BaseException) -> None:
        """The input source raised: end every stage; the Result says why."""
        self._error = self._error or input_failed(error)
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
                results[index] = await _py_result(task, self.stages[index], self.started_at)
            if self._reader is not None:
                await self._read_to_end()
            if self._feeder is not None:
                await asyncio.wait([self._feeder])
            for stop in self._stops:
                await stop
        finally:
            self._cancel_timer()
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
            started_at=self.started_at,
            finished_at=now(),
            ended=ended,
            timeout=self._timeout,
            pid=self.pid,
            log_path=self._spill.path,
            stages=tuple(stages),
            error=self._error,
        )


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
    ssh: SSHSettings | None = None,
) -> Pipeline:
    """Start ``stages`` joined by pipes and return the :class:`Pipeline`.

    ``input`` (or the file ``stdin_path``) feeds the first stage; the last stage writes to
    the file ``stdout_path`` (``append`` for ``>>``) or streams to ``on_output``. A stage
    that cannot start ends the ones already started before the error propagates (a remote
    first stage's host that cannot be reached raises
    :class:`~asyncmagic.engine.ssh.ConnectError`; ``ssh`` configures the client).
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
    if any(isinstance(stage, RemoteCommand) for stage in stages[1:]):
        raise ValueError("only the first stage of a pipeline can run on a host")
    remote: dict[str, Any] = {}
    if isinstance(stages[0], RemoteCommand):  # its input goes over SSH, not through a pipe
        remote = {"input": Path(stdin_path) if stdin_path is not None else input, "ssh": ssh}
        input = stdin_path = None
    pipe = Pipeline._create(
        tuple(stages),
        timeout=timeout,
        on_output=on_output,
        flow=flow,
        capture_limit=capture_limit,
        keep_log=keep_log,
    )
    async with AsyncExitStack() as cleanup_on_fail:
        cleanup_on_fail.push_async_callback(pipe._abandon)
        with ExitStack() as kernel_fds:  # whatever no child has and no task took is closed
            fds = await _Plumbing.open(
                len(stages), stdin_path, stdout_path, append, input is not None, kernel_fds
            )
            for index in range(len(stages)):
                await pipe._start_stage(
                    index,
                    fds.reads[index],
                    fds.writes[index],
                    remote,
                    grace=grace,
                    interrupt_grace=interrupt_grace,
                    cwd=cwd,
                    env=env,
                )
            pipe._connect(input, fds.feeder, fds.last)
        cleanup_on_fail.pop_all()
    return pipe


async def run_pipeline(stages: Sequence[Stage], **options: Any) -> Result:
    """Run a pipeline to the end (options as for :func:`start_pipeline`); cancelling interrupts it."""
    return await run_to_end(await start_pipeline(stages, **options))


# -- the fds ---------------------------------------------------------------------------


class _Fd:
    """An fd the kernel holds until it is closed (a child has its copy) or taken (a task
    owns it now); either happens once, and the ExitStack that made it closes it otherwise."""

    def __init__(self, fd: int, owner: ExitStack) -> None:
        self.fd = fd
        owner.callback(self.close)

    def take(self) -> int:
        fd, self.fd = self.fd, -1
        return fd

    def close(self) -> None:
        if self.fd >= 0:
            try:
                os.close(self.take())
            except OSError:
                pass


@dataclass
class _Plumbing:
    """What each stage reads and writes, and the kernel's ends: the feeder's and the reader's."""

    reads: list[_Fd | None] = field(default_factory=list)
    writes: list[_Fd | None] = field(default_factory=list)
    feeder: _Fd | None = None
    last: _Fd | None = None

    @classmethod
    async def open(
        cls,
        count: int,
        stdin_path: str | os.PathLike[str] | None,
        stdout_path: str | os.PathLike[str] | None,
        append: bool,
        fed: bool,
        owner: ExitStack,
    ) -> _Plumbing:
        fds = cls()
        if fed:
            first, fds.feeder = _pipe(owner)
        elif stdin_path is not None:
            first = _Fd(os.open(stdin_path, os.O_RDONLY | os.O_CLOEXEC), owner)
        else:
            first = None
        fds.reads.append(first)
        for _ in range(count - 1):
            r, w = _pipe(owner)
            fds.writes.append(w)
            fds.reads.append(r)
        if stdout_path is None:
            fds.last, w = _pipe(owner)
            fds.writes.append(w)
        else:
            fds.writes.append(_Fd(await _open_output(stdout_path, append), owner))
        return fds


def _pipe(owner: ExitStack) -> tuple[_Fd, _Fd]:
    r, w = os.pipe()
    return _Fd(r, owner), _Fd(w, owner)


FIFO_POLL = 0.05
"""Seconds between two tries to open a FIFO for writing while it has no reader."""


async def _open_output(path: str | os.PathLike[str], append: bool) -> int:
    """Open the ``>`` file. A FIFO waits for its reader as in a shell, but on the loop's
    terms: a blocking ``open`` would freeze the loop, so we retry a non-blocking one."""
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
    return fd


async def _feed_fd(source: InputSource, fd: int, failed: Callable[[BaseException], None]) -> None:
    """Write ``source`` into the first stage's stdin pipe (:func:`~asyncmagic.engine.stdin.feed`)."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.connect_write_pipe(GatedPipe, os.fdopen(fd, "wb", 0))
    await feed(source, transport, protocol.gate, failed)


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
        self._decoder = utf8_decoder()

    def data_received(self, data: bytes) -> None:
        if text := self._decoder.decode(data):
            self._emit("stdout", text)

    def connection_lost(self, exc: Exception | None) -> None:
        if text := self._decoder.decode(b"", final=True):
            self._emit("stdout", text)
        if not self._done.done():
            self._done.set_result(None)


# -- Python stages ---------------------------------------------------------------------

StageFailed = Callable[[BaseException], None]
"""Told of a Python stage's error, once the stage is over (it ends the pipeline)."""


def _start_py_stage(
    stage: PyStage, read_fd: int | None, write_fd: int | None, failed: StageFailed
) -> asyncio.Future[BaseException | None]:
    if inspect.isasyncgenfunction(stage.func) or inspect.iscoroutinefunction(stage.func):
        return asyncio.ensure_future(_async_stage(stage, read_fd, write_fd, failed))
    return _thread_stage(stage, read_fd, write_fd, failed)


def _thread_stage(
    stage: PyStage, read_fd: int | None, write_fd: int | None, failed: StageFailed
) -> asyncio.Future[BaseException | None]:
    """Run a plain function in a thread of its own, on blocking reads and writes of the fds.

    A thread each, not a pool: a pool's few workers could all wait on pipes fed by a
    stage still queued behind them.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[BaseException | None] = loop.create_future()

    def settle(error: BaseException | None) -> None:
        if future.done():
            return
        future.set_result(error)
        if error is not None:
            failed(error)

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
    stage: PyStage, read_fd: int | None, write_fd: int | None, failed: StageFailed
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
            writer = await loop.connect_write_pipe(GatedPipe, os.fdopen(write_fd, "wb", 0))
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
        loop.call_soon(failed, exc)
        return exc
    finally:
        if writer is not None:
            writer[0].close()
        if input_transport is not None:
            input_transport.close()
        elif reading is not None:
            reading.close()
    return None


async def _write_line(writer: tuple[asyncio.WriteTransport, GatedPipe] | None, item: object) -> None:
    if writer is None:
        return
    transport, protocol = writer
    if transport.is_closing() or protocol.gate.lost:
        raise BrokenPipeError
    transport.write(f"{item}\n".encode())
    await protocol.gate.drain()


async def _lines_of(reader: asyncio.StreamReader | None) -> AsyncIterator[str]:
    """The lines read from ``reader``, newline-stripped; any length, split reads rejoined."""
    if reader is None:
        return
    decoder, lines = utf8_decoder(), Lines()
    while chunk := await reader.read(READ_CHUNK):
        for line in lines.feed(decoder.decode(chunk)):
            yield line
    for line in lines.feed(decoder.decode(b"", final=True)):
        yield line
    if rest := lines.rest():
        yield rest


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
        finished_at=now(),
        ended=ended,  # type: ignore[arg-type]
    )


__all__ = ["Command", "Pipeline", "PyStage", "RemoteCommand", "Stage", "run_pipeline", "start_pipeline"]
