"""Many commands as one :class:`Running`: the same script on many hosts, one lifecycle.

A background job holds one Running; a ``--host --bg`` cell's job is a :class:`Fanout` of
every host's command. Stopping it stops every part with the same reason (the parts not
started yet are not started); its Result has each part's Result in ``stages``, in the
order the parts were given.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from .pump import OutputCallback
from .result import Ended, Result
from .running import Running, now
from .ssh import ConnectError
from .text import Labeller

Starter = Callable[[OutputCallback | None], Awaitable[Running]]
"""Starts one part given where its output goes."""


class Fanout(Running):
    """Parts started at most ``at_once`` at a time, each one's output labelled (no public constructor)."""

    _made_by = "asyncmagic.engine.fanout.start_fanout()"
    names: tuple[str, ...]
    """What sets each part apart (its host), in order."""
    _starters: Sequence[Starter]
    _labels: Sequence[str] | None
    _on_output: OutputCallback | None
    _gate: asyncio.Semaphore
    _parts: dict[int, Running]
    _stop_grace: float | None
    _stops: list[asyncio.Task[Result]]

    def __init__(
        self,
        command: str,
        names: Sequence[str],
        starters: Sequence[Starter],
        *,
        at_once: int,
        labels: Sequence[str] | None,
        on_output: OutputCallback | None,
    ) -> None:
        super().__init__(command, started_at=now(), timeout=None)
        self.pid = None
        self.names = tuple(names)
        self._starters, self._labels, self._on_output = starters, labels, on_output
        self._gate = asyncio.Semaphore(at_once)
        self._parts = {}
        self._stop_grace = None
        self._stops = []
        self._begin(self._finish())

    @property
    def stdout(self) -> str:
        return "".join(part.stdout for part in self._live_or_done())

    @property
    def stderr(self) -> str:
        return "".join(part.stderr for part in self._live_or_done())

    def log_path(self) -> str:
        """The first part's log (each part's Result in ``stages`` names its own)."""
        parts = self._live_or_done()
        return parts[0].log_path() if parts else ""

    def _live_or_done(self) -> list[Running]:
        return [self._parts[i] for i in sorted(self._parts)]

    # -- the lifecycle ---------------------------------------------------------------------

    def _begin_stop(self, ended: Ended, grace: float | None) -> None:
        if self._ended is None and not self._finished.done():
            self._ended, self._stop_grace = ended, grace
            for part in self._parts.values():
                self._stops.append(asyncio.ensure_future(part.stop(ended, grace=grace)))

    def _ending_now(self, grace: float | None) -> dict[int, float]:
        if self._ended is None:
            self._ended, self._stop_grace = "killed", grace
        groups: dict[int, float] = {}
        for part in self._parts.values():
            groups.update(part._ending_now(grace))
        return groups

    async def _one(self, index: int) -> Result:
        async with self._gate:
            started_at = now()
            if self._ended is not None:
                return _not_started(self.command, self._ended, started_at, self.names[index])
            sink = self._on_output
            if sink is not None and self._labels is not None:
                sink = Labeller(sink, dict.fromkeys(("stdout", "stderr"), self._labels[index]))
            try:
                part = await self._starters[index](sink)
            except (ConnectError, OSError, ValueError) as exc:
                result = start_failed(self.command, exc, started_at, self.names[index])
                if sink is not None:
                    sink("stderr", f"{result.describe()}\n")
                return result
            self._parts[index] = part
            if self._ended is not None:  # stopped while this part started
                self._stops.append(asyncio.ensure_future(part.stop(self._ended, grace=self._stop_grace)))
            try:
                return await part.wait()
            finally:
                if isinstance(sink, Labeller):
                    sink.close()

    async def _finish(self) -> Result:
        results = await asyncio.gather(*(self._one(i) for i in range(len(self._starters))))
        if self._stops:
            await asyncio.wait(self._stops)
        failed = [r for r in results if not r.ok]
        return Result(
            command=self.command,
            returncode=(failed[0].returncode or 1) if failed else 0,
            stdout="".join(r.stdout for r in results),
            stderr="".join(r.stderr for r in results),
            started_at=self.started_at,
            finished_at=now(),
            ended=self._ended or "exit",
            stages=tuple(results),
            error=f"{len(failed)} of {len(results)} failed" if failed and self._ended is None else None,
        )


async def start_fanout(
    command: str,
    names: Sequence[str],
    starters: Sequence[Starter],
    *,
    at_once: int,
    labels: Sequence[str] | None = None,
    on_output: OutputCallback | None = None,
) -> Fanout:
    """Start every part of ``command`` (``starters[i]`` starts the one named ``names[i]``),
    at most ``at_once`` together; a part that cannot start is that part's failed Result."""
    if len(names) != len(starters) or not names:
        raise ValueError("a fan-out needs one name per starter, and at least one")
    if at_once < 1:
        raise ValueError(f"at_once must be 1 or more, not {at_once}")
    return Fanout._create(command, names, starters, at_once=at_once, labels=labels, on_output=on_output)


def start_failed(command: str, exc: BaseException, started_at: datetime, name: str) -> Result:
    """The Result of a part that could not start (its host could not be reached): it never ran."""
    cause = (
        exc.cause if isinstance(exc, ConnectError) else str(exc).splitlines()[0] if str(exc) else repr(exc)
    )
    return Result(
        command=command,
        returncode=255,
        stdout="",
        stderr="",
        started_at=started_at,
        finished_at=now(),
        error=cause,
        host=name,
    )


def _not_started(command: str, ended: Ended, started_at: datetime, name: str) -> Result:
    return Result(
        command=command,
        returncode=-signal.SIGKILL,
        stdout="",
        stderr="",
        started_at=started_at,
        finished_at=now(),
        ended=ended,
        host=name,
    )
