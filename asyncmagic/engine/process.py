"""Running one command: spawn it in its own session, pump its output, feed its input, end it.

``start()`` gives a :class:`Process`; ``run()`` waits for it and ends the whole tree if the
waiting task is cancelled (:func:`~asyncmagic.engine.running.run_to_end`).
"""

from __future__ import annotations

import asyncio
import atexit
import os
import signal
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import watchdog
from .capture import KeptLog
from .flow import Flow
from .prompts import (
    FIRST_PAUSE,
    LAST_PAUSE,
    Ask,
    NoAnswer,
    Prompt,
    echo_off,
    prompt_text,
    reading_terminal,
    unread_output,
)
from .pump import OutputCallback, Pump, PumpedOutput
from .result import Ended, Result
from .running import Running, now, run_to_end, through_cancellations
from .spawning import argv_of, child_env, spawn
from .ssh import SSHSettings
from .stdin import InputSource, check_source, feed, input_failed, lines_of
from .stopping import INTERRUPT_GRACE, end_group, end_groups_now, group_alive
from .terminal import Terminal, controlling_terminal

if TYPE_CHECKING:
    from .remote import RemoteProcess

EOF_AFTER_GROUP_GONE = 0.5
"""Seconds to keep waiting for end-of-file once no process of the group is left.

A process that moved to another session (``setsid``) may still hold the pipe; we stop
listening to it rather than hang.
"""


class Process(PumpedOutput, Running):
    """A command started by :func:`start` (no public constructor).

    It runs as the leader of a new session, so ``pgid == pid`` names its whole tree.
    :meth:`wait` returns the :class:`Result` once the command and every process it left
    behind have ended and its output is read to the end.
    """

    _made_by = "asyncmagic.start()"
    pid: int
    _transport: asyncio.SubprocessTransport
    _pump: Pump
    _terminal: Terminal | None
    _flow: Flow | None
    _grace: float
    _interrupt_grace: float
    _stopping: asyncio.Future[bool] | None
    """Ending the group, once begun (by a stop, or by the end of the command)."""
    _error: str | None
    """Why we ended it ourselves (its input raised, no one answered), for the Result."""
    _feeder: asyncio.Task[None] | None
    _asker: asyncio.Task[None] | None

    def __init__(
        self,
        command: str,
        transport: asyncio.SubprocessTransport,
        pump: Pump,
        *,
        started_at: datetime,
        timeout: float | None,
        grace: float,
        interrupt_grace: float,
        terminal: Terminal | None,
        flow: Flow | None,
        input: InputSource | None,
        ask: Ask | None,
    ) -> None:
        super().__init__(command, started_at=started_at, timeout=timeout)
        self.pid = transport.get_pid()
        self._transport, self._pump, self._terminal, self._flow = transport, pump, terminal, flow
        self._grace, self._interrupt_grace = grace, interrupt_grace
        self._stopping = None
        self._error = None
        self._asker = asyncio.ensure_future(self._answer_prompts(ask, input)) if ask is not None else None
        self._feeder = None
        if input is not None and ask is None:  # with ask, given lines answer one prompt each
            pipe = transport.get_pipe_transport(0)
            assert isinstance(pipe, asyncio.WriteTransport)
            self._feeder = asyncio.ensure_future(feed(input, pipe, pump.stdin, self._input_failed))
        self._begin(self._finish())

    @property
    def pgid(self) -> int:
        return self.pid

    @property
    def returncode(self) -> int | None:
        """The exit status (``-N`` for signal N) once the command itself exited, else None."""
        return self._transport.get_returncode()

    async def send(self, data: str | bytes) -> None:
        """Write to the command's stdin (started with ``stdin="pipe"``) and wait until it is taken."""
        pipe = self._transport.get_pipe_transport(0)
        if pipe is None or pipe.is_closing() or self._pump.stdin.lost:
            raise BrokenPipeError("the command's stdin is closed")
        pipe.write(data.encode() if isinstance(data, str) else data)  # type: ignore[attr-defined]
        await self._pump.stdin.drain()

    async def close_stdin(self) -> None:
        """Send end-of-file on the command's stdin."""
        pipe = self._transport.get_pipe_transport(0)
        if pipe is not None and not pipe.is_closing():
            await self._pump.stdin.drain()
            pipe.close()

    # -- the lifecycle ---------------------------------------------------------------------

    def _begin_stop(self, ended: Ended, grace: float | None) -> None:
        if self._stopping is not None:
            return
        self._mark_stopped(ended)
        self._stopping = asyncio.ensure_future(
            end_group(
                self.pgid,
                first=signal.SIGINT if ended == "interrupted" else signal.SIGTERM,
                grace=self._grace if grace is None else grace,
                interrupt_grace=self._interrupt_grace,
            )
        )

    def _ending_now(self, grace: float | None) -> dict[int, float]:
        self._mark_stopped("killed")
        return {self.pgid: self._grace if grace is None else grace}

    def _mark_stopped(self, ended: Ended) -> None:
        if self._ended is None and not self._pump.exited.done():
            self._ended = ended

    def _fail(self, error: str) -> None:
        """End it for ``error`` (the first one is kept for the Result)."""
        if self._error is None:
            self._error = error
        self._begin_stop("killed", None)

    def _input_failed(self, error: BaseException) -> None:
        self._fail(input_failed(error))

    async def _answer_prompts(self, ask: Ask, given: InputSource | None) -> None:
        """While the command runs: each time it waits reading its terminal, answer with the
        next given line, else with ``await ask(prompt)``."""
        terminal, pump = self._terminal, self._pump
        assert terminal is not None
        try:
            answers = await lines_of(given) if given is not None else []
        except Exception as exc:
            self._input_failed(exc)
            return
        pause = FIRST_PAUSE
        while True:
            seen = pump.received
            await asyncio.sleep(pause)
            if pump.received != seen:  # it is talking: not waiting (or its prompt is still arriving)
                pause = FIRST_PAUSE
                continue
            pause = min(pause * 2, LAST_PAUSE)
            if unread_output(terminal.master) or not reading_terminal(terminal.master, terminal.slave_path):
                continue
            prompt = Prompt(prompt_text(pump.partial_line), secret=echo_off(terminal.master))
            if answers:
                answer = answers.pop(0)
            else:
                try:
                    answer = await ask(prompt)
                except NoAnswer as exc:
                    self._fail(str(exc))
                    return
                except Exception as exc:  # asking broke: the command must not wait on, unowned
                    self._fail(f"asked {prompt.text.strip()!r}, and asking failed: {exc!r}")
                    return
            terminal.answer(answer, echoed=not echo_off(terminal.master))
            pump.partial_line = ""  # the answer's Enter ended that line (its echo is left out)
            pause = FIRST_PAUSE

    async def _finish(self) -> Result:
        await self._pump.exited
        self._cancel_timer()
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

        While a slow consumer holds the reading paused (:mod:`asyncmagic.engine.flow`) the
        wait goes on: the rest of the output is in the pipe, and EOF comes once it is read.
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
        return self._output_result(returncode, pid=self.pid, error=self._error)


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
    host: str | None = None,
    ssh: SSHSettings | None = None,
) -> Process | RemoteProcess:
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
    consumer of ``on_output`` pause the reading of the output (see :mod:`asyncmagic.engine.flow`).
    ``keep_log`` writes the whole output to a log that stays after the kernel exits.
    ``env`` is added to this process's environment; a None value removes that variable.
    With ``ask`` the pseudo-terminal is also the command's stdin and controlling terminal
    (``/dev/tty``), and when the command waits reading it (see :mod:`asyncmagic.engine.prompts`),
    the next line of ``input`` answers, or else ``await ask(prompt)``; an ``ask`` that
    raises :class:`~asyncmagic.engine.prompts.NoAnswer` ends the command with that error.

    With ``host`` (``web1``, ``user@host:port``, an ssh_config alias) the script runs on that
    machine over SSH instead (:func:`~asyncmagic.engine.remote.start_remote`; ``ssh`` says
    where the client's configuration comes from), as a :class:`RemoteProcess`.
    """
    if host is not None:
        from .remote import start_remote  # asyncssh is imported with it, when first needed

        if ask is not None or stdout is not None or isinstance(stdin, int):
            raise ValueError("a remote command takes no ask=, stdout= or stdin= file descriptor")
        return await start_remote(
            command,  # type: ignore[arg-type]
            host,
            shell=shell,
            timeout=timeout,
            grace=grace,
            interrupt_grace=interrupt_grace,
            input=input,
            stdin=stdin,  # type: ignore[arg-type]
            pty=pty,
            cwd=None if cwd is None else str(cwd),
            env=env,
            on_output=on_output,
            flow=flow,
            capture_limit=capture_limit,
            keep_log=keep_log,
            ssh=ssh,
        )
    _check(timeout, grace, interrupt_grace, input, stdin, stdout, ask)
    pty = pty or ask is not None
    loop = asyncio.get_running_loop()
    with ExitStack() as always, ExitStack() as cleanup_on_fail:
        child = child_env(env)
        argv, text, script_fd = argv_of(command, shell, always, child, cwd)
        terminal = Terminal() if pty else None
        if terminal is not None:
            cleanup_on_fail.callback(terminal.close)
        pipes = (1,) if terminal else (2,) if stdout is not None else (1, 2)
        pump = Pump(on_output, loop, pipes, capture_limit, keep_log, watches_prompts=ask is not None)
        token = watchdog.expect_spawn()
        cleanup_on_fail.callback(watchdog.spawn_failed, token)
        started_at = now()
        transport, cancelled = await spawn(
            loop,
            pump,
            argv,
            controlling_terminal if ask is not None else None,
            **_child_fds(terminal, input, stdin, stdout, ask),
            cwd=cwd,
            env={**child, watchdog.SPAWN_VARIABLE: token},
            pass_fds=() if script_fd is None else (script_fd,),
        )
        cleanup_on_fail.callback(end_groups_now, {transport.get_pid(): 0.0})
        if terminal is not None:
            terminal.start(loop, pump)
        for fd in () if terminal else pipes:
            pump.size_reads(fd, transport.get_pipe_transport(fd), flow)
        if flow is not None:
            for fd in pipes:
                flow.watch(terminal or transport.get_pipe_transport(fd))
        proc = Process._create(
            text,
            transport,
            pump,
            started_at=started_at,
            timeout=timeout,
            grace=grace,
            interrupt_grace=interrupt_grace,
            terminal=terminal,
            flow=flow,
            input=input,
            ask=ask,
        )
        cleanup_on_fail.pop_all()
    _live.add(proc)
    watchdog.track(proc.pgid, token)
    if pump.spill.kept:
        pump.spill.materialize()  # there from the start: a person can follow it
    if cancelled:  # nobody will own it: end it before the cancellation goes on
        await through_cancellations(proc.stop("killed"))
        raise asyncio.CancelledError
    return proc


def _check(
    timeout: float | None,
    grace: float,
    interrupt_grace: float,
    input: InputSource | None,
    stdin: str | int | None,
    stdout: int | None,
    ask: Ask | None,
) -> None:
    """Refuse options that cannot go together, before anything is started."""
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
    if ask is not None and (stdin is not None or stdout is not None):
        raise ValueError("ask= gives the command a terminal for stdin and stdout: no stdin= or stdout=")


def _child_fds(
    terminal: Terminal | None,
    input: InputSource | None,
    stdin: str | int | None,
    stdout: int | None,
    ask: Ask | None,
) -> dict[str, Any]:
    """The child's stdin, stdout and stderr: pipes read here, a terminal, or given fds."""
    stdin_arg: Any = asyncio.subprocess.DEVNULL
    if ask is not None:
        assert terminal is not None
        stdin_arg = terminal.slave
    elif input is not None or stdin == "pipe":
        stdin_arg = asyncio.subprocess.PIPE
    elif isinstance(stdin, int):
        stdin_arg = stdin
    if terminal is not None:
        return {"stdin": stdin_arg, "stdout": terminal.slave, "stderr": terminal.slave}
    out: Any = asyncio.subprocess.PIPE if stdout is None else stdout
    return {"stdin": stdin_arg, "stdout": out, "stderr": asyncio.subprocess.PIPE}


async def run(command: str | Sequence[str], **options: Any) -> Result:
    """Run ``command`` to the end and return its :class:`Result` (options as for :func:`start`).

    If the calling task is cancelled, the command's whole tree is interrupted (SIGINT,
    SIGTERM, SIGKILL) before the cancellation propagates.
    """
    return await run_to_end(await start(command, **options))


def live_processes() -> list[Process]:
    """Every process started by this interpreter that has not finished yet."""
    return list(_live)


_live: set[Process] = set()


@atexit.register
def end_all_now() -> None:
    """End every live process's group, blocking (SIGTERM, its grace, SIGKILL).

    For where no event loop can run: interpreter exit, unloading the extension.
    """
    groups: dict[int, float] = {}
    for proc in list(_live):
        groups.update(proc._ending_now(None))
    end_groups_now(groups)
