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
from typing import Any

from ..engine.result import CommandError, Result
from ..engine.stdin import byte_chunks
from .foreground import Launch, interrupted
from .options import RunSettings
from .parallel import ParallelError, run_parallel
from .policy import report_all, store_results


class HostError(ParallelError):
    """Some hosts failed; ``results`` holds every host's Result (each with ``.host``), in order."""

    noun = "hosts"


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
    labelled = len(hosts) > 1 or settings.label
    shown = replace(settings, label=False)  # the host's label says where; stderr stays stderr
    try:
        results = await run_parallel(
            hosts,
            [f"[{host}] " for host in hosts] if labelled else None,
            shown,
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
        report_all(HostError(results, [f"{r.host}:" for r in results]), settings)
    return results


async def _input_for_every_host(settings: RunSettings) -> RunSettings:
    """An input that can be read once (an iterator, a file) is read here, and the same
    bytes go to every host."""
    source = settings.input
    if source is None or isinstance(source, (str, bytes)) or len(settings.hosts) == 1:
        return settings
    data = b"".join([chunk async for chunk in byte_chunks(source)])
    return replace(settings, input=data)
