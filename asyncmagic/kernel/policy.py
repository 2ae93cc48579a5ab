"""What a cell does with a Result, in one place: which variables get the captures, and
whether a failure raises :class:`CommandError` or is said in one line (``--no-raise``)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ..engine.result import CommandError, Result
from .options import RunSettings


def name_the_source(result: Result, settings: RunSettings) -> Result:
    """Say which option an input error came from: ``--stdin nums: input failed: ...``."""
    if result.error is None or settings.input_name is None:
        return result
    return replace(result, error=f"{settings.input_name}: {result.error}")


def store(
    namespace: dict[str, Any],
    settings: RunSettings,
    *,
    stdout: str | None = None,
    stderr: str | None = None,
    result: object = None,
) -> None:
    """Put what is given into the variables the options name: the captures (``--out``,
    ``--err``) and the Result, or what stands for it (``-r``: a job's Job, the list of a
    ``--parallel`` cell's Results)."""
    for name, value in ((settings.out, stdout), (settings.err, stderr), (settings.result, result)):
        if name and value is not None:
            namespace[name] = value


def store_result(result: Result, settings: RunSettings, namespace: dict[str, Any]) -> None:
    store(namespace, settings, stdout=result.stdout, stderr=result.stderr, result=result)


def store_results(results: Sequence[Result], settings: RunSettings, namespace: dict[str, Any]) -> None:
    """``--parallel``: the captures of every line, joined in line order, and the list of Results."""
    stdout, stderr = "".join(r.stdout for r in results), "".join(r.stderr for r in results)
    store(namespace, settings, stdout=stdout, stderr=stderr, result=list(results))


def report(result: Result, settings: RunSettings) -> None:
    """Raise CommandError for a failure, or with ``--no-raise`` print its one line; an
    interrupt raises either way: the person asked everything to stop."""
    if result.ok:
        return
    if settings.raise_on_error or result.ended == "interrupted":
        raise CommandError(result)
    print(result.summary(), file=sys.stderr, flush=True)


def report_all(error: CommandError, settings: RunSettings) -> None:
    """Raise ``error`` (several failed), or with ``--no-raise`` print it."""
    if settings.raise_on_error:
        raise error
    print(error, file=sys.stderr)


def report_job(result: Result, settings: RunSettings | None) -> None:
    """After a wait for a job: raise for a failure, unless ``--no-raise``. A job killed on
    request is not a failure to report (someone asked for it); one whose input failed was
    ended by that failure, which is."""
    if result.ok or (settings is not None and not settings.raise_on_error):
        return
    if result.ended != "killed" or result.error is not None:
        raise CommandError(result if settings is None else name_the_source(result, settings))


def first_of(failed: Sequence[CommandError]) -> CommandError:
    """One error for several jobs that failed: the one, or a CommandError of the first."""
    return failed[0] if len(failed) == 1 else CommandError(failed[0].result)
