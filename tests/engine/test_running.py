"""The one lifecycle: what a Process and a Pipeline share, how they are made, and that a
start which fails half-way leaves nothing behind (no process, no fd, no watchdog entry)."""

from __future__ import annotations

import asyncio
import os

import pytest
from kernelclient import processes_with

import asyncmagic
from asyncmagic import Command, Pipeline, Process, PyStage
from asyncmagic.engine import process as process_module
from asyncmagic.engine.running import Running


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize(
    ("cls", "start"), [(Process, "asyncmagic.start()"), (Pipeline, "asyncmagic.start_pipeline()")]
)
def test_there_is_no_public_constructor_and_the_error_names_the_start_function(cls, start):
    with pytest.raises(TypeError) as raised:
        cls()
    assert str(raised.value) == f"{cls.__name__} has no public constructor: use {start}"
    assert issubclass(cls, Running)


def test_a_process_and_a_pipeline_have_the_same_lifecycle(marker):
    async def main() -> None:
        proc = await asyncmagic.start(["sleep", marker])
        pipe = await asyncmagic.start_pipeline([Command(("sleep", marker)), Command(("cat",))])
        for running in (proc, pipe):
            assert not running.done() and running.result is None
            ended: list[bool] = []
            running.add_done_callback(lambda ended=ended: ended.append(True))
            result = await running.stop()
            assert running.done() and running.result is result and ended == [True]
            assert result.ended == "killed"
            assert await running.stop("timeout") is result  # the first reason stays

    asyncio.run(main())
    assert processes_with(marker) == []


@pytest.mark.parametrize(
    "start",
    [
        lambda: asyncmagic.start(["/no/such/program"]),
        lambda: asyncmagic.start(["/no/such/program"], pty=True),
        lambda: asyncmagic.start("x" * 100_000, shell="/no/such/shell"),  # a long script: an fd of its own
        lambda: asyncmagic.start_pipeline([Command(("cat",)), Command(("/no/such/program",))], input=["a"]),
        lambda: asyncmagic.start_pipeline(
            [PyStage(lambda lines: lines, "same"), Command(("/no/such/program",))]
        ),
    ],
    ids=["command", "pty", "long-script", "fed-pipeline", "python-stage-first"],
)
def test_a_start_that_fails_leaves_no_fd_and_no_process(start):
    async def main() -> None:
        for _ in range(20):
            with pytest.raises(FileNotFoundError):
                await start()
        await asyncio.sleep(0)  # a cancelled Python stage's task runs its cleanup

    before, live = fds(), set(process_module.live_processes())
    asyncio.run(main())
    assert fds() <= before  # none left open (an earlier test's may close meanwhile)
    assert set(process_module.live_processes()) <= live  # what other tests left is theirs
