"""Running one command on another machine over SSH, with the lifecycle of a local one.

The command runs inside a small POSIX ``sh`` wrapper (:data:`WRAPPER`, sent with the
command: nothing is installed on the host). OpenSSH's session child calls ``setsid()``, so
the wrapper leads a process group holding the command and everything it starts, and a
``signal`` request on the channel reaches that whole group (OpenSSH >= 7.9). Stopping is
the local escalation (SIGINT, SIGTERM after the interrupt grace, SIGKILL after the grace)
sent as channel signals; the wrapper outlives the command's signals, so the session stays
open until the escalation is done. The wrapper also does what a channel cannot:

- when the command exits, what it left running in its group is ended (TERM, the grace,
  KILL), as a local command's leftovers are;
- when the connection goes away (the kernel was killed, the network or sshd dropped it), a
  channel without a pty sends no signal at all: a watcher in the wrapper sees its sshd
  parent gone within a second and ends the group (TERM, the grace, KILL).
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shlex
import signal
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import asyncssh

from .capture import KeptLog
from .flow import Flow
from .pump import OutputCallback, Pump, PumpedOutput
from .result import Ended, Result
from .running import Running, now, run_to_end, through_cancellations
from .ssh import CONNECTIONS, Connections, SSHSettings
from .stdin import InputSource, check_source, feed, input_failed
from .stopping import INTERRUPT_GRACE, escalation
from .terminal import SIZE

WRAPPER = r"""
printf '%s %s\n' asyncmagic-pgid $$ >&2
exec 3>&2 2>/dev/null
p=$PPID g=$1 sh=$2 script=$3
trap : INT TERM HUP
(
  trap : INT TERM HUP
  trap 'kill $z 2>/dev/null; exit 0' USR1
  exec </dev/null >/dev/null 2>&1
  while kill -0 "$p"; do sleep 1 & z=$!; wait $z; done
  kill -TERM 0; sleep "$g"; kill -KILL 0
) &
w=$!
if [ -z "$sh" ]; then
  if command -v bash >/dev/null 2>&1; then sh=bash; else sh=sh; fi
fi
(SHLVL=1 exec "$sh" -c "$script" "$sh" 2>&3 3>&-)
s=$?
kill -USR1 "$w" 2>/dev/null; wait "$w" 2>/dev/null
others() {
  o=
  [ -r /proc/self/stat ] || return 0
  for f in /proc/[0-9]*/stat; do
    read -r l <"$f" 2>/dev/null || continue
    set -- ${l##*) }
    n=${f#/proc/}; n=${n%/stat}
    if [ "$3" = $$ ] && [ "$1" != Z ] && [ "$n" != $$ ]; then o="$o $n"; fi
  done
}
others
if [ -n "$o" ]; then
  kill -TERM 0
  i=0
  while [ -n "$o" ] && [ $i -lt "$(( ${g%.*} * 10 + 1 ))" ]; do sleep 0.1; i=$((i + 1)); others; done
  [ -n "$o" ] && kill -KILL $o 2>/dev/null
fi
trap - INT TERM HUP
if [ $s -gt 128 ] && [ $s -lt 160 ]; then kill -$((s - 128)) $$; fi
exit $s
"""
"""The remote side, in POSIX sh: ``sh -c WRAPPER sh GRACE SHELL SCRIPT``; see the module."""

SCRIPT_MAX = 100_000
"""Characters of a remote script: sshd hands the command to the login shell as one argument,
which Linux caps at 128 KiB."""

ABANDON_WAIT = 5.0
"""Seconds a closed channel may take to end once no signal ended the command; after them
the command is given up locally (the kernel must never wait for a host forever)."""


def remote_command(
    script: str, *, shell: str | None, cwd: str | None, env: Mapping[str, str | None], grace: float
) -> str:
    """The command line sent to the host: the wrapper, the grace, the shell and the script
    (with ``env`` exported and ``cwd`` entered first)."""
    prelude = "".join(
        f"export {name}={shlex.quote(value)}\n" if value is not None else f"unset {name}\n"
        for name, value in env.items()
    )
    if cwd is not None:
        prelude += f"cd -- {shlex.quote(str(cwd))} || exit 1\n"
    words = ["exec", "sh", "-c", WRAPPER, "sh", f"{grace:g}", shell or "", prelude + script]
    return " ".join(shlex.quote(w) for w in words)


class _Session(asyncssh.SSHClientSession[bytes]):
    """An SSH channel's events, given to the command's :class:`Pump` as a local child's are.

    The wrapper's first line (``asyncmagic-pgid N`` on stderr, or on the terminal with a
    pty) names the remote process group; it is taken out of the output.
    """

    def __init__(self, pump: Pump, marked_fd: int, out: _PipeOut | None) -> None:
        self._pump = pump
        self._marked_fd = marked_fd
        self._out = out
        self._head = b""
        self._looking = True
        self.pgid: int | None = None
        self.lost: Exception | None = None

    def connection_made(self, chan: asyncssh.SSHClientChannel) -> None:  # type: ignore[override]
        if self._out is not None:
            self._out.channel = chan

    def data_received(self, data: bytes, datatype: int | None) -> None:
        fd = 2 if datatype == asyncssh.EXTENDED_DATA_STDERR else 1
        if self._looking and fd == self._marked_fd:
            data = self._take_mark(data)
        if not data:
            return
        if fd == 1 and self._out is not None:
            self._out.write(data)
        else:
            self._pump.pipe_data_received(fd, data)

    def _take_mark(self, data: bytes) -> bytes:
        """``data`` without the wrapper's line (what came before it stays)."""
        self._head += data
        start = self._head.find(_MARK)
        end = self._head.find(b"\n", start) if start >= 0 else -1
        if end >= 0:
            number = self._head[start + len(_MARK) : end].strip()
            self.pgid = int(number) if number.isdigit() else None
            data, self._head, self._looking = self._head[:start] + self._head[end + 1 :], b"", False
            return data
        if len(self._head) > 4096:  # a shell that printed much first; no group to name
            data, self._head, self._looking = self._head, b"", False
            return data
        return b""

    def eof_received(self) -> bool:
        self._end_of_output()
        return True  # keep the channel open: the exit status follows

    def pause_writing(self) -> None:
        self._pump.pause_writing()

    def resume_writing(self) -> None:
        self._pump.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc
        if self._head:
            self._pump.pipe_data_received(self._marked_fd, self._head)
            self._head = b""
        self._end_of_output()
        self._pump.stdin.lose()
        self._pump.process_exited()

    def _end_of_output(self) -> None:
        if self._out is not None:
            self._out.close()
        for fd, eof in self._pump.eof.items():
            if not eof.done():
                self._pump.pipe_connection_lost(fd, None)


_MARK = b"asyncmagic-pgid "


class _PipeOut(asyncio.Protocol):
    """A remote command's stdout written into a local pipe (a pipeline's next stage).

    A full pipe pauses the channel's reading, so the remote command blocks on its writes as
    a local one would. When the reader goes away, :attr:`refused` is called (the command is
    sent SIGPIPE, as a local writer gets it) and the rest of the output is dropped.
    """

    def __init__(self) -> None:
        self.transport: asyncio.WriteTransport | None = None
        self.channel: asyncssh.SSHClientChannel | None = None
        self.refused: Callable[[], None] | None = None
        self.gone = False
        self._closed = False

    @classmethod
    async def open(cls, fd: int) -> _PipeOut:
        """Write into a copy of ``fd`` (the caller keeps and closes its own)."""
        out = cls()
        pipe = os.fdopen(os.dup(fd), "wb", 0)
        try:
            await asyncio.get_running_loop().connect_write_pipe(lambda: out, pipe)
        except BaseException:  # cancelled meanwhile: the copy is ours to close
            pipe.close()
            raise
        return out

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def write(self, data: bytes) -> None:
        if not self.gone and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        self._closed = True
        if self.transport is not None:
            self.transport.close()

    def pause_writing(self) -> None:
        if self.channel is not None:
            self.channel.pause_reading()

    def resume_writing(self) -> None:
        if self.channel is not None:
            self.channel.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._closed and exc is None:  # the command's output ended
            return
        self.gone = True
        self.resume_writing()  # what still comes is dropped, never waited for
        if self.refused is not None:
            self.refused()


class _Stdin:
    """The channel's input as :func:`~asyncmagic.engine.stdin.feed` writes it: closing sends EOF."""

    def __init__(self, channel: asyncssh.SSHClientChannel) -> None:
        self._channel = channel
        self._ended = False

    def write(self, data: bytes) -> None:
        self._channel.write(data)

    def is_closing(self) -> bool:
        return self._ended or self._channel.is_closing()

    def close(self) -> None:
        if not self.is_closing():
            self._ended = True
            try:
                self._channel.write_eof()
            except OSError:
                pass


class RemoteProcess(PumpedOutput, Running):
    """A command started on a host by :func:`start_remote` (no public constructor).

    Its :class:`Result` has ``host`` set; ``pid`` is None (the remote pid is not ours to use).
    """

    _made_by = "asyncmagic.start(command, host=...)"
    host: str
    _channel: asyncssh.SSHClientChannel
    _session: _Session
    _pump: Pump
    _stdin: _Stdin
    _connections: Connections
    _ssh: SSHSettings
    _grace: float
    _interrupt_grace: float
    _stopping: asyncio.Task[None] | None
    _error: str | None
    _feeder: asyncio.Task[None] | None
    _refusal: asyncio.Task[None] | None
    """SIGPIPE on its way to the command, whose stdout's local reader went away."""

    def __init__(
        self,
        command: str,
        host: str,
        channel: asyncssh.SSHClientChannel,
        session: _Session,
        pump: Pump,
        connections: Connections,
        ssh: SSHSettings,
        *,
        started_at: datetime,
        timeout: float | None,
        grace: float,
        interrupt_grace: float,
        input: InputSource | None,
        interactive: bool,
        out: _PipeOut | None,
    ) -> None:
        super().__init__(command, started_at=started_at, timeout=timeout)
        self.pid = None
        self.host = host
        self._channel, self._session, self._pump = channel, session, pump
        self._stdin = _Stdin(channel)
        self._connections, self._ssh = connections, ssh
        self._grace, self._interrupt_grace = grace, interrupt_grace
        self._stopping = None
        self._error = None
        self._feeder = self._refusal = None
        if out is not None:
            out.refused = self._refused
            if out.gone:
                self._refused()
        if input is not None:
            self._feeder = asyncio.ensure_future(feed(input, self._stdin, pump.stdin, self._input_failed))  # type: ignore[arg-type]
        elif not interactive:
            self._stdin.close()  # as /dev/null: a read gets end-of-file
        self._begin(self._finish())

    async def send(self, data: str | bytes) -> None:
        if self._stdin.is_closing() or self._pump.stdin.lost:
            raise BrokenPipeError("the command's stdin is closed")
        self._stdin.write(data.encode() if isinstance(data, str) else data)
        await self._pump.stdin.drain()

    async def close_stdin(self) -> None:
        await self._pump.stdin.drain()
        self._stdin.close()

    # -- the lifecycle ---------------------------------------------------------------------

    def _begin_stop(self, ended: Ended, grace: float | None) -> None:
        if self._stopping is not None:
            return
        if self._ended is None and not self._pump.exited.done():
            self._ended = ended
        first = signal.SIGINT if ended == "interrupted" else signal.SIGTERM
        steps = escalation(first, self._grace if grace is None else grace, self._interrupt_grace)
        self._stopping = asyncio.ensure_future(self._escalate(steps))

    async def _escalate(self, steps: list[tuple[int, float]]) -> None:
        for sig, wait in steps:
            if self._pump.exited.done():
                return
            await self._signal(sig)
            done, _ = await asyncio.wait([self._pump.exited], timeout=wait)
            if done:
                return
        self._channel.close()  # nothing more can be done from here; the wrapper's watcher goes on
        done, _ = await asyncio.wait([self._pump.exited], timeout=ABANDON_WAIT)
        if not done:  # the host keeps the session open: give it up here, and say so
            self._error = self._error or "no signal reached it on the host, which kept its session open"
            self._session.connection_lost(None)

    async def _signal(self, sig: int) -> None:
        """Send ``sig`` to the remote group: as a channel signal (OpenSSH >= 7.9 delivers
        it, but not to a root login, whose session has no privilege separation) and from a
        second session on the same connection, ``kill`` to the group the wrapper named."""
        name = signal.Signals(sig).name[3:]
        self._channel_signal(name)
        pgid = self._session.pgid
        if pgid is None:
            return
        try:
            await self._connections.run(self.host, self._ssh, f"kill -s {name} -- -{pgid} 2>/dev/null")
        except (OSError, asyncssh.Error, asyncio.TimeoutError):
            pass  # the connection is gone: the wrapper's watcher ends the group

    def _channel_signal(self, name: str) -> None:
        try:
            self._channel.send_signal(name)
        except (OSError, asyncssh.Error):
            pass

    def _ending_now(self, grace: float | None) -> dict[int, float]:
        """SIGTERM goes out now (asyncio writes to a socket at once when it can); the rest of
        the escalation follows when the loop runs, or the wrapper's watcher does it once the
        connection closes."""
        if self._ended is None and not self._pump.exited.done():
            self._ended = "killed"
        self._channel_signal("TERM")
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # interpreter exit: no loop will run the rest
            return {}
        self._begin_stop("killed", grace)
        return {}

    def _fail(self, error: str) -> None:
        if self._error is None:
            self._error = error
        self._begin_stop("killed", None)

    def _input_failed(self, error: BaseException) -> None:
        self._fail(input_failed(error))

    def _refused(self) -> None:
        if self._refusal is None and not self._pump.exited.done():
            self._refusal = asyncio.ensure_future(self._signal(signal.SIGPIPE))

    async def _finish(self) -> Result:
        await self._pump.exited
        self._cancel_timer()
        if self._stopping is not None:
            await self._stopping
        for task in (self._feeder, self._refusal):
            if task is not None:
                await asyncio.wait([task])
        _live.discard(self)
        return self._result()

    def _result(self) -> Result:
        returncode, error = self._returncode()
        return self._output_result(returncode, error=self._error or error, host=self.host)

    def _returncode(self) -> tuple[int, str | None]:
        """The exit status (``-N`` for signal N), and the error when the connection went first."""
        exit_signal = self._channel.get_exit_signal()
        if exit_signal is not None:
            try:
                return -signal.Signals["SIG" + exit_signal[0]].value, None
            except KeyError:
                return -1, f"killed by signal {exit_signal[0]}"
        status = self._channel.get_exit_status()
        if status is not None and status >= 0:
            return status, None
        if self._ended is not None:
            return -signal.SIGKILL, None
        lost = self._session.lost
        return 255, f"connection lost{f': {lost}' if lost else ''}"


async def start_remote(
    command: str,
    host: str,
    *,
    shell: str | None = None,
    timeout: float | None = None,
    grace: float = 2.0,
    interrupt_grace: float = INTERRUPT_GRACE,
    input: InputSource | None = None,
    stdin: str | None = None,
    stdout_fd: int | None = None,
    pty: bool = False,
    cwd: str | None = None,
    env: Mapping[str, str | None] | None = None,
    on_output: OutputCallback | None = None,
    flow: Flow | None = None,
    capture_limit: int | None = None,
    keep_log: KeptLog | None = None,
    ssh: SSHSettings | None = None,
    connections: Connections | None = None,
) -> RemoteProcess:
    """Start ``command`` (a script of the host's bash, else sh, or of ``shell``) on ``host``.

    Options mean what they mean for :func:`~asyncmagic.engine.process.start`; ``stdin`` is
    None (end-of-file) or "pipe" (write with ``send()``). ``stdout_fd`` sends the command's
    stdout, as bytes, into that local fd (a pipe; the caller keeps its own copy), not to
    ``on_output``. ``ssh`` says where the client's configuration comes from;
    ``connections`` is the pool to use (default: the shared one). Raises
    :class:`~asyncmagic.engine.ssh.ConnectError` when the host cannot be reached.
    """
    _check(command, timeout, grace, interrupt_grace, input, stdin)
    if pty and stdout_fd is not None:
        raise ValueError("a remote pty merges the streams: it cannot write stdout to a pipe")
    loop = asyncio.get_running_loop()
    pipes = (1,) if pty else (2,) if stdout_fd is not None else (1, 2)
    pump = Pump(on_output, loop, pipes, capture_limit, keep_log, watches_prompts=False)
    line = remote_command(command, shell=shell, cwd=cwd, env=env or {}, grace=grace)
    options: dict[str, Any] = {"encoding": None}
    if pty:
        options.update(
            term_type="xterm-256color", term_size=(SIZE[1], SIZE[0]), term_modes={asyncssh.PTY_ONLCR: 0}
        )
    pool, ssh = connections or CONNECTIONS, ssh or SSHSettings()
    started_at = now()
    out = None if stdout_fd is None else await _PipeOut.open(stdout_fd)
    opening = asyncio.ensure_future(
        pool.session(host, ssh, lambda: _Session(pump, 1 if pty else 2, out), line, **options)
    )
    cancelled = False
    while not opening.done():  # once asked for, the session may start: it must be owned
        try:
            await asyncio.shield(opening)
        except asyncio.CancelledError:
            cancelled = True
        except Exception:
            break
    if opening.exception() is not None and out is not None:
        out.close()
    if cancelled and opening.exception() is not None:
        raise asyncio.CancelledError
    channel, session = opening.result()
    assert isinstance(session, _Session)
    if flow is not None and out is None:  # a pipe's back-pressure pauses that channel
        flow.watch(channel)
    proc = RemoteProcess._create(
        command,
        host,
        channel,
        session,
        pump,
        pool,
        ssh,
        started_at=started_at,
        timeout=timeout,
        grace=grace,
        interrupt_grace=interrupt_grace,
        input=input,
        interactive=stdin == "pipe",
        out=out,
    )
    _live.add(proc)
    if pump.spill.kept:
        pump.spill.materialize()
    if cancelled:
        await through_cancellations(proc.stop("killed"))
        raise asyncio.CancelledError
    return proc


async def run_remote(command: str, host: str, **options: Any) -> Result:
    """Run ``command`` on ``host`` to the end (options as for :func:`start_remote`); a
    cancelled caller interrupts the remote tree first."""
    return await run_to_end(await start_remote(command, host, **options))


def _check(
    command: str,
    timeout: float | None,
    grace: float,
    interrupt_grace: float,
    input: InputSource | None,
    stdin: str | None,
) -> None:
    if not isinstance(command, str):
        raise TypeError("a remote command is a script (a str): the host's shell runs it")
    if len(command) > SCRIPT_MAX:
        raise ValueError(f"a remote script is limited to {SCRIPT_MAX:,} characters, not {len(command):,}")
    if timeout is not None and timeout <= 0:
        raise ValueError(f"timeout must be positive, not {timeout}")
    if grace < 0 or interrupt_grace < 0:
        raise ValueError("grace and interrupt_grace must be zero or more")
    if stdin not in (None, "pipe"):
        raise ValueError(f'a remote stdin is None or "pipe", not {stdin!r}')
    if input is not None:
        if stdin is not None:
            raise ValueError("give input= or stdin=, not both")
        check_source(input)


def live_remote() -> list[RemoteProcess]:
    """Every remote command started by this interpreter that has not finished yet."""
    return list(_live)


_live: set[RemoteProcess] = set()


@atexit.register
def end_all_remote_now() -> None:
    """SIGTERM to every live remote command, then close the connections: the wrappers see
    their sessions gone and end the rest (the grace, then SIGKILL). For interpreter exit
    and unloading the extension, where no loop runs."""
    for proc in list(_live):
        proc._ending_now(None)
    CONNECTIONS.close_now()
