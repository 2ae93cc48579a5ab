"""Learning that a child exited from a pidfd on the loop, not from a thread per child.

asyncio on Python 3.11 waits for each subprocess with ``ThreadedChildWatcher``: a new
thread per child, blocked in ``waitpid``, that wakes the loop when the child is gone. That
thread costs about half a millisecond of every short command. A pidfd (Linux 5.3+) becomes
readable when its process exits, so the loop itself can wait for it, as Python 3.12's
default watcher does. This is that watcher, for 3.11: each child is watched by the loop
that started it (the kernel's, or the private loop of a blocking call in a worker thread).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)


class PidfdWatcher(asyncio.AbstractChildWatcher):
    """A child watcher for any running loop, on pidfds (Python 3.12's ``PidfdChildWatcher``)."""

    def __enter__(self) -> PidfdWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def is_active(self) -> bool:
        return True

    def close(self) -> None:
        pass

    def attach_loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
        pass

    def add_child_handler(self, pid: int, callback: Callable[..., Any], *args: Any) -> None:
        loop = asyncio.get_running_loop()
        pidfd = os.pidfd_open(pid)
        loop._add_reader(pidfd, self._do_wait, loop, pid, pidfd, callback, args)  # type: ignore[attr-defined]

    def remove_child_handler(self, pid: int) -> bool:
        return True  # the pidfd goes when the child is reaped, as in Python 3.12

    @staticmethod
    def _do_wait(
        loop: asyncio.AbstractEventLoop, pid: int, pidfd: int, callback: Callable[..., Any], args: tuple
    ) -> None:
        loop._remove_reader(pidfd)  # type: ignore[attr-defined]
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:  # reaped by someone else: its status is lost
            returncode = 255
            logger.warning("child process pid %d exit status already read: will report returncode 255", pid)
        else:
            returncode = os.waitstatus_to_exitcode(status)
        os.close(pidfd)
        callback(pid, returncode, *args)


_lock = threading.Lock()
_checked = False


def use_pidfds() -> None:
    """Wait for children with pidfds where asyncio would start a thread per child: Python
    3.11 on Linux with pidfds, and only in place of asyncio's own default watcher (one that
    someone chose is left alone). Called before each spawn; does its work once."""
    global _checked
    if _checked:
        return
    with _lock:
        if _checked:
            return
        _checked = True
        if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
            return
        try:
            os.close(os.pidfd_open(os.getpid()))
        except OSError:  # a kernel older than 5.3, or a sandbox that forbids it
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            policy = asyncio.get_event_loop_policy()
            if not isinstance(policy, asyncio.DefaultEventLoopPolicy):
                return  # uvloop and others wait for children their own way
            current = getattr(policy, "_watcher", None)
            if current is None or type(current) is asyncio.ThreadedChildWatcher:
                policy.set_child_watcher(PidfdWatcher())


__all__ = ["PidfdWatcher", "use_pidfds"]
