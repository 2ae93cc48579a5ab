"""Running one command: spawn it in its own session, pump its output, feed its input, end it.

The engine knows nothing of IPython. ``start()`` gives a :class:`Process`; ``run()`` waits
for it and ends the whole tree if the waiting task is cancelled.
"""

from __future__ import annotations

import asyncio
import atexit
import codecs
import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, Protocol

from . import watchdog
from .capture import Capture, KeptLog, Spill
from .flow import Flow
from .prompts import Ask, NoAnswer, Prompt, echo_off, reading_terminal, unread_output
from .result import Ended, Result
from .stdin import InputSource, byte_chunks, check_source, input_failed
from .stopping import INTERRUPT_GRACE, end_group, end_groups_now, group_alive

OutputCallback = Callable[[str, str], None]
"""Called as ``on_output(stream, text)`` with ``stream`` "stdout" or "stderr", in arrival order."""

READ_CHUNK = 256 * 1024
EOF_AFTER_GROUP_GONE = 0.5
"""Seconds to keep waiting for end-of-file once no process of the group is left.

A process that moved to another session (``setsid``) may still hold the pipe; we stop
listening to it rather than hang.
"""

_STREAM_NAMES = {1: "stdout", 2: "stderr"}


def default_shell() -> str:
    """bash when the machine has it, else sh."""
    return shutil.which("bash") or "/bin/sh"


def child_env(env: Mapping[str, str | None] | None) -> dict[str, str]:
    """The child's environment: ours, the overrides (None removes a variable), and
    unbuffered Python unless set."""
    merged = dict(os.environ)
    for name, value in (env or {}).items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    merged.setdefault("PYTHONUNBUFFERED", "1")
    return merged


class _Pump(asyncio.SubprocessProtocol):
    """Receives the child's pipes: decodes, captures and forwards output as it arrives."""

    def __init__(
        self,
        on_output: OutputCallback | None,
        loop: asyncio.AbstractEventLoop,
        pipes: tuple[int, ...] = (1, 2),
        capture_limit: int | None = None,
        keep_log: KeptLog | None = None,
    ) -> None:
        self._on_output = on_output
        self._decoders = {fd: codecs.getincrementaldecoder("utf-8")("replace") for fd in (1, 2)}
        self.captured = {fd: Capture(capture_limit) for fd in (1, 2)}
        self.spill = Spill(keep=keep_log)
        self.eof = {fd: loop.create_future() for fd in pipes}
        self.exited = loop.create_future()
        self.stdin_lost = False
        self.watches_prompts = False
        """Set for ``ask``: then the pump counts the pieces of output and keeps the last line."""
        self.partial_line = ""
        """The output after the last newline (a prompt), for ``ask``."""
        self.received = 0
        self._can_write: asyncio.Future[None] | None = None
        self._loop = loop

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.spill.write(data)
        self._emit(fd, self._decoders[fd].decode(data))

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 0:
            self.stdin_lost = True
            self.resume_writing()
            return
        self._emit(fd, self._decoders[fd].decode(b"", final=True))
        if fd in self.eof and not self.eof[fd].done():
            self.eof[fd].set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def pause_writing(self) -> None:
        if self._can_write is None:
            self._can_write = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._can_write is not None and not self._can_write.done():
            self._can_write.set_result(None)
        self._can_write = None

    async def drain(self) -> None:
        if self._can_write is not None:
            await self._can_write

    def _emit(self, fd: int, text: str) -> None:
        if not text:
            return
        if self.watches_prompts:
            self.received += 1
            newline = text.rfind("\n")
            self.partial_line = (self.partial_line + text[-500:] if newline < 0 else text[newline + 1 :])[
                -500:
            ]
        self.captured[fd].append(text)
        if self._on_output is not None:
            self._on_output(_STREAM_NAMES[fd], text)


class _Terminal:
    """A pseudo-terminal for ``pty=True``: the child writes to its slave end, we read the master.

    Output newlines stay ``\n`` (no ``\r\n`` translation), and reading ends at EIO, which
    is how Linux says every slave end is closed.
    """

    def __init__(self) -> None:
        import fcntl
        import struct
        import termios

        self.master, self.slave = os.openpty()
        self.slave_path = os.ttyname(self.slave)
        self._echo = b""
        attrs = termios.tcgetattr(self.slave)
        attrs[1] &= ~termios.ONLCR
        termios.tcsetattr(self.slave, termios.TCSANOW, attrs)
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop, pump: _Pump) -> None:
        os.close(self.slave)  # the child holds it now; EOF comes when it and its children close it
        self.slave = -1
        os.set_blocking(self.master, False)
        self._loop, self._pump = loop, pump
        loop.add_reader(self.master, self._ready)

    def pause_reading(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.master)

    def resume_reading(self) -> None:
        if self._loop is not None:
            self._loop.add_reader(self.master, self._ready)

    def is_closing(self) -> bool:
        return self._loop is None

    def answer(self, text: str, echoed: bool) -> None:
        """Type ``text`` and Enter at the terminal; its echo (if the terminal echoes) is not
        output of the command, so it is left out (the person's answer shows where they typed it)."""
        data = text.encode() + (b"" if text == "\x04" else b"\n")
        if echoed and text != "\x04":
            self._echo += data
        while data:  # an answer is one line: the terminal's input queue takes it
            try:
                data = data[os.write(self.master, data) :]
            except BlockingIOError:
                break
            except OSError:
                return

    def _ready(self) -> None:
        try:
            data = os.read(self.master, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data and self._echo:
            same = 0
            while same < min(len(data), len(self._echo)) and data[same] == self._echo[same]:
                same += 1
            self._echo = self._echo[same:] if same == len(data) else b""
            data = data[same:]
            if not data:
                return
        if data:
            self._pump.pipe_data_received(1, data)
        else:
            self.close()
            self._pump.pipe_connection_lost(1, None)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.master)
            self._loop = None
        for fd in (self.master, self.slave):
            if fd >= 0:
                os.close(fd)
        self.master = self.slave = -1


class Process:
    """A command started by :func:`start`; there is no public constructor.

    It runs as the leader of a new session, so ``pgid == pid`` names its whole tree.
    :meth:`wait` returns the :class:`Result` once the command and every process it left
    behind have ended and its output is read to the end.
    """

    command: str
    pid: int
    started_at: datetime

    def __init__(self, *, _token: object) -> None:
        if _token is not _TOKEN:
            raise TypeError("use asyncmagic.start() to start a process")

    @property
    def pgid(self) -> int:
        return self.pid

    @property
    def returncode(self) -> int | None:
        """The exit status (``-N`` for signal N) once the command itself exited, else None."""
        return self._transport.get_returncode()

    def done(self) -> bool:
        return self._finished.done()

    @property
    def result(self) -> Result | None:
        """The Result once finished, else None."""
        return self._finished.result() if self._finished.done() else None

    def add_done_callback(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once the process has finished."""
        self._finished.add_done_callback(lambda _: callback())

    @property
    def stdout(self) -> str:
        """Standard output received so far (head and tail past the capture limit)."""
        if self._finished.done():
            return self._finished.result().stdout
        return self._pump.captured[1].text(self._pump.spill.path)

    @property
    def stderr(self) -> str:
        """Standard error received so far (head and tail past the capture limit)."""
        if self._finished.done():
            return self._finished.result().stderr
        return self._pump.captured[2].text(self._pump.spill.path)

    def log_path(self) -> str:
        """A file holding every byte of the output (stdout and stderr as they arrived)."""
        return self._pump.spill.materialize()

    async def wait(self) -> Result:
        """Wait for the end; cancelling the waiter does not stop the command."""
        return await asyncio.shield(self._finished)

    async def stop(self, ended: Ended = "killed", *, grace: float | None = None) -> Result:
        """End the whole tree (SIGINT first when ``ended`` is "interrupted") and return the Result.

        The first reason given wins: a command that timed out stays "timeout" even if it
        is killed again while it is being stopped.
        """
        self._begin_stop(ended, grace)
        return await self.wait()

    def _begin_stop(self, ended: Ended, grace: float | None) -> None:
        """Start ending the tree, once; the first reason given is kept."""
        if not self._finished.done() and self._stopping is None:
            self._mark_stopped(ended)
            first = signal.SIGINT if ended == "interrupted" else signal.SIGTERM
            self._stopping = asyncio.ensure_future(
                end_group(
                    self.pgid,
                    first=first,
                    grace=self._grace if grace is None else grace,
                    interrupt_grace=self._interrupt_grace,
                )
            )

    def stop_now(self, grace: float | None = None) -> None:
        """End the whole tree now, blocking (SIGTERM, the grace, SIGKILL), for synchronous
        code whose own loop cannot run meanwhile; the Result follows once the loop runs."""
        self._mark_stopped("killed")
        end_groups_now({self.pgid: self._grace if grace is None else grace})

    def _mark_stopped(self, ended: Ended) -> None:
        if self._ended is None and not self._pump.exited.done():
            self._ended = ended

    async def interrupt(self) -> Result:
        """Stop as the stop button does: SIGINT, then SIGTERM after ``interrupt_grace``, then
        SIGKILL after ``grace``."""
        return await self.stop("interrupted")

    async def send(self, data: str | bytes) -> None:
        """Write to the command's stdin (started with ``stdin="pipe"``) and wait until it is taken."""
        pipe = self._transport.get_pipe_transport(0)
        if pipe is None or pipe.is_closing() or self._pump.stdin_lost:
            raise BrokenPipeError("the command's stdin is closed")
        pipe.write(data.encode() if isinstance(data, str) else data)
        await self._pump.drain()

    async def close_stdin(self) -> None:
        """Send end-of-file on the command's stdin."""
        pipe = self._transport.get_pipe_transport(0)
        if pipe is not None and not pipe.is_closing():
            await self._pump.drain()
            pipe.close()

    # -- inside ------------------------------------------------------------------------

    async def _feed(self, source: InputSource) -> None:
        """Write all of ``source`` to stdin with back-pressure, then close it.

        A child that exits without reading everything (BrokenPipe) is not an error.
        """
        try:
            async for chunk in byte_chunks(source):
                pipe = self._transport.get_pipe_transport(0)
                if pipe is None or pipe.is_closing() or self._pump.stdin_lost:
                    return
                pipe.write(chunk)
                await self._pump.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            # Not ``await self.stop()``: that waits for _finish(), which waits for this feeder.
            self._feed_error = exc
            self._begin_stop("killed", None)
        finally:
            pipe = self._transport.get_pipe_transport(0)
            if pipe is not None:
                pipe.close()

    async def _answer_prompts(self, ask: Ask, given: InputSource | None) -> None:
        """While the command runs: each time it waits reading its terminal, answer with the
        next given line, else with ``await ask(prompt)``."""
        terminal, pump = self._terminal, self._pump
        assert terminal is not None
        try:
            answers = await _lines(given) if given is not None else []
        except Exception as exc:
            self._feed_error = exc
            self._begin_stop("killed", None)
            return
        pause = ASK_FIRST_PAUSE
        while True:
            seen = pump.received
            await asyncio.sleep(pause)
            if pump.received != seen:  # it is talking: not waiting (or its prompt is still arriving)
                pause = ASK_FIRST_PAUSE
                continue
            pause = min(pause * 2, ASK_LAST_PAUSE)
            if unread_output(terminal.master) or not reading_terminal(terminal.master, terminal.slave_path):
                continue
            prompt = Prompt(_prompt_text(pump.partial_line), secret=echo_off(terminal.master))
            if answers:
                answer = answers.pop(0)
            else:
                try:
                    answer = await ask(prompt)
                except NoAnswer as exc:
                    self._ask_error = str(exc)
                    self._begin_stop("killed", None)
                    return
                except Exception as exc:  # asking broke: the command must not wait on, unowned
                    self._ask_error = f"asked {prompt.text.strip()!r}, and asking failed: {exc!r}"
                    self._begin_stop("killed", None)
                    return
            terminal.answer(answer, echoed=not echo_off(terminal.master))
            pump.partial_line = ""  # the answer's Enter ended that line (its echo is left out)
            pause = ASK_FIRST_PAUSE

    async def _finish(self) -> Result:
        await self._pump.exited
        if self._timer is not None:
            self._timer.cancel()
        if self._asker is not None:  # no one is asked for a command that has exited
            self._asker.cancel()
            await asyncio.wait([self._asker])
        if self._stopping is None and group_alive(self.pgid):
            # The command is done; what it left running in the background ends with it.
            self._stopping = asyncio.ensure_future(end_group(self.pgid, grace=self._grace))
        if self._stopping is not None:
            await self._stopping
        await self._wait_eof()
        if self._terminal is not None:
            self._terminal.close()
        if self._stopping is not None:  # a stop requested while the output drained
            await self._stopping
        if self._feeder is not None:
            await asyncio.wait([self._feeder])
        self._transport.close()
        _live.discard(self)
        watchdog.untrack(self.pgid)
        return self._result()

    async def _wait_eof(self) -> None:
        """Wait for end-of-file on the output, but not for a holder outside the group.

        While a slow consumer holds the reading paused (:mod:`asyncmagic.flow`) the wait
        goes on: the rest of the output is in the pipe, and EOF comes once it is read.
        """
        if all(eof.done() for eof in self._pump.eof.values()):
            return
        eofs = asyncio.gather(*self._pump.eof.values())
        while True:
            done, _ = await asyncio.wait([eofs], timeout=EOF_AFTER_GROUP_GONE)
            if done or not (group_alive(self.pgid) or (self._flow is not None and self._flow.paused)):
                break
        if not eofs.done():
            eofs.cancel()
            await asyncio.wait([eofs], timeout=EOF_AFTER_GROUP_GONE)
            if eofs.done() and not eofs.cancelled():
                eofs.exception()  # retrieved: a cancelled gather would be logged as unhandled

    def _result(self) -> Result:
        returncode = self._transport.get_returncode()
        assert returncode is not None
        ended = self._ended or ("signal" if returncode < 0 else "exit")
        error = None if self._feed_error is None else input_failed(self._feed_error)
        error = error or self._ask_error
        pump = self._pump
        if any(c.truncated for c in pump.captured.values()):
            pump.spill.materialize()
        pump.spill.close()
        stdout, stderr = (pump.captured[fd].text(pump.spill.path) for fd in (1, 2))
        for capture in pump.captured.values():
            capture.release()
        return Result(
            command=self.command,
            returncode=returncode,
            stdout=stdout,
            stderr=stderr,
            log_path=pump.spill.path,
            started_at=self.started_at,
            finished_at=_now(),
            ended=ended,
            timeout=self._timeout,
            pid=self.pid,
            error=error,
        )

    def _on_timeout(self) -> None:
        self._timed_out = asyncio.ensure_future(self.stop("timeout"))


_TOKEN = object()


async def start(
    command: str | Sequence[str],
    *,
    shell: str | None = None,
    timeout: float | None = None,
    grace: float = 2.0,
    interrupt_grace: float = INTERRUPT_GRACE,
    input: InputSource | None = None,
    stdin: str | int | None = None,
    stdout: int | None = None,
    pty: bool = False,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str | None] | None = None,
    on_output: OutputCallback | None = None,
    flow: Flow | None = None,
    capture_limit: int | None = None,
    keep_log: KeptLog | None = None,
    ask: Ask | None = None,
) -> Process:
    """Start ``command`` and return its :class:`Process`.

    A string runs as a script of ``shell`` (default: bash, else sh), passed as an argument
    so that a command in it that reads stdin cannot swallow the lines after it. A sequence
    is executed directly. stdin is /dev/null unless ``input`` is given, or ``stdin`` is
    "pipe" (write with :meth:`Process.send`) or an open file descriptor. ``stdout`` may be
    a file descriptor to write to instead of a pipe read here (a pipeline's next stage).
    ``capture_limit`` caps the characters of each stream kept in memory (head and tail are
    kept; the whole output then goes to :meth:`Process.log_path`). With ``pty`` the command
    writes to a pseudo-terminal (so it sees a TTY: colour, progress bars, line buffering);
    stdout and stderr are then one stream, reported as stdout. ``interrupt_grace`` is the
    time :meth:`Process.interrupt` leaves a Ctrl-C handler before SIGTERM. ``flow`` lets a slow
    consumer of ``on_output`` pause the reading of the output (see :mod:`asyncmagic.flow`).
    ``keep_log`` writes the whole output to a log that stays after the kernel exits.
    ``env`` is added to this process's environment; a None value removes that variable.
    With ``ask`` the pseudo-terminal is also the command's stdin and controlling terminal
    (``/dev/tty``), and when the command waits reading it (see :mod:`asyncmagic.prompts`),
    the next line of ``input`` answers, or else ``await ask(prompt)``; an ``ask`` that
    raises :class:`~asyncmagic.prompts.NoAnswer` ends the command with that error.
    """
    if timeout is not None and timeout <= 0:
        raise ValueError(f"timeout must be positive, not {timeout}")
    if grace < 0:
        raise ValueError(f"grace must be zero or more, not {grace}")
    if interrupt_grace < 0:
        raise ValueError(f"interrupt_grace must be zero or more, not {interrupt_grace}")
    if input is not None:
        if stdin is not None:
            raise ValueError("give input= or stdin=, not both")
        check_source(input)
    if ask is not None:
        if stdin is not None or stdout is not None:
            raise ValueError("ask= gives the command a terminal for stdin and stdout: no stdin= or stdout=")
        pty = True
    script_fd = None
    if isinstance(command, str) and len(command.encode()) > SCRIPT_ARG_MAX:
        script_fd = _script_file(command)
        argv = [shell or default_shell(), f"/dev/fd/{script_fd}"]
        text = command
    elif isinstance(command, str):
        argv = [shell or default_shell(), "-c", command]
        text = command
    else:
        argv = [os.fspath(a) for a in command]
        text = " ".join(argv)
    stdin_arg: Any = asyncio.subprocess.DEVNULL
    if ask is not None:
        pass  # the terminal, below
    elif input is not None or stdin == "pipe":
        stdin_arg = asyncio.subprocess.PIPE
    elif isinstance(stdin, int):
        stdin_arg = stdin
    loop = asyncio.get_running_loop()
    terminal = _Terminal() if pty else None
    pipes = (1,) if terminal else (2,) if stdout is not None else (1, 2)
    pump = _Pump(on_output, loop, pipes=pipes, capture_limit=capture_limit, keep_log=keep_log)
    out_arg: Any = asyncio.subprocess.PIPE if stdout is None else stdout
    err_arg: Any = asyncio.subprocess.PIPE
    if terminal is not None:
        out_arg = err_arg = terminal.slave
    if ask is not None:
        stdin_arg = terminal.slave
        pump.watches_prompts = True
    token = watchdog.expect_spawn()
    started_at = _now()
    sigint = _SigintDefault()
    preexec = sigint.arm()
    if ask is not None:
        preexec = _controlling_terminal(preexec)
    try:
        spawn = asyncio.ensure_future(
            loop.subprocess_exec(
                lambda: pump,
                *argv,
                stdin=stdin_arg,
                stdout=out_arg,
                stderr=err_arg,
                cwd=cwd,
                env={**child_env(env), watchdog.SPAWN_VARIABLE: token},
                start_new_session=True,
                preexec_fn=preexec,
                pass_fds=() if script_fd is None else (script_fd,),
            )
        )
    except BaseException:
        sigint.restore()
        _close_fd(script_fd)
        watchdog.spawn_failed(token)
        raise
    spawn.add_done_callback(lambda _: sigint.restore())
    spawn.add_done_callback(lambda _: _close_fd(script_fd))
    # A spawn is atomic: a cancellation arriving meanwhile would leave a process nobody
    # owns, so once the Process exists it is ended, and then the cancellation goes on.
    cancelled = False
    while True:
        try:
            transport, _ = await asyncio.shield(spawn)
            break
        except asyncio.CancelledError:
            if spawn.done() and spawn.cancelled():
                watchdog.spawn_failed(token)
                raise
            cancelled = True
        except BaseException:
            watchdog.spawn_failed(token)
            if terminal is not None:
                terminal.close()
            raise
    if terminal is not None:
        terminal.start(loop, pump)
    if flow is not None:
        for fd in pipes:
            flow.watch(terminal or transport.get_pipe_transport(fd))
    proc = Process(_token=_TOKEN)
    proc.command = text
    proc.pid = transport.get_pid()
    proc.started_at = started_at
    proc._transport = transport
    proc._pump = pump
    proc._grace = grace
    proc._interrupt_grace = interrupt_grace
    proc._timeout = timeout
    proc._ended = None
    proc._stopping = None
    proc._feed_error = None
    proc._terminal = terminal
    proc._flow = flow
    proc._timer = loop.call_later(timeout, proc._on_timeout) if timeout is not None else None
    proc._ask_error = None
    proc._asker = None
    if ask is not None:
        proc._asker = asyncio.ensure_future(proc._answer_prompts(ask, input))
        input = None  # answers, given one line per prompt
    proc._feeder = asyncio.ensure_future(proc._feed(input)) if input is not None else None
    proc._finished = asyncio.ensure_future(proc._finish())
    _live.add(proc)
    watchdog.track(proc.pgid, token)
    if pump.spill.kept:
        pump.spill.materialize()  # there from the start: a person can follow it
    if cancelled:  # nobody will own it: end it before the cancellation goes on
        await through_cancellations(proc.stop("killed"))
        raise asyncio.CancelledError
    return proc


def live_processes() -> list[Process]:
    """Every process started by this interpreter that has not finished yet."""
    return list(_live)


_live: set[Process] = set()


@atexit.register
def end_all_now() -> None:
    """End every live process's group, blocking (SIGTERM, its grace, SIGKILL).

    For where no event loop can run: interpreter exit, unloading the extension.
    """
    procs = list(_live)
    for proc in procs:
        proc._mark_stopped("killed")
    end_groups_now({proc.pgid: proc._grace for proc in procs})


async def run(command: str | Sequence[str], **options: Any) -> Result:
    """Run ``command`` to the end and return its :class:`Result` (options as for :func:`start`).

    If the calling task is cancelled, the command's whole tree is interrupted (SIGINT,
    SIGTERM, SIGKILL) before the cancellation propagates.
    """
    proc = await start(command, **options)
    result, cancelled = await wait_or_interrupt(proc)
    if cancelled:
        raise asyncio.CancelledError
    return result


class Stoppable(Protocol):
    """What :func:`wait_or_interrupt` runs to the end: a :class:`Process` or a pipeline."""

    async def wait(self) -> Result: ...
    async def interrupt(self) -> Result: ...


async def wait_or_interrupt(
    runner: Stoppable, on_interrupt: Callable[[], None] | None = None
) -> tuple[Result, bool]:
    """Wait for ``runner``; if the waiting task is cancelled, interrupt the whole tree.

    The one cancellation policy of everything that runs: the Result, and whether the wait
    was cancelled. Once the interrupt has begun it runs to its end, even through more
    cancellations (a stop during a stop): a half-stopped tree, or a caller that returns
    while its processes still run, is the outcome that must not happen. ``on_interrupt`` is
    called as the interrupt begins (a status line says "stopping…").
    """
    try:
        return await runner.wait(), False
    except asyncio.CancelledError:
        if on_interrupt is not None:
            on_interrupt()
        return await through_cancellations(runner.interrupt()), True


async def through_cancellations(stop: Awaitable[Result]) -> Result:
    """Await a stop to its end, even if the caller is cancelled again meanwhile."""
    stopping = asyncio.ensure_future(stop)
    while True:
        try:
            return await asyncio.shield(stopping)
        except asyncio.CancelledError:
            continue


SCRIPT_ARG_MAX = 64 * 1024
"""Scripts longer than this (bytes) are passed in a file, not as one argument: Linux caps
one argument at 128 KiB (``MAX_ARG_STRLEN``, E2BIG past it)."""


def _script_file(script: str) -> int:
    """An fd of an unnamed temporary file holding ``script``, for ``shell /dev/fd/N``.

    Unlinked at once, so nothing is left behind however the command ends; the shell
    reopens it through ``/dev/fd`` and reads it from the start.
    """
    fd, path = tempfile.mkstemp(prefix="asyncmagic-script-")
    os.unlink(path)
    data = script.encode()
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    return fd


ASK_FIRST_PAUSE, ASK_LAST_PAUSE = 0.03, 0.3
"""Seconds between two looks at whether an ``ask`` command waits: short after output, growing
while it is quiet."""


async def _lines(source: InputSource) -> list[str]:
    data = b"".join([chunk async for chunk in byte_chunks(source)])
    return data.decode(errors="replace").splitlines()


_CSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")


def _prompt_text(partial: str) -> str:
    """The prompt as a person reads it: after the last carriage return, without escapes."""
    return _CSI.sub("", partial.rsplit("\r", 1)[-1])


def _controlling_terminal(before: Callable[[], None] | None) -> Callable[[], None]:
    """A ``preexec_fn`` that makes stdin (the pty slave) the child's controlling terminal;
    it runs after ``setsid()``, so the child leads a session without one."""
    import fcntl
    import termios

    def preexec() -> None:
        if before is not None:
            before()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    return preexec


def _close_fd(fd: int | None) -> None:
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass


def _now() -> datetime:
    return datetime.now(timezone.utc)


class _SigintDefault:
    """Make children start with the default SIGINT action.

    ipykernel ignores SIGINT between cells, and an ignored signal stays ignored across
    exec, so a child spawned then could not be interrupted. A signal with a Python
    handler resets to the default on exec; so, in the main thread, we install a no-op
    handler around the spawn (cheap, and keeps the fast vfork path) and restore the old one
    when the spawn is done (it runs in a task of its own, later than the call that armed it).
    Elsewhere we fall back to a ``preexec_fn`` that resets it in the child.
    """

    def arm(self) -> Callable[[], None] | None:
        """Prepare a spawn; returns the ``preexec_fn`` to use (None on the fast path)."""
        self._saved: Any = None
        if threading.current_thread() is not threading.main_thread():
            return _reset_sigint
        if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
            self._saved = signal.SIG_IGN
            signal.signal(signal.SIGINT, _ignore)
        return None

    def restore(self) -> None:
        """Put the old SIGINT action back, once the spawn is done."""
        if self._saved is not None and signal.getsignal(signal.SIGINT) is _ignore:
            signal.signal(signal.SIGINT, self._saved)
        self._saved = None


def _ignore(signum: int, frame: object) -> None:
    """Stands in for SIG_IGN while a child is spawned."""


def _reset_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
