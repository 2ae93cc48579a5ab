"""The one lifecycle of everything that runs: a process, a pipeline (a remote command later).

A :class:`Running` is made by its module's start function through a private constructor
(``cls._create(...)``), given every collaborator it needs; it has one future, its Result.
:func:`run_to_end` is the one cancellation policy: a cancelled wait interrupts the whole
tree and waits for it, even through more cancellations.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timezone
from typing import Any, TypeVar

from .result import Ended, Result
from .stopping import end_groups_now

T = TypeVar("T")


class NoPublicConstructor(type):
    """A metaclass whose classes are made only by ``cls._create(...)`` (as trio's ``Process``)."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"{cls.__name__} has no public constructor: use {getattr(cls, '_made_by', '_create')}"
        )

    def _create(cls: type[T], *args: Any, **kwargs: Any) -> T:
        return super().__call__(*args, **kwargs)  # type: ignore[misc]


class Running(metaclass=NoPublicConstructor):
    """Something started that ends with a :class:`Result`; see :mod:`asyncmagic.engine.running`."""

    command: str
    started_at: datetime
    pid: int | None
    """The pid of its (first) process."""
    _timeout: float | None
    _ended: Ended | None
    """Why we stopped it (the first reason given wins), None while it ends by itself."""
    _finished: asyncio.Future[Result]
    _timer: asyncio.TimerHandle | None
    _timed_out: asyncio.Future[Result] | None

    def __init__(self, command: str, *, started_at: datetime, timeout: float | None) -> None:
        self.command = command
        self.started_at = started_at
        self._timeout = timeout
        self._ended = None
        self._timer = None
        self._timed_out = None

    def _begin(self, finish: Coroutine[Any, Any, Result]) -> None:
        """Run ``finish`` (it waits for everything and builds the Result) and arm the timeout."""
        self._finished = asyncio.ensure_future(finish)
        if self._timeout is not None:
            self._timer = asyncio.get_running_loop().call_later(self._timeout, self._on_timeout)

    # -- the public lifecycle ------------------------------------------------------------

    def done(self) -> bool:
        return self._finished.done()

    @property
    def result(self) -> Result | None:
        """The Result once finished, else None."""
        return self._finished.result() if self._finished.done() else None

    def add_done_callback(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once it has finished."""
        self._finished.add_done_callback(lambda _: callback())

    async def wait(self) -> Result:
        """Wait for the end; cancelling the waiter does not stop it."""
        return await asyncio.shield(self._finished)

    async def stop(self, ended: Ended = "killed", *, grace: float | None = None) -> Result:
        """End the whole tree (SIGINT first when ``ended`` is "interrupted") and return the Result.

        The first reason given wins: what timed out stays "timeout" even if it is killed
        again while it is being stopped.
        """
        if not self._finished.done():
            self._begin_stop(ended, grace)
        return await self.wait()

    async def interrupt(self) -> Result:
        """Stop as the stop button does: SIGINT, then SIGTERM after the interrupt grace, then
        SIGKILL after the grace."""
        return await self.stop("interrupted")

    def stop_now(self, grace: float | None = None) -> None:
        """End the whole tree now, blocking (SIGTERM, the grace, SIGKILL), for synchronous
        code whose own loop cannot run meanwhile; the Result follows once the loop runs."""
        end_groups_now(self._ending_now(grace))

    @property
    def stdout(self) -> str:
        """Standard output received so far (head and tail past the capture limit)."""
        raise NotImplementedError

    @property
    def stderr(self) -> str:
        """Standard error received so far (head and tail past the capture limit)."""
        raise NotImplementedError

    def log_path(self) -> str:
        """A file holding all of the output shown, written as it arrived."""
        raise NotImplementedError

    async def send(self, data: str | bytes) -> None:
        """Write to its stdin and wait until it is taken; only a command started with
        ``stdin="pipe"`` has one to write to."""
        raise BrokenPipeError(f"a {type(self).__name__.lower()}'s stdin is not interactive")

    async def close_stdin(self) -> None:
        """Send end-of-file on its stdin."""
        raise BrokenPipeError(f"a {type(self).__name__.lower()}'s stdin is not interactive")

    # -- what each kind says ---------------------------------------------------------------

    def _begin_stop(self, ended: Ended, grace: float | None) -> None:
        """Start ending every part, without waiting; called again by a later stop."""
        raise NotImplementedError

    def _ending_now(self, grace: float | None) -> dict[int, float]:
        """Mark it stopped ("killed") and say which process groups to end, with which grace."""
        raise NotImplementedError

    def _on_timeout(self) -> None:
        self._timed_out = asyncio.ensure_future(self.stop("timeout"))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


async def run_to_end(running: Running) -> Result:
    """Wait for ``running``; a cancellation of the waiter interrupts the whole tree, waits
    for it to end, and then propagates."""
    result, cancelled = await wait_or_interrupt(running)
    if cancelled:
        raise asyncio.CancelledError
    return result


async def wait_or_interrupt(
    running: Running, on_interrupt: Callable[[], None] | None = None
) -> tuple[Result, bool]:
    """Wait for ``running``; if the waiting task is cancelled, interrupt the whole tree.

    The Result, and whether the wait was cancelled (for a caller that reports rather than
    propagates). Once the interrupt has begun it runs to its end, even through more
    cancellations (a stop during a stop): a half-stopped tree, or a caller that returns
    while its processes still run, is the outcome that must not happen. ``on_interrupt`` is
    called as the interrupt begins (a status line says "stopping…").
    """
    try:
        return await running.wait(), False
    except asyncio.CancelledError:
        if on_interrupt is not None:
            on_interrupt()
        return await through_cancellations(running.interrupt()), True


async def through_cancellations(stop: Awaitable[T]) -> T:
    """Await a stop to its end, even if the caller is cancelled again meanwhile."""
    stopping = asyncio.ensure_future(stop)
    while True:
        try:
            return await asyncio.shield(stopping)
        except asyncio.CancelledError:
            continue


def now() -> datetime:
    """The time stamps of Results: aware, UTC."""
    return datetime.now(timezone.utc)
