"""``%%arun --host``: the same cell on many machines over SSH, live and labelled, then a summary.

Each host runs the cell's script as a remote command (:mod:`asyncmagic.engine.remote`);
at most ``-j`` hosts at once, each line of output labelled ``[host]`` (with more than one
host, or ``--label``), a progress line above, and the table of ``--parallel`` at the end
(host, status, exit, duration, bytes out). A host that cannot be reached is that host's
failure; the others go on. The cell raises once, :class:`HostError`, if any host failed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from functools import partial
from typing import Any

from ..engine.fanout import start_fanout
from ..engine.flow import Flow
from ..engine.pump import OutputCallback
from ..engine.result import CommandError, Result
from ..engine.running import Running
from ..engine.stdin import byte_chunks
from .foreground import Launch, interrupted
from .options import RunSettings
from .parallel import HostError, run_parallel
from .policy import report_all, store_results


async def run_hosts_for_cell(
    command: str,
    settings: RunSettings,
    launcher: Callable[[str, RunSettings], Launch],
    namespace: dict[str, Any],
) -> list[Result]:
    """Run ``command`` on every host of ``settings``; store, then raise once for the failed."""
    hosts = settings.hosts
    started_at = datetime.now(timezone.utc)
    settings = await _input_for_every_host(settings)
    try:
        results = await run_parallel(
            hosts,
            _labels(settings),
            shown(settings),
            lambda host: launcher(host, settings),
            at_once=settings.host_jobs,
            what="host",
            summary=len(hosts) > 1,
            command=command,
        )
    except asyncio.CancelledError:
        raise CommandError(interrupted(command, started_at)) from None
    store_results(results, settings, namespace)
    if any(not r.ok for r in results):
        report_all(HostError(results), settings)
    return results


def start_hosts_job(
    command: str, settings: RunSettings, launcher: Callable[[str, RunSettings], Launch]
) -> Launch:
    """``--host --bg``: what starts one job of every host's command (a :class:`Fanout`)."""

    async def launch(on_output: OutputCallback | None, flow: Flow | None) -> Running:
        every = await _input_for_every_host(settings)
        return await start_fanout(
            command,
            every.hosts,
            [partial(launcher(host, every), flow=flow) for host in every.hosts],
            at_once=every.host_jobs,
            labels=_labels(every),
            on_output=on_output,
        )

    return launch


def shown(settings: RunSettings) -> RunSettings:
    """The settings a host cell's live output is made with: the host's label says where the
    line came from, and stderr stays stderr (no ``[err]`` on top)."""
    return replace(settings, label=False)


def _labels(settings: RunSettings) -> list[str] | None:
    """``[host] `` for each host, with more than one host or ``--label``."""
    if len(settings.hosts) > 1 or settings.label:
        return [f"[{host}] " for host in settings.hosts]
    return None


async def _input_for_every_host(settings: RunSettings) -> RunSettings:
    """An input that can be read once (an iterator, a file) is read here, and the same
    bytes go to every host."""
    source = settings.input
    if source is None or isinstance(source, (str, bytes)) or len(settings.hosts) == 1:
        return settings
    data = b"".join([chunk async for chunk in byte_chunks(source)])
    return replace(settings, input=data)
