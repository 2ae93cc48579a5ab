"""The engine alone: plain asyncio, no IPython."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from kernelclient import processes_with, sleeping

from asyncmagic import run, start

PY = sys.executable


def arun(coro):
    return asyncio.run(coro)


def test_exit_zero_stays_zero():
    r = arun(run("true"))
    assert r.returncode == 0 and r.ok and r.ended == "exit"


def test_exit_status_and_fields():
    r = arun(run("echo out; echo err >&2; exit 3"))
    assert (r.returncode, r.ended, r.ok) == (3, "exit", False)
    assert (r.stdout, r.stderr) == ("out\n", "err\n")
    assert r.started_at <= r.finished_at and r.duration >= 0
    assert str(r) == "out\n" and r.lines == ["out"]
    assert r.describe() == "exit 3"


def test_signal_death_is_negative_and_ended_signal():
    r = arun(run("kill -KILL $$"))
    assert (r.returncode, r.ended) == (-signal.SIGKILL, "signal")
    assert "SIGKILL" in r.summary()


def test_missing_command_is_127_with_message():
    r = arun(run("no_such_command_xyz"))
    assert r.returncode == 127
    assert "no_such_command_xyz" in r.stderr and "not found" in r.stderr
    assert "command not found" in r.describe()


def test_output_callback_sees_both_streams_in_arrival_order():
    seen: list[tuple[str, str]] = []
    script = "echo o1; sleep 0.1; echo e1 >&2; sleep 0.1; echo o2"
    arun(run(script, on_output=lambda s, t: seen.append((s, t))))
    assert seen == [("stdout", "o1\n"), ("stderr", "e1\n"), ("stdout", "o2\n")]


def test_split_utf8_character_is_decoded_whole():
    # The euro sign's three bytes arrive in two reads.
    code = (
        "import sys,time; b=sys.stdout.buffer; b.write(b'x\\xe2\\x82'); b.flush(); "
        "time.sleep(0.2); b.write(b'\\xac y\\n')"
    )
    chunks: list[str] = []
    r = arun(run([PY, "-c", code], on_output=lambda s, t: chunks.append(t)))
    assert r.stdout == "x€ y\n"
    assert len(chunks) >= 2, "the test needs the character split across reads"


def test_invalid_utf8_becomes_replacement_and_nothing_is_lost():
    r = arun(run("printf 'a\\xffb\\xc3\\n'; head -c 100000 /dev/zero | tr '\\0' z; echo end"))
    assert r.stdout.startswith("a\ufffdb\ufffd\n")
    assert r.stdout.endswith("z" * 100000 + "end\n")


def test_megabyte_line_without_newline_arrives_whole():
    r = arun(run("head -c 1048576 /dev/zero | tr '\\0' x"))
    assert r.stdout == "x" * 1048576


def test_carriage_return_flood_past_64k():
    r = arun(run([PY, "-c", "import sys\nfor i in range(20000): sys.stdout.write(f'\\r{i:8d}')"]))
    assert len(r.stdout) == 20000 * 9 and r.stdout.endswith("\r   19999")


@pytest.mark.parametrize("capture", [True, False])
def test_large_output_on_both_streams_does_not_deadlock(capture):
    got = {"stdout": 0, "stderr": 0}

    def count(stream: str, text: str) -> None:
        got[stream] += len(text)

    script = "head -c 30000000 /dev/zero | tr '\\0' o & head -c 30000000 /dev/zero | tr '\\0' e >&2; wait"
    r = arun(run(script, on_output=count, timeout=60))
    assert r.ok and got == {"stdout": 30000000, "stderr": 30000000}


def test_input_and_output_both_large_do_not_deadlock():
    data = b"y" * 10_000_000
    r = arun(run("cat", input=data, timeout=60))
    assert r.ok and len(r.stdout) == len(data)


def test_stdin_is_devnull_without_input():
    r = arun(run("cat; echo after", timeout=10))
    assert r.ok and r.stdout == "after\n"


def test_script_is_an_argument_so_a_reader_cannot_swallow_the_rest():
    r = arun(run("cat\necho second line ran", input="fed\n"))
    assert r.stdout == "fed\nsecond line ran\n"


@pytest.mark.parametrize(
    "source",
    [
        "a\nb\n",
        b"a\nb\n",
        ["a", "b"],
        [b"a\n", b"b"],
        (line for line in ["a", "b"]),
        io.StringIO("a\nb\n"),
        io.BytesIO(b"a\nb\n"),
    ],
    ids=["str", "bytes", "str-lines", "bytes-lines", "generator", "text-file", "binary-file"],
)
def test_input_sources(source):
    assert arun(run("cat", input=source)).stdout == "a\nb\n"


def test_input_from_path_and_async_iterable(tmp_path: Path):
    path = tmp_path / "in.txt"
    path.write_text("from a file\n")
    assert arun(run("cat", input=path)).stdout == "from a file\n"

    async def lines():
        for word in ("x", "y"):
            await asyncio.sleep(0)
            yield word

    assert arun(run("cat", input=lines())).stdout == "x\ny\n"


def test_child_that_ignores_its_input_is_not_an_error():
    r = arun(run("exit 0", input=b"z" * 5_000_000))
    assert r.ok


def test_bad_input_type_is_refused_before_start():
    with pytest.raises(TypeError, match="cannot use int as input"):
        arun(run("cat", input=42))


def test_python_children_are_unbuffered_unless_set():
    code = "import os; print(os.environ.get('PYTHONUNBUFFERED'))"
    assert arun(run([PY, "-c", code])).stdout == "1\n"
    assert arun(run([PY, "-c", code], env={"PYTHONUNBUFFERED": ""})).stdout == "\n"


def test_env_and_cwd(tmp_path: Path):
    r = arun(run("echo $GREETING; pwd", env={"GREETING": "hello"}, cwd=tmp_path))
    assert r.stdout == f"hello\n{tmp_path}\n"


def test_timeout_ends_the_whole_tree(marker):
    t0 = time.monotonic()
    r = arun(run(f"sleep {marker} & sleep {marker}; echo never", timeout=0.5))
    assert r.ended == "timeout" and not r.ok and r.timeout == 0.5
    assert r.returncode == -signal.SIGTERM
    assert "timed out after 0.5 s" in r.summary()
    assert processes_with(marker) == []
    assert time.monotonic() - t0 < 10


def test_timeout_escalates_to_kill_after_grace(marker):
    r = arun(run(f"trap '' TERM INT; sleep {marker} & sleep {marker}", timeout=0.3, grace=0.3))
    assert r.ended == "timeout" and r.returncode == -signal.SIGKILL
    assert processes_with(marker) == []


def test_cancelling_run_interrupts_with_sigint_first(marker):
    async def main():
        task = asyncio.ensure_future(
            run(f"trap 'echo got INT; exit 5' INT; echo ready; sleep {marker} & wait")
        )
        while not sleeping(marker):
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    arun(main())
    assert processes_with(marker) == []


def test_interrupt_reports_interrupted_and_output(marker):
    async def main():
        proc = await start(f"trap 'echo got INT; exit 5' INT; sleep {marker} & wait")
        while not sleeping(marker):
            await asyncio.sleep(0.01)
        return await proc.interrupt()

    r = arun(main())
    assert r.ended == "interrupted" and "got INT" in r.stdout
    assert processes_with(marker) == []


def test_background_leftovers_end_with_the_command(marker):
    t0 = time.monotonic()
    r = arun(run(f"sleep {marker} & echo done"))
    assert r.ok and r.stdout == "done\n"
    assert processes_with(marker) == []
    assert time.monotonic() - t0 < 5


def test_stop_is_killed_and_first_reason_wins(marker):
    async def main():
        proc = await start(f"sleep {marker}", timeout=0.2)
        r1 = await proc.wait()
        r2 = await proc.stop()
        return r1, r2

    r1, r2 = arun(main())
    assert r1.ended == r2.ended == "timeout"

    async def kill():
        proc = await start(f"sleep {marker}")
        return await proc.stop("killed")

    assert arun(kill()).ended == "killed"


def test_bad_values_are_refused():
    with pytest.raises(ValueError, match="timeout must be positive"):
        arun(run("true", timeout=-1))
    with pytest.raises(ValueError, match="grace"):
        arun(run("true", grace=-1))
    with pytest.raises(FileNotFoundError):
        arun(run("true", shell="/no/such/shell"))


def test_many_runs_leak_no_fds():
    async def main():
        for _ in range(200):
            await run("true", input="x")

    before = len(os.listdir("/proc/self/fd"))
    arun(main())
    assert len(os.listdir("/proc/self/fd")) == before


def test_a_paused_flow_holds_the_command_back_until_resumed():
    from asyncmagic.engine.flow import Flow

    async def main():
        flow = Flow()
        flow.pause()
        proc = await start(f"{PY} -c \"print('z' * 999, end='')\" ; head -c 3000000 /dev/zero", flow=flow)
        with pytest.raises(TimeoutError):  # the pipe is full and not read: the writer blocks
            await asyncio.wait_for(asyncio.shield(proc.wait()), 0.5)
        assert not proc.done() and proc._transport.get_returncode() is None
        flow.resume()
        result = await proc.wait()
        assert len(result.stdout) == 999 + 3_000_000

    arun(main())


def test_an_output_pipe_holds_most_of_a_megabyte_unread():
    """Reads of a flood come in pieces of up to 1 MiB (a sixteenth of the loop's turns):
    the pipe holds that much, so a writer of 900 kB is not held back while nobody reads."""
    from asyncmagic.engine.flow import Flow

    async def main():
        flow = Flow()
        flow.pause()
        proc = await start("head -c 900000 /dev/zero", flow=flow)
        deadline = time.monotonic() + 20
        while proc._transport.get_returncode() is None:  # it exited, its output unread
            assert time.monotonic() < deadline, "the writer was held back by a small pipe"
            await asyncio.sleep(0.01)
        pieces = []
        proc._pump._on_output = lambda stream, text: pieces.append(len(text))
        flow.resume()
        result = await proc.wait()
        assert len(result.stdout) == 900_000 and max(pieces) > 64 * 1024

    arun(main())


TICKS = "import sys, time\nfor i in range(40):\n    print(i, flush=True); time.sleep(0.005)\n"


def test_a_trickle_is_read_a_few_lines_at_a_time():
    """A line every 5 ms is not a read (and a loop turn) each: a steady trickle is left to
    gather between reads. Without it an idle machine reads 40 lines 40 times or more."""
    from asyncmagic.engine.pump import GATHER

    pieces: list[str] = []
    r = arun(run([PY, "-c", TICKS], on_output=lambda s, t: pieces.append(t)))
    assert r.stdout == "".join(f"{i}\n" for i in range(40))
    # A read per gathering and two before it: a loaded machine runs longer and gathers more.
    assert len(pieces) <= r.duration / GATHER + 4 and len(pieces) < 40, (len(pieces), r.duration)


def test_gathering_keeps_stdout_and_stderr_in_order():
    """While stdout gathers, stderr's first line first brings what stdout holds (written
    before it); from then on stdout is read as it comes."""
    code = (
        "import sys, time\n"
        "for i in range(12):\n"
        "    print('o', i, flush=True); time.sleep(0.003); print('o', i, 'b', flush=True)\n"
        "    time.sleep(0.02); print('e', i, file=sys.stderr, flush=True); time.sleep(0.02)\n"
    )
    runs: list[list[str]] = []

    def seen(stream: str, text: str) -> None:
        if runs and runs[-1][0] == stream:
            runs[-1][1] += text
        else:
            runs.append([stream, text])

    arun(run([PY, "-c", code], on_output=seen))
    lines = [(stream, line) for stream, text in runs for line in text.splitlines()]
    expected = []
    for i in range(12):
        expected += [("stdout", f"o {i}"), ("stdout", f"o {i} b"), ("stderr", f"e {i}")]
    assert lines == expected


def test_a_gathering_does_not_delay_the_end():
    """The last line of a trickle is followed by the command's end at once, not after a
    gathering: the exit resumes the reading."""
    from asyncmagic.engine import pump

    saved = pump.GATHER
    pump.GATHER = 30.0  # a gathering that would outlast any test
    try:
        r = arun(run([PY, "-c", TICKS], timeout=20))
    finally:
        pump.GATHER = saved
    assert r.ok and r.stdout.endswith("39\n")


def test_children_are_waited_for_without_a_thread_each():
    """On Python 3.11 asyncio starts a thread per child to wait for it; asyncmagic waits
    on a pidfd instead (engine/childwatch.py), in the loop that started the child."""
    import threading

    from asyncmagic.engine.childwatch import PidfdWatcher

    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        pytest.skip("asyncio waits on pidfds itself here")

    async def main():
        before = {t.ident for t in threading.enumerate()}
        proc = await start("sleep 0.3; exit 3")
        during = {t.ident for t in threading.enumerate()} - before
        return during, await proc.wait()

    during, result = arun(main())
    assert not during and result.returncode == 3
    assert isinstance(asyncio.get_event_loop_policy().get_child_watcher(), PidfdWatcher)

    def in_a_thread(out):  # a private loop in a worker thread, as a blocking %arun has
        out.append(asyncio.run(run("kill -TERM $$")))

    out: list = []
    worker = threading.Thread(target=in_a_thread, args=(out,))
    worker.start()
    worker.join(30)
    assert out and out[0].returncode == -signal.SIGTERM and out[0].ended == "signal"


def test_an_ask_that_breaks_ends_the_command_with_its_error():
    async def broken(prompt):
        raise RuntimeError("the channel is gone")

    async def main():
        return await run("read -p 'Name: ' n; echo never", ask=broken, timeout=30)

    result = arun(main())
    assert not result.ok and result.ended == "killed"
    assert result.error == "asked 'Name:', and asking failed: RuntimeError('the channel is gone')"
    assert "never" not in result.stdout


def test_ask_with_given_lines_needs_no_one_until_they_run_out():
    from asyncmagic.engine.prompts import NoAnswer

    async def nobody(prompt):
        raise NoAnswer(f"asked {prompt.text.strip()!r}")

    async def main():
        return await run("read -p 'A: ' a; read -p 'B: ' b; echo \"$a+$b\"", ask=nobody, input="x\ny\n")

    result = arun(main())
    assert result.ok and result.stdout == "A: B: x+y\n"  # the answers' echo is left out


@pytest.mark.parametrize(
    "line",
    [
        "ls *.py",  # a glob
        "echo $HOME",
        "FOO=1 env",  # an assignment
        "cd /tmp",  # a builtin
        "printf x",  # a builtin whose program differs
        "echo --help",  # /bin/echo would print its help
        "true --version",  # and /bin/true its version
        "if true",  # a keyword
        "echo 'a b'",
        "echo a; echo b",
        "echo a\necho b",
        "sleep 1 &",
        "ls ~",
        "asyncmagic-no-such-program x",  # the shell's message and 127
        "./not-here",
    ],
)
def test_a_line_that_needs_the_shell_gets_it(line: str):
    from asyncmagic.engine.spawning import direct_argv

    assert direct_argv(line, dict(os.environ)) is None


def test_a_plain_command_runs_without_a_shell(tmp_path: Path):
    from asyncmagic.engine.spawning import direct_argv

    env = dict(os.environ)
    assert direct_argv("ls -la /tmp", env) == ["ls", "-la", "/tmp"]
    assert direct_argv("  true  \n", env) == ["true"]
    assert direct_argv("ls", {**env, "BASH_ENV": "/x"}) is None  # --keep's state is sourced by bash
    assert direct_argv("ls", {**env, "BASH_FUNC_ls%%": "() { :; }"}) is None  # an exported function
    assert direct_argv("ls", {**env, "PATH": f".:{env['PATH']}"}) is None
    text = tmp_path / "plain"
    text.write_text("echo run by bash\n")
    text.chmod(0o755)
    assert direct_argv("./plain", env, tmp_path) is None  # bash runs it as its script; exec cannot
    assert arun(run("./plain", cwd=tmp_path)).stdout == "run by bash\n"
    tool = tmp_path / "tool"
    tool.write_text('#!/bin/sh\necho "$0 $1 in $PWD"\nexit 3\n')
    tool.chmod(0o755)
    assert direct_argv("./tool x", env, tmp_path) == ["./tool", "x"]
    r = arun(run("./tool x", cwd=tmp_path))  # argv[0] as typed, PWD as bash sets it
    assert (r.stdout, r.returncode) == (f"./tool x in {tmp_path}\n", 3)


def test_without_the_shell_a_command_is_the_same(tmp_path: Path):
    """What a plain line gives does not depend on whether bash started it."""
    for line in ["echo one two", "true", "false", "ls /asyncmagic-missing", "head -c 3 /dev/zero"]:
        direct = arun(run(line, cwd=tmp_path))
        shell = arun(run(["bash", "-c", line], cwd=tmp_path))
        assert (direct.returncode, direct.stdout, direct.stderr) == (
            shell.returncode,
            shell.stdout,
            shell.stderr,
        ), line


@pytest.mark.parametrize(
    "changes",
    [
        {"SHLVL": None, "OLDPWD": None},
        {"SHLVL": "5", "OLDPWD": "/"},
        {"SHLVL": " 7", "OLDPWD": "/asyncmagic-missing"},
        {"SHLVL": "0", "OLDPWD": "sub"},  # relative: a folder of the command's cwd
        {"SHLVL": "abc", "OLDPWD": ""},
        {"SHLVL": "999"},  # bash warns that this is too high: the line is left to bash
    ],
)
def test_without_the_shell_a_command_gets_the_environment_bash_gives_it(tmp_path: Path, changes):
    """bash -c sets PWD, SHLVL and _ for the command it execs, and drops an OLDPWD that is
    not a folder: a plain line run without it sees the same environment."""
    (tmp_path / "sub").mkdir()
    direct = arun(run("printenv", cwd=tmp_path, env=changes))
    shell = arun(run(["bash", "-c", "printenv"], cwd=tmp_path, env=changes))

    def variables(result):
        return sorted(line for line in result.stdout.splitlines() if not line.startswith("ASYNCMAGIC_SPAWN="))

    assert direct.ok and shell.ok
    assert variables(direct) == variables(shell)


def test_a_change_to_our_environment_reaches_the_next_child():
    """The decoded environment is reused only while os.environ is unchanged."""
    name = "ASYNCMAGIC_TEST_VARIABLE"
    try:
        os.environ[name] = "one"
        first = asyncio.run(run(f"printenv {name}"))
        os.environ[name] = "two"
        second = asyncio.run(run(f"printenv {name}"))
        del os.environ[name]
        gone = asyncio.run(run(f"printenv {name}"))
    finally:
        os.environ.pop(name, None)
    assert (first.stdout, second.stdout, gone.returncode) == ("one\n", "two\n", 1)
    assert asyncio.run(run(f"printenv {name}", env={name: "three"})).stdout == "three\n"
