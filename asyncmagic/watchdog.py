"""Ending the process groups of a process that died without cleaning up.

A graceful exit ends every live group itself (see :mod:`asyncmagic.process`). A kernel
killed with SIGKILL, or crashing, cannot: so the first command it starts also starts one
small watchdog process, in its own session, that reads "+PGID" / "-PGID" lines from a
pipe. When the pipe reaches end-of-file (the kernel is gone, however it went) the
watchdog ends every group still registered: SIGTERM, then SIGKILL after a grace.

The parent side is :func:`track` and :func:`untrack`; :func:`main` is the watchdog.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

GRACE = 2.0
"""Seconds between SIGTERM and SIGKILL once the owner is gone."""

_lock = threading.Lock()
_pipe: int | None = None
_proc: subprocess.Popen[bytes] | None = None


def ensure_running() -> None:
    """Start the watchdog now, if it is not running: called before a spawn, so that
    :func:`track` right after it is one write, and the window in which a dying owner would
    leave the new group unregistered is as short as it can be."""
    _send("")


def track(pgid: int) -> None:
    """Register ``pgid``: it is ended if this process dies before calling :func:`untrack`."""
    _send(f"+{pgid}\n")


def untrack(pgid: int) -> None:
    """Forget ``pgid``: it has ended."""
    _send(f"-{pgid}\n")


def _send(line: str) -> None:
    global _pipe, _proc
    with _lock:
        if _pipe is None or (_proc is not None and _proc.poll() is not None):
            _proc = subprocess.Popen(
                [sys.executable, "-c", "from asyncmagic.watchdog import main; main()"],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                start_new_session=True,  # the kernel's interrupts and shutdown kills miss it
                close_fds=True,
            )
            assert _proc.stdin is not None
            _pipe = _proc.stdin.fileno()
            os.set_inheritable(_pipe, False)
        if not line:
            return
        try:
            os.write(_pipe, line.encode())
        except OSError:
            _pipe = None


def main() -> None:
    """The watchdog itself: keep the registered groups, end them at end-of-file."""
    import signal

    from asyncmagic.stopping import group_alive, signal_group

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    groups: set[int] = set()
    for raw in sys.stdin.buffer:
        line = raw.strip()
        if line[:1] == b"+":
            groups.add(int(line[1:]))
        elif line[:1] == b"-":
            groups.discard(int(line[1:]))
    alive = [g for g in groups if signal_group(g, signal.SIGTERM)]
    deadline = time.monotonic() + GRACE
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [g for g in alive if group_alive(g)]
    for g in alive:
        signal_group(g, signal.SIGKILL)
