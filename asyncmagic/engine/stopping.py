"""Ending a command's whole process tree: the one place that sends stop signals.

Every command runs as the leader of its own session, so its process group holds the
command and everything it started (``sleep 100 &`` included). Stopping means signalling
that group, waiting until no live process is left in it, and escalating:

- an interrupt sends SIGINT first, then SIGTERM, then SIGKILL;
- a timeout, a kill request or shutdown send SIGTERM, then SIGKILL;

each step waits until the group is gone, or every process left in it ignores the signal
just sent (a ``cmd &`` of a script ignores SIGINT: waiting for it to react would only
delay the stop), or its time is up. Signals go through
``os.killpg``, never ``Popen.send_signal`` (which polls, and can reap the child behind
asyncio's back).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

INTERRUPT_GRACE = 3.0
"""Default seconds a process group gets to end after SIGINT before SIGTERM follows: long
enough for a Ctrl-C handler that saves a checkpoint."""

KILL_WAIT = 5.0
"""Seconds to wait for SIGKILL to take effect (a process in uninterruptible sleep lags)."""


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to process group ``pgid``; False when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


def group_alive(pgid: int, *, unless_ignoring: int | None = None) -> bool:
    """True while process group ``pgid`` holds a process that is not a zombie (and, with
    ``unless_ignoring``, that does not ignore that signal).

    Zombies count as gone: an orphan's zombie waits for init to reap it, which in a
    container may never happen, and it can run no code anyway.
    """
    if not signal_group(pgid, 0):
        return False
    try:
        entries = os.listdir("/proc")
    except OSError:  # no procfs: trust killpg
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # Fields after the parenthesised command name: state, ppid, pgrp, ...
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != b"Z":
            if unless_ignoring is None or not _ignores(entry, unless_ignoring):
                return True
    return False


def _ignores(pid: str, sig: int) -> bool:
    """True if process ``pid`` ignores ``sig`` (``SigIgn`` in /proc/PID/status)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"SigIgn:"):
                    return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


async def wait_group_gone(pgid: int, within: float | None, *, unless_ignoring: int | None = None) -> bool:
    """Wait until group ``pgid`` has no live process (none but those that ignore
    ``unless_ignoring``); False if ``within`` seconds pass first.

    Processes outside our children cannot be waited on, so this polls, starting fast.
    """
    deadline = None if within is None else time.monotonic() + within
    delay = 0.005
    while group_alive(pgid, unless_ignoring=unless_ignoring):
        if deadline is not None and time.monotonic() >= deadline:
            return False
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)
    return True


def escalation(first: int, grace: float, interrupt_grace: float = INTERRUPT_GRACE) -> list[tuple[int, float]]:
    """The (signal, seconds to wait) steps that end a group, starting with ``first``."""
    steps: list[tuple[int, float]] = []
    if first == signal.SIGINT:
        steps.append((signal.SIGINT, interrupt_grace))
    steps.append((signal.SIGTERM, grace))
    steps.append((signal.SIGKILL, KILL_WAIT))
    return steps


async def end_group(
    pgid: int, *, first: int = signal.SIGTERM, grace: float = 2.0, interrupt_grace: float = INTERRUPT_GRACE
) -> bool:
    """End every process in group ``pgid``, escalating to SIGKILL; True once none is left.

    Runs to the end even if the calling task is cancelled meanwhile: a half-stopped tree
    is the one outcome that must not happen.
    """
    task = asyncio.ensure_future(_escalate(pgid, escalation(first, grace, interrupt_grace)))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


async def _escalate(pgid: int, steps: list[tuple[int, float]]) -> bool:
    for sig, wait in steps:
        if not signal_group(pgid, sig):
            return True
        if await wait_group_gone(pgid, wait, unless_ignoring=sig) and not group_alive(pgid):
            return True
    return not group_alive(pgid)


def end_groups_now(groups: dict[int, float]) -> None:
    """End every group of ``groups`` (pgid -> grace) at once, blocking: SIGTERM to all, then
    SIGKILL to each one still alive after its grace (at once if all left ignore SIGTERM).
    For where no event loop can run (interpreter exit, unloading the extension, a blocked
    loop): the wait is the longest grace, not their sum."""
    start = time.monotonic()
    alive = {pgid: start + grace for pgid, grace in groups.items() if signal_group(pgid, signal.SIGTERM)}
    while alive:
        now = time.monotonic()
        for pgid, deadline in list(alive.items()):
            if not group_alive(pgid):
                del alive[pgid]
            elif now >= deadline or not group_alive(pgid, unless_ignoring=signal.SIGTERM):
                signal_group(pgid, signal.SIGKILL)
                del alive[pgid]
        if alive:
            time.sleep(0.01)
