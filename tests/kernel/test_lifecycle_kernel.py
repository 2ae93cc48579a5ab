"""Where two stop paths meet, through a real kernel: each test names the issue-10 defect
it guards against, and checks that the cell ends, says one line, leaves no process of its
tree (by /proc, marker arguments) and that the kernel still answers ``1+1``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kernelclient import Kernel, none_left, sleeping

pytestmark = pytest.mark.kernel

BOUND = 15.0


@pytest.fixture(scope="module")
def k() -> Iterator[Kernel]:
    kernel = Kernel()
    kernel.run("%load_ext asyncmagic")
    yield kernel
    kernel.shutdown()


def alive_after(k: Kernel) -> None:
    assert k.eval("1+1") == 2


def no_sleep_left(marker: str, within: float = 5.0) -> bool:
    return none_left(sleeping, marker, within)


def one_line_error(ex, ename: str) -> str:
    """The error's one line. IPython prints a UsageError as one stderr line, no traceback."""
    if ename == "UsageError":
        lines = ex.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("UsageError: "), ex.streams
        return lines[0].removeprefix("UsageError: ")
    assert ex.error is not None, ex.streams
    assert ex.error["ename"] == ename, ex.error
    assert len(ex.error["traceback"]) == 1, ex.error["traceback"]
    return ex.error["evalue"]


def test_stdin_of_ints_is_a_usage_error_before_anything_starts(k, marker):
    # 2: `nums = [3, 1, 2]; %arun --stdin nums sort` never ended.
    k.run("nums = [3, 1, 2]")
    for cell in (f"%arun --stdin nums sleep {marker}", f"%apipe --stdin nums sleep {marker}"):
        ex = k.execute(cell, timeout=BOUND)
        message = one_line_error(ex, "UsageError")
        assert "--stdin nums" in message and "item 1 is int" in message
    assert not sleeping(marker)
    alive_after(k)


@pytest.mark.parametrize("magic", ["%arun", "%apipe"])
def test_a_source_raising_mid_run_fails_the_cell_naming_it(k, marker, magic):
    # 2, 3: the %arun cell hung; the %apipe cell was an ok, empty cell.
    k.run("def _gen():\n    yield 'a'\n    raise ValueError('broke')\n_g = _gen()")
    ex = k.execute(f"{magic} --stdin _g sh -c 'cat; exec sleep {marker}'", timeout=BOUND)
    message = one_line_error(ex, "CommandError")
    assert "--stdin _g: input failed: ValueError: broke" in message
    assert no_sleep_left(marker)
    alive_after(k)


def test_a_job_started_from_a_task_while_idle_can_be_interrupted(k, marker):
    # 5: the SIGINT reset was undone before the deferred spawn ran; the job ignored SIGINT.
    k.run(
        "import asyncio\n"
        "async def _later():\n"
        f"    return get_ipython().run_line_magic('arun', '--bg -q sleep {marker}')\n"
        "_t = asyncio.get_running_loop().create_task(_later())"
    )
    k.wait_until(lambda: bool(sleeping(marker)), what="the job to start")
    (pid,) = sleeping(marker)
    sigint = int(open(f"/proc/{pid}/status").read().split("SigIgn:")[1].split()[0], 16) & 2
    assert sigint == 0, "the job's process ignores SIGINT"
    ex = k.run("_r = await (await (await _t).process()).interrupt()\n_r.ended")
    assert ex.result == "'interrupted'"
    assert no_sleep_left(marker)


@pytest.mark.parametrize("where", ["def", "autoawait off"])
def test_ajobs_kill_on_the_blocking_path_ends_a_job_that_ignores_sigterm(k, marker, where):
    # 12: from a def, kill raised and a TERM-ignoring job was never SIGKILLed.
    k.run(f"_j = %arun --bg -q --grace 0.3 bash -c \"trap '' TERM; exec sleep {marker}\"")
    k.wait_until(lambda: bool(sleeping(marker)), what="the job to start")
    if where == "def":
        ex = k.execute("def _kill():\n    get_ipython().run_line_magic('ajobs', 'kill all')\n_kill()")
    else:
        k.run("%autoawait off")
        ex = k.execute("%ajobs kill all", timeout=BOUND)
        k.run("%autoawait on")
    assert ex.error is None, ex.error
    assert no_sleep_left(marker, within=1)
    assert k.eval("(await _j).ended") == "killed"
    alive_after(k)


def test_ajobs_wait_on_the_blocking_path_is_one_line(k):
    # 12: it raised "attached to a different loop".
    ex = k.execute("def _w():\n    get_ipython().run_line_magic('ajobs', 'wait all')\n_w()")
    assert "needs the kernel's event loop" in one_line_error(ex, "UsageError")
    alive_after(k)


def test_a_job_started_from_a_thread_runs(k, marker):
    # 13: it stayed in `starting` forever, with no process and no error.
    k.run(
        "import threading\n_box = []\n"
        "_th = threading.Thread(target=lambda: _box.append("
        f"get_ipython().run_line_magic('arun', '--bg -q sh -c \"echo from-thread; sleep {marker}\"')))\n"
        "_th.start(); _th.join()"
    )
    k.wait_until(lambda: bool(sleeping(marker)), what="the thread's job to start")
    k.run("_tj = _box[0]; await _tj.kill()")
    assert k.eval("_tj.state") == "killed"
    assert k.eval("_tj.stdout") == "from-thread\n"
    assert no_sleep_left(marker)


def test_an_interrupted_parallel_cell_ends_after_its_processes(k, marker):
    # 14: a line that traps INT and TERM ran on 2.7 s after "interrupted"; "0 commands".
    cell = (
        f"%%arun --parallel --grace 0.5\nbash -c \"trap '' INT TERM; exec sleep {marker}\"\nsleep {marker}\n"
    )
    ex = k.execute(cell, timeout=BOUND, interrupt_when=lambda ex: len(sleeping(marker)) == 2)
    assert "interrupted" in one_line_error(ex, "CommandError")
    assert not sleeping(marker), "the cell ended before its processes"
    assert "2 commands" in "".join(m["content"]["data"]["text/plain"] for m in ex.of_type("display_data"))
    alive_after(k)


def test_a_cell_over_128_kib_runs(k):
    # 18: OSError E2BIG: the script was one argv string.
    body = "\n".join(f": line {i} {'x' * 60}" for i in range(3000))
    ex = k.run(f"%%arun -q -o _big\n{body}\necho done")
    assert len(ex.code) > 128 * 1024
    assert k.eval("_big") == "done\n"


@pytest.mark.parametrize(
    "cell, says",
    [
        ("%apipe echo hi > /tmp", "is a directory"),
        ("%apipe echo {_huge}", "longer than linux allows"),
        ("%apipe cat < /no/such/file", "no such file"),
    ],
)
def test_every_error_of_starting_is_one_line(k, cell, says):
    # 18: a 2 MB argument or `> /tmp` ended in a 40-100-line traceback.
    k.run("_huge = 'x' * 2_000_000")
    ex = k.execute(cell, timeout=BOUND)
    assert says in one_line_error(ex, "UsageError").lower()
    alive_after(k)


def test_unload_ends_all_jobs_at_once(marker):
    # 16: five jobs that ignore SIGTERM blocked the kernel 5 x grace.
    kernel = Kernel()
    try:
        kernel.run("%load_ext asyncmagic")
        kernel.run(
            "\n".join(
                f"%arun --bg -q --grace 1 bash -c \"trap '' TERM; exec sleep {marker}\"" for _ in range(5)
            )
        )
        kernel.wait_until(lambda: len(sleeping(marker)) == 5, what="five jobs")
        ex = kernel.run("%unload_ext asyncmagic")
        assert ex.idle_at - ex.started < 4.0  # one grace of 1 s and its SIGKILL, not five
        assert not sleeping(marker)
        alive_after(kernel)
    finally:
        kernel.shutdown()


@pytest.mark.parametrize("parallel", [False, True], ids=["arun", "parallel"])
def test_a_second_interrupt_during_the_first_does_not_end_the_cell_early(k, marker, parallel):
    # A stop during a stop: the second cancellation cut the first interrupt short, and the
    # cell ended while a process that ignores INT and TERM still ran (seen in --parallel).
    stubborn = f"bash -c \"trap '' INT TERM; exec sleep {marker}\""
    cell = (
        f"%%arun --parallel --grace 1\n{stubborn}\nsleep {marker}\n"
        if parallel
        else f"%arun --grace 1 {stubborn}"
    )
    ex = k.submit(cell)
    k.wait_until(lambda: len(sleeping(marker)) == (2 if parallel else 1), what="the commands to start")
    k.manager.interrupt_kernel()
    k.wait_until(lambda: len(sleeping(marker)) <= 1 or ex.done, what="the first stop to begin")
    k.manager.interrupt_kernel()
    k.wait_until(lambda: ex.done, timeout=BOUND, what="the cell to end")
    assert not sleeping(marker), "the cell ended before its processes"
    assert "interrupted" in one_line_error(ex, "CommandError")
    alive_after(k)
