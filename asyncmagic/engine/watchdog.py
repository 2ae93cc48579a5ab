"""Ending the process groups of a process that died without cleaning up.

A graceful exit ends every live group itself (see :mod:`asyncmagic.engine.process`). A kernel
killed with SIGKILL, or crashing, cannot: so the first command it starts also starts one
small watchdog process, in its own session, that reads "+PGID" / "-PGID" lines from a
pipe. When the owner is gone, however it went, the watchdog ends every group still
registered: SIGTERM, then SIGKILL after a grace.

A group can only be registered once its spawn returned, and an owner killed between the
child's exec and that line would leave the child to run on. So before each spawn the
owner sends "?TOKEN" and gives the child ``ASYNCMAGIC_SPAWN=TOKEN`` in its environment,
and after it "!TOKEN". A token still pending at the owner's death is looked up in
``/proc/*/environ`` among session leaders (each command leads its own session), and that
group is ended too. It learns of the death from a pidfd of
the owner, not only from end-of-file on the pipe: a child the owner ``fork()``ed without
exec (``multiprocessing``) holds a copy of the pipe's write end, and no end-of-file comes
while it lives.

The parent side is :func:`track` and :func:`untrack`; :func:`main` is the watchdog.
"""

from __future__ import annotations

import itertools
import os
import secrets
import select
import subprocess
import sys
import threading
import time

SPAWN_VARIABLE = "ASYNCMAGIC_SPAWN"
"""The environment variable that names a child's spawn until its group is registered."""

GRACE = 2.0
"""Seconds between SIGTERM and SIGKILL once the owner is gone."""

_lock = threading.Lock()
_pipe: int | None = None
_proc: subprocess.Popen[bytes] | None = None
_spawns = itertools.count(1)
_NONCE = secrets.token_hex(6)


def expect_spawn() -> str:
    """Before a spawn: start the watchdog if needed and announce a spawn; the token goes in
    the child's environment as :data:`SPAWN_VARIABLE`, then to :func:`track` (or
    :func:`spawn_failed`)."""
    # Unique beyond this process: a dying owner's watchdog ends every session leader whose
    # environment holds one of its pending tokens, and every child keeps its token for life.
    token = f"{os.getpid()}-{_NONCE}-{next(_spawns)}"
    _send(f"?{token}\n")
    return token


def track(pgid: int, token: str | None = None) -> None:
    """Register ``pgid`` (the spawn ``token`` made): it is ended if this process dies before
    calling :func:`untrack`."""
    _send(f"+{pgid}\n" + (f"!{token}\n" if token else ""))


def spawn_failed(token: str) -> None:
    """The spawn announced with ``token`` made no process."""
    _send(f"!{token}\n")


def untrack(pgid: int) -> None:
    """Forget ``pgid``: it has ended."""
    _send(f"-{pgid}\n")


def _send(line: str) -> None:
    """Write ``line`` to the watchdog, starting it first if there is none. A watchdog that
    died is noticed by the write failing (its pipe has no reader), not by a ``waitpid``
    before each line: then another is started and told the line."""
    global _pipe
    with _lock:
        for _ in range(2):
            if _pipe is None:
                _pipe = _start()
            if not line:
                return
            try:
                os.write(_pipe, line.encode())
                return
            except OSError:
                _pipe = None


def _start() -> int:
    """Start the watchdog (reaping one that died); the write end of its pipe."""
    global _proc
    if _proc is not None:  # the one that died: reap it, close our end of its pipe
        _proc.poll()
        if _proc.stdin is not None:
            try:
                _proc.stdin.close()
            except OSError:
                pass
    _proc = subprocess.Popen(
        [sys.executable, "-c", "from asyncmagic.engine.watchdog import main; main()", str(os.getpid())],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        start_new_session=True,  # the kernel's interrupts and shutdown kills miss it
        close_fds=True,
    )
    assert _proc.stdin is not None
    pipe = _proc.stdin.fileno()
    os.set_inheritable(pipe, False)
    return pipe


def main() -> None:
    """The watchdog itself: keep the registered groups, end them at end-of-file."""
    import signal

    from asyncmagic.engine.stopping import group_alive, signal_group

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    groups: set[int] = set()
    pending: set[bytes] = set()  # spawn tokens whose group is not registered yet
    watched = [0]
    owner_alive = True
    try:
        owner = int(sys.argv[1])
        watched.append(os.pidfd_open(owner))
        owner_alive = os.getppid() == owner  # else the pid was already gone, maybe reused
    except ProcessLookupError:
        owner_alive = False  # it died while we started
    except (IndexError, ValueError, OSError):
        pass  # end-of-file alone then tells
    if not owner_alive:
        os.set_blocking(0, False)
    partial = b""
    while True:
        ready = [0] if not owner_alive else select.select(watched, [], [])[0]
        if len(watched) > 1 and watched[1] in ready:
            owner_alive = False  # gone: read what it wrote before it went, then act
            os.set_blocking(0, False)
        try:
            data = os.read(0, 65536)
        except BlockingIOError:
            data = b""
        if not data:
            break
        *lines, partial = (partial + data).split(b"\n")
        for line in lines:
            if line[:1] == b"+":
                groups.add(int(line[1:]))
            elif line[:1] == b"-":
                groups.discard(int(line[1:]))
            elif line[:1] == b"?":
                pending.add(line[1:])
            elif line[:1] == b"!":
                pending.discard(line[1:])
    if pending:
        time.sleep(0.05)  # a child forked but not yet exec'd shows the owner's environment
        groups |= _leaders_of(pending)
    alive = [g for g in groups if signal_group(g, signal.SIGTERM)]
    deadline = time.monotonic() + GRACE
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [g for g in alive if group_alive(g)]
    for g in alive:
        signal_group(g, signal.SIGKILL)


def _leaders_of(tokens: set[bytes]) -> set[int]:
    """Session leaders whose environment names one of the spawn ``tokens``."""
    wanted = {f"{SPAWN_VARIABLE}=".encode() + token for token in tokens}
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
            fields = stat[stat.rfind(b")") + 2 :].split()
            if int(fields[3]) != int(entry):  # the session id: each command leads its own
                continue
            with open(f"/proc/{entry}/environ", "rb") as f:
                if wanted & set(f.read().split(b"\0")):
                    found.add(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return found
