"""Pipelines: the engine alone, and the line syntax."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest
from kernelclient import processes_with, sleeping

from asyncmagic.engine.pipeline import Command, PyStage, run_pipeline, start_pipeline


def C(*argv: str) -> Command:
    return Command(tuple(argv))


def arun(coro):
    return asyncio.run(coro)


def keep_odd(lines):
    for line in lines:
        if int(line) % 2:
            yield line


async def shout(lines):
    async for line in lines:
        yield line.upper()


def test_multi_stage_result_and_stage_status():
    r = arun(run_pipeline([C("printf", "b\\na\\nb\\nc\\n"), C("sort"), C("uniq", "-c"), C("sort", "-rn")]))
    assert r.ok and r.lines[0].split() == ["2", "b"]
    assert [s.command for s in r.stages] == ["printf b\\na\\nb\\nc\\n", "sort", "uniq -c", "sort -rn"]
    assert all(s.ended == "exit" and s.returncode == 0 and isinstance(s.pid, int) for s in r.stages)
    assert len({s.pid for s in r.stages}) == 4


def test_pipefail_reports_the_failing_stage():
    r = arun(run_pipeline([C("sh", "-c", "echo oops >&2; exit 3"), C("cat")]))
    assert not r.ok and r.returncode == 3 and r.ended == "exit"
    assert r.stderr == "[1 sh] oops\n"
    assert [s.returncode for s in r.stages] == [3, 0]


def test_sigpipe_from_an_early_reader_is_not_a_failure():
    r = arun(run_pipeline([C("yes"), C("head", "-n", "3")]))
    assert r.ok and r.stdout == "y\ny\ny\n"
    assert r.stages[0].returncode == -signal.SIGPIPE


def test_stderr_lines_are_labelled_per_stage_as_they_stream():
    seen: list[tuple[str, str]] = []
    script = "printf 'one\\ntw'; sleep 0.1; printf 'o\\n'; echo out"
    arun(
        run_pipeline(
            [C("sh", "-c", f"({script}) >&2; echo data"), C("cat")],
            on_output=lambda s, t: seen.append((s, t)),
        )
    )
    errs = [text for stream, text in seen if stream == "stderr"]
    assert errs[0] == "[1 sh] one\n"  # shown before the rest of the line arrived
    assert "".join(errs) == "[1 sh] one\n[1 sh] two\n[1 sh] out\n"
    assert ("stdout", "data\n") in seen


def test_data_between_processes_never_passes_through_python():
    got: list[str] = []
    r = arun(
        run_pipeline(
            [C("head", "-c", "20000000", "/dev/zero"), C("tr", "\\0", "a"), C("wc", "-c")],
            on_output=lambda s, t: got.append(t),
        )
    )
    assert r.stdout.strip() == "20000000" and got == [r.stdout]


def test_sync_and_async_python_stages():
    r = arun(
        run_pipeline(
            [
                C("seq", "1", "10"),
                PyStage(keep_odd, "keep_odd"),
                PyStage(shout, "shout"),
                C("head", "-n", "3"),
            ]
        )
    )
    assert r.ok and r.stdout == "1\n3\n5\n"
    r = arun(run_pipeline([PyStage(shout, "shout"), C("cat")], input=["x", "y"]))
    assert r.stdout == "X\nY\n"


def test_python_stage_as_last_stage_and_on_huge_lines():
    r = arun(
        run_pipeline(
            [
                C("sh", "-c", "head -c 300000 /dev/zero | tr '\\0' z; echo; echo short"),
                PyStage(lambda lines: (len(line) for line in lines), "lens"),
            ]
        )
    )
    assert r.stdout == "300000\n5\n"


def test_raising_python_stage_ends_the_pipeline_and_shows_its_error(marker):
    def boom(lines):
        for line in lines:
            raise ValueError(f"bad line {line}")

    t0 = time.monotonic()
    r = arun(run_pipeline([C("sh", "-c", f"echo 1; sleep {marker}"), PyStage(boom, "boom"), C("cat")]))
    assert not r.ok and r.returncode == 1 and r.ended == "exit"
    assert "[2 py:boom] ValueError: bad line 1" in r.stderr
    assert sleeping(marker) == [] and time.monotonic() - t0 < 10


def test_input_feeds_the_first_stage():
    assert arun(run_pipeline([C("tr", "a-z", "A-Z")], input="hi\n")).stdout == "HI\n"
    assert arun(run_pipeline([C("cat")], input=(str(i) for i in range(3)))).stdout == "0\n1\n2\n"


def test_redirections(tmp_path: Path):
    src, dst = tmp_path / "in.txt", tmp_path / "out.txt"
    src.write_text("b\na\n")
    r = arun(run_pipeline([C("sort")], stdin_path=src, stdout_path=dst))
    assert r.ok and r.stdout == "" and dst.read_text() == "a\nb\n"
    arun(run_pipeline([C("echo", "c")], stdout_path=dst, append=True))
    assert dst.read_text() == "a\nb\nc\n"


def test_timeout_ends_every_stage_and_their_children(marker):
    r = arun(
        run_pipeline([C("sh", "-c", f"sleep {marker} & sleep {marker}"), C("cat"), C("cat")], timeout=0.3)
    )
    assert r.ended == "timeout" and not r.ok
    assert all(s.ended == "timeout" for s in r.stages)
    assert processes_with(marker) == []


def test_cancel_interrupts_every_stage(marker):
    async def main():
        task = asyncio.ensure_future(run_pipeline([C("sleep", marker), C("cat")]))
        while not sleeping(marker):
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    arun(main())
    assert processes_with(marker) == []


def test_a_stage_that_cannot_start_ends_the_started_ones(marker):
    async def main():
        with pytest.raises(FileNotFoundError):
            await start_pipeline([C("sleep", marker), C("/no/such/program")])

    arun(main())
    assert processes_with(marker) == []


def test_no_fd_leak_after_300_pipelines():
    async def main():
        for _ in range(300):
            await run_pipeline([C("echo", "x"), PyStage(lambda lines: lines, "same"), C("cat")])

    before = len(os.listdir("/proc/self/fd"))
    arun(main())
    assert len(os.listdir("/proc/self/fd")) == before


# -- the line --------------------------------------------------------------------------
