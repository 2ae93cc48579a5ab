"""Where two stop paths meet, in the engine: failures during a start, stops during a stop,
errors inside a feeder. Each test names the issue-10 defect it guards against; each checks
that the call ends, says what happened, and leaves no process of its tree (by /proc)."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import sys
import time

import pytest
from kernelclient import found, none_left, processes_with, sleeping

import asyncmagic
from asyncmagic.engine import capture
from asyncmagic.engine.pipeline import Command, PyStage, run_pipeline, start_pipeline
from asyncmagic.engine.process import end_all_now, live_processes

BOUND = 10.0
"""Seconds any stop path may take here (grace 2 s + SIGKILL + a loaded 2-core machine)."""


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, BOUND))


def gone(marker: str, within: float = 5.0) -> bool:
    return none_left(processes_with, marker, within)


def raising_lines():
    yield "one\n"
    raise ValueError("source broke")


def wrong_type_lines():
    yield "one\n"
    yield 42


async def async_raising_lines():
    yield "one\n"
    raise ValueError("source broke")


@pytest.mark.parametrize("source", [raising_lines, wrong_type_lines, async_raising_lines])
def test_a_source_that_fails_ends_the_command_and_is_its_error(source, marker):
    # 2: the feeder awaited stop(), which waited for the feeder: it never ended.
    result = run(asyncmagic.run(f"cat; sleep {marker}", input=source()))
    assert not result.ok and result.ended == "killed"
    assert result.error is not None and result.error.startswith("input failed: ")
    assert result.error in result.summary()
    assert gone(marker)


def test_a_source_raising_systemexit_does_not_stop_the_loop(marker):
    def exits():
        yield "x"
        raise SystemExit(3)

    result = run(asyncmagic.run(f"cat; sleep {marker}", input=exits()))
    assert result.error == "input failed: SystemExit: 3"
    assert gone(marker)


def test_a_list_with_a_wrong_item_is_refused_before_anything_starts(marker):
    with pytest.raises(TypeError, match="item 1 is int"):
        run(asyncmagic.run(f"sleep {marker}", input=[3, 1, 2]))
    with pytest.raises(TypeError, match="item 2 is int"):
        run(run_pipeline([Command(("sleep", marker))], input=["a", 2]))
    assert not processes_with(marker)


def test_input_and_stdin_together_are_refused():
    # 7: anyio refuses them too; half-ignoring one is worse than an error.
    with pytest.raises(ValueError, match="not both"):
        run(asyncmagic.run("cat", input="x", stdin="pipe"))


@pytest.mark.parametrize("source", [raising_lines, async_raising_lines])
def test_a_pipeline_whose_input_failed_is_not_ok(source, marker, recwarn):
    # 3: it reported ok=True and the feeder's error was never retrieved.
    stages = [Command(("cat",)), Command(("sh", "-c", f"cat; sleep {marker}"))]
    result = run(run_pipeline(stages, input=source()))
    assert not result.ok
    assert result.error == "input failed: ValueError: source broke"
    assert gone(marker)


def test_cancelling_start_ends_the_process(marker):
    # 4: wait_for(start(), tiny) raised TimeoutError while the process ran on, unowned.
    async def main() -> None:
        for _ in range(20):
            try:
                proc = await asyncio.wait_for(asyncmagic.start(f"sleep {marker}"), 0.0001)
            except asyncio.TimeoutError:
                continue
            await proc.stop()

    run(main())
    assert gone(marker)
    assert not [p for p in live_processes() if marker in p.command]


def test_one_long_line_past_the_capture_limit_keeps_its_tail():
    # 6: the tail was dropped because it had to start on a whole line; "0 lines not shown".
    result = run(asyncmagic.run("head -c 4000 /dev/zero | tr '\\0' a >&2; printf END >&2", capture_limit=100))
    assert result.stderr.startswith("a" * 50)
    assert result.stderr.endswith("END")
    assert "0 lines" not in result.stderr and "not shown" in result.stderr


def boom(lines):
    raise RuntimeError("boom")


def test_a_stage_started_after_a_python_stage_failed_is_stopped(marker):
    # 1: the halt ran before the last stages started; the last one lived until it exited.
    stages = [
        Command(("bash", "-c", f"seq 1 3; exec sleep {marker}", "x")),
        PyStage(boom, "boom"),
        Command(("bash", "-c", f"cat; exec sleep {marker}", "y")),
    ]
    result = run(run_pipeline(stages))
    assert not result.ok and "boom" in result.stderr
    assert result.stages[1].returncode == 1
    assert gone(marker)


def test_a_stop_after_an_internal_stop_still_ends_every_stage(marker):
    # 1: a stop requested after the pipeline had stopped itself (_ended set) did nothing.
    def ignores_term_after_failing(lines):
        raise RuntimeError("early")

    async def main():
        stages = [
            Command(("bash", "-c", f"trap '' TERM INT; exec sleep {marker}")),
            PyStage(ignores_term_after_failing, "f"),
        ]
        pipe = await start_pipeline(stages, grace=0.2)
        return await pipe.interrupt()

    result = run(main())
    assert not result.ok
    assert gone(marker)


def forever(lines):
    while True:
        yield "x" * 100


def test_a_plain_generator_as_last_stage_ends_on_timeout():
    # 10: the pipeline waited for its reader without a bound; a thread wrote on forever.
    result = run(run_pipeline([PyStage(forever, "forever")], timeout=0.5, capture_limit=10_000))
    assert result.ended == "timeout"


def test_a_plain_generator_as_last_stage_ends_on_interrupt():
    async def main():
        pipe = await start_pipeline([PyStage(forever, "forever")], capture_limit=10_000)
        await asyncio.sleep(0.2)
        return await pipe.interrupt()

    assert run(main()).ended == "interrupted"


def test_a_pipe_held_outside_the_group_does_not_hold_the_pipeline(marker):
    # 10: `setsid sleep &` kept the last pipe open; the pipeline waited until it exited.
    t0 = time.monotonic()
    result = run(run_pipeline([Command(("bash", "-c", f"setsid sleep {marker} & echo started"))]))
    assert result.ok and result.stdout == "started\n"
    assert time.monotonic() - t0 < BOUND / 2
    for pid in processes_with(marker):  # it left our session on purpose: not ours to end
        os.kill(pid, signal.SIGKILL)


async def async_exits(lines):
    async for _ in lines:
        pass
    raise SystemExit(2)
    yield  # an async generator


async def async_interrupts(lines):
    raise KeyboardInterrupt
    yield


@pytest.mark.parametrize("func", [async_exits, async_interrupts])
def test_an_async_stage_raising_systemexit_is_that_stage_failing(func):
    # 11: it ended the whole process (here: the test's own event loop).
    result = run(run_pipeline([Command(("echo", "hi")), PyStage(func, "f")]))
    assert not result.ok
    assert result.stages[1].returncode == 1
    assert type(func).__name__ and ("SystemExit" in result.stderr or "KeyboardInterrupt" in result.stderr)


def test_ending_everything_at_once_takes_one_grace_not_one_each(marker):
    # 16: five jobs that ignore SIGTERM blocked unload 5 x grace.
    async def main():
        return [await asyncmagic.start(f"trap '' TERM; exec sleep {marker}", grace=1.0) for _ in range(5)]

    loop = asyncio.new_event_loop()
    try:
        procs = loop.run_until_complete(main())
        t0 = time.monotonic()
        end_all_now()
        took = time.monotonic() - t0
        results = loop.run_until_complete(_wait_all(procs))
    finally:
        loop.close()
    assert all(r.ended == "killed" for r in results)
    assert took < 4.0, f"{took:.1f} s for 5 groups of 1 s grace"  # 5 in a row would be >= 5 s
    assert gone(marker)


async def _wait_all(procs):
    return [await p.wait() for p in procs]


def test_writing_to_a_fifo_with_no_reader_leaves_the_loop_free(tmp_path):
    # 17: a blocking open() on the loop thread froze everything.
    fifo = tmp_path / "f"
    os.mkfifo(fifo)

    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        t = asyncio.ensure_future(ticker())
        started = asyncio.ensure_future(start_pipeline([Command(("echo", "hi"))], stdout_path=fifo))
        await asyncio.sleep(0.3)
        assert not started.done() and ticks > 5  # waiting for a reader, loop free
        reader = await asyncio.to_thread(os.open, fifo, os.O_RDONLY)
        pipe = await started
        result = await pipe.wait()
        data = os.read(reader, 100)
        os.close(reader)
        t.cancel()
        return result, data

    result, data = run(main())
    assert result.ok and data == b"hi\n"


def test_a_script_over_128_kib_runs(marker):
    # 18: E2BIG, the script was one argv string.
    script = "x=0\n" + "x=$((x+1))\n" * 20_000 + "echo $x\n"
    assert len(script) > 200_000
    result = run(asyncmagic.run(script))
    assert result.ok and result.stdout == "20000\n"


def test_logs_are_private_and_a_planted_symlink_is_not_followed(tmp_path, monkeypatch):
    # 19: /tmp/asyncmagic-PID was 0755, logs 0644, and a planted 1.log symlink was followed.
    result = run(asyncmagic.run("head -c 2000000 /dev/zero"))
    assert result.log_path is not None
    folder = os.path.dirname(result.log_path)
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(result.log_path).st_mode) == 0o600
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    planted = os.path.join(folder, f"{capture._counter + 1}.log")
    os.symlink(victim, planted)
    again = run(asyncmagic.run("head -c 2000000 /dev/zero"))
    assert victim.read_text() == "keep me"
    assert again.log_path != planted and os.path.getsize(again.log_path) == 2_000_000
    assert not os.path.islink(again.log_path)
    os.unlink(planted)


WATCHED = """
import asyncio, multiprocessing, os, sys, time
import asyncmagic
async def main():
    proc = await asyncmagic.start("exec sleep {marker}")
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=time.sleep, args=(60,), daemon=False)
    child.start()
    print(proc.pid, child.pid, flush=True)
    await asyncio.sleep(600)
asyncio.run(main())
"""


def _owner(script: str, marker: str) -> subprocess.Popen:
    """A Python process that runs ``script`` (formatted with ``marker``), its stdout a pipe."""
    return subprocess.Popen(
        [sys.executable, "-c", script.format(marker=marker)], stdout=subprocess.PIPE, text=True
    )


def _kill(owner: subprocess.Popen) -> None:
    """SIGKILL the owner, as a kernel dies, and reap it."""
    owner.kill()
    owner.wait()


def test_the_watchdog_sees_a_killed_owner_while_a_forked_child_lives(marker):
    # 15: fork copied the watchdog pipe's write end, so no end-of-file came.
    owner = _owner(WATCHED, marker)
    try:
        _, forked = map(int, owner.stdout.readline().split())
        assert found(sleeping, marker)  # its shell execs sleep after start() returned (once in ten)
        _kill(owner)
        assert none_left(sleeping, marker, within=BOUND), "the watchdog did not end the group"
    finally:
        owner.kill()
        try:
            os.kill(forked, signal.SIGKILL)
        except (ProcessLookupError, UnboundLocalError):
            pass


AFTER_A_DEAD_WATCHDOG = """
import asyncio, os, signal, time
from asyncmagic import run, start
from asyncmagic.engine import watchdog
asyncio.run(run("true"))  # the first command starts the watchdog
first = watchdog._proc
os.kill(first.pid, signal.SIGKILL)
first.wait()
async def main():
    proc = await start(["sleep", "{marker}"])
    print(first.pid, watchdog._proc.pid, flush=True)
    time.sleep(600)  # killed here, the group registered with the new watchdog only
asyncio.run(main())
"""


def test_a_watchdog_that_died_is_started_again_and_told_of_the_next_command(marker):
    """A dead watchdog is noticed when a line to it cannot be written; the new one is told
    that line, and ends the command when its owner dies."""
    owner = _owner(AFTER_A_DEAD_WATCHDOG, marker)
    try:
        first, second = map(int, owner.stdout.readline().split())
        assert first != second
        assert found(sleeping, marker)
        _kill(owner)
        assert none_left(sleeping, marker, within=BOUND), "the new watchdog did not end the command"
    finally:
        owner.kill()


UNREGISTERED = """
import os, subprocess, sys, time
from asyncmagic.engine import watchdog
token = watchdog.expect_spawn()
child = subprocess.Popen(
    ["sleep", "{marker}"], start_new_session=True, env={{**os.environ, watchdog.SPAWN_VARIABLE: token}}
)
print(child.pid, flush=True)
time.sleep(600)  # killed here: its spawn announced, its group never registered
"""


def test_the_watchdog_ends_a_child_whose_owner_died_before_registering_it(marker):
    """A kernel SIGKILLed between a child's exec and the registration of its group left the
    child running (seen once in four runs of the kernel-end matrix)."""
    owner = _owner(UNREGISTERED, marker)
    try:
        owner.stdout.readline()
        # vfork lets the owner go on once the old memory is released, before the kernel
        # has written the new command line: /proc shows it a moment later
        assert found(sleeping, marker)
        _kill(owner)
        assert none_left(sleeping, marker, within=BOUND), "the watchdog did not end the child"
    finally:
        owner.kill()


def test_a_dying_owners_watchdog_ends_its_own_unregistered_child_only(marker):
    """Spawn tokens were counters, the same in every kernel: a kernel SIGKILLed with spawn
    "1" pending had its watchdog end every session leader holding token "1", another
    kernel's children too (a child keeps its environment for life)."""
    other = f"{marker}1"
    owners = [_owner(UNREGISTERED, m) for m in (marker, other)]
    try:
        for owner in owners:
            owner.stdout.readline()
        assert found(sleeping, marker) and found(sleeping, other)
        _kill(owners[0])
        assert none_left(sleeping, marker, within=BOUND), "the watchdog did not end its child"
        assert sleeping(other), "a dying owner's watchdog ended another owner's child"
    finally:
        for owner in owners:
            owner.kill()
    assert none_left(sleeping, other, within=BOUND)


@pytest.mark.parametrize("first_cancel_after", [0.0, 0.05], ids=["during-start", "after-start"])
def test_a_second_cancel_during_the_interrupt_waits_for_the_tree(marker, first_cancel_after):
    # A stop during a stop: run() returned (cancelled) while the tree was still stopping.
    async def main():
        task = asyncio.ensure_future(
            asyncmagic.run(f"trap '' INT TERM; exec sleep {marker}", grace=0.5, shell="bash")
        )
        while not sleeping(marker):
            await asyncio.sleep(0.001)
        await asyncio.sleep(first_cancel_after)
        task.cancel()
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return bool(sleeping(marker))

    assert run(main()) is False
