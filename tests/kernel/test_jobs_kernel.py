"""Background jobs (--bg, Job, %ajobs) in a real ipykernel."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from kernelclient import Kernel, processes_with, sleeping
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

pytestmark = pytest.mark.kernel


def wait_gone(marker: str, within: float = 5.0) -> list[int]:
    deadline = time.monotonic() + within
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    return processes_with(marker)


def test_output_goes_to_the_starting_cell_while_another_cell_runs(kernel: Kernel, tmp_path: Path):
    gate = tmp_path / "gate"
    start = kernel.run(f"%%arun --bg -r _job\necho one\nwhile [ ! -e {gate} ]; do sleep 0.01; done\necho two")
    assert start.done
    later = kernel.run(
        "import asyncio, pathlib\n"
        f"pathlib.Path({str(gate)!r}).touch()\n"
        "while 'two' not in _job.stdout:\n    await asyncio.sleep(0.01)\n"
        "print('later cell')"
    )
    kernel.wait_until(lambda: "two" in start.stdout, what="the job's late line in its own cell")
    assert start.stdout == "one\ntwo\n"
    assert later.stdout == "later cell\n"  # nothing of the job leaked into the later cell
    two = start.first_time(lambda m: m["msg_type"] == "stream" and "two" in m["content"]["text"])
    assert two is not None and two > start.idle_at
    kinds = [m["msg_type"] for m in start.of_type("display_data", "stream")]
    assert kinds[0] == "display_data"  # the status line sits above the output, never inside it


def test_status_line_updates_to_the_exit_status(kernel: Kernel):
    ex = kernel.run("%arun --bg -q -r _j sleep 0.2; exit 3")
    first = ex.of_type("display_data")[0]["content"]
    assert "[job" in first["data"]["text/plain"]
    display_id = first["transient"]["display_id"]
    kernel.wait_until(
        lambda: any(
            "exit 3" in m["content"]["data"]["text/plain"]
            for m in ex.of_type("update_display_data")
            if m["content"]["transient"]["display_id"] == display_id
        ),
        what="the final status",
    )


def test_await_returns_the_result_and_raises_only_where_awaited(kernel: Kernel):
    ex = kernel.run("_ok = %arun --bg -q echo hi\n_bad = %arun --bg -q exit 4")
    assert ex.error is None
    ex = kernel.run(
        "_r = await _ok\nprint(_r.returncode, _r.stdout.strip(), _r.ended, _ok.done(), _ok.returncode)"
    )
    assert ex.stdout.endswith("0 hi exit True 0\n")
    ex = kernel.execute("await _bad")
    assert ex.error["ename"] == "CommandError" and "exit 4" in ex.error["evalue"]
    ex = kernel.run("_q = %arun --bg -q --no-raise exit 5\n_r = await _q\nprint(_r.returncode)")
    assert ex.stdout.endswith("5\n")


def test_job_handle_attributes(kernel: Kernel):
    ex = kernel.run(
        "_h = %arun --bg -q echo out; echo err >&2\n"
        "import asyncmagic\n"
        "print(isinstance(_h, asyncmagic.Job), _h.id > 0, isinstance(_h.pid, int), _h.command)\n"
        "await _h.wait()\n"
        "print(repr(_h.stdout), repr(_h.stderr), _h.result.ok)"
    )
    lines = ex.stdout.splitlines()
    assert lines[0] == "True True True echo out; echo err >&2"
    assert lines[-1] == "'out\\n' 'err\\n' True"


def test_wait_with_timeout_leaves_the_job_running(kernel: Kernel, marker: str):
    kernel.run(f"_long = %arun --bg -q sleep {marker}")
    ex = kernel.execute("await _long.wait(timeout=0.1)")
    assert ex.error["ename"] == "TimeoutError"
    assert processes_with(marker)
    ex = kernel.run("_r = await _long.kill(grace=1)\nprint(_r.ended)")
    assert ex.stdout == "killed\n"
    assert wait_gone(marker) == []


def test_ajobs_kill_list_wait_and_clear(kernel: Kernel, marker: str):
    kernel.run("%ajobs clear")
    ex = kernel.run(f"_k = %arun --bg -q sleep {marker} & sleep {marker}\nprint(_k.id)")
    job_id = int(ex.stdout)
    listing = kernel.run("%ajobs").of_type("display_data")[0]["content"]["data"]
    assert "running" in listing["text/plain"] and "<table>" in listing["text/html"]
    for column in ("id", "command", "pid", "state", "elapsed", "exit", "bytes out"):
        assert column in listing["text/plain"]
    ex = kernel.run(f"%ajobs kill {job_id}")
    assert "killed" in ex.stdout
    assert wait_gone(marker) == []
    kernel.run("_w = %arun --bg -q echo waited")
    ex = kernel.run("%ajobs wait all")
    assert "exit 0" in ex.stdout
    assert "forgot" in kernel.run("%ajobs clear").stdout
    assert kernel.run("%ajobs").of_type("display_data")[0]["content"]["data"]["text/plain"] == "no jobs"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("%ajobs kill 999", "no job 999"),
        ("%ajobs kill x", "not a job id"),
        ("%ajobs wait", "which job?"),
        ("%ajobs explode", "invalid choice"),
        ("%arun --interactive cat", "--interactive needs --bg"),
        ("%arun --bg --interactive --input x cat", "drop --input"),
    ],
)
def test_bad_job_commands_are_usage_errors(kernel: Kernel, line: str, message: str):
    ex = kernel.execute(line)
    assert message in ex.stderr and "UsageError" in ex.stderr


def test_timeout_applies_to_background_jobs(kernel: Kernel, marker: str):
    kernel.run(f"_t = %arun --bg -q -t 0.3 sleep {marker} & sleep {marker}")
    ex = kernel.execute("await _t")
    assert "timed out after 0.3 s" in ex.error["evalue"]
    assert wait_gone(marker) == []


def test_interrupting_a_foreground_cell_leaves_background_jobs_alive(kernel: Kernel, marker: str):
    bg, fg = marker, marker + "1"
    kernel.run(f"_bg = %arun --bg -q sleep {bg}")
    ex = kernel.execute(f"%arun sleep {fg}", interrupt_when=lambda ex: bool(sleeping(fg)))
    assert "interrupted" in ex.error["evalue"]
    assert processes_with(fg) == [] and processes_with(bg)
    assert kernel.run("print(_bg.done())").stdout == "False\n"
    kernel.run("await _bg.kill()")
    assert wait_gone(bg) == []


def test_job_started_while_the_kernel_is_idle_still_ends_on_sigint(kernel: Kernel, marker: str):
    # From a plain function call the job starts after the cell, when ipykernel ignores SIGINT.
    kernel.run(f"_idle = get_ipython().run_line_magic('arun', '--bg -q --no-raise sleep {marker}')")
    kernel.wait_until(lambda: bool(sleeping(marker)), what="the job to start")
    os.kill(sleeping(marker)[0], signal.SIGINT)
    ex = kernel.run("_r = await _idle\nprint(_r.ended, _r.returncode)")
    assert ex.stdout == f"signal {-signal.SIGINT}\n"


def test_interactive_send_and_expect(kernel: Kernel):
    ex = kernel.run(
        "_repl = %arun --bg -q --interactive python3 -i -u\n"
        "_banner = await _repl.expect('>>> ')\n"
        "await _repl.send('2+2\\n')\n"
        "print(repr(await _repl.expect('>>> ')))\n"
        "await _repl.send('print(\"x\" * 3)\\n')\n"
        "print(repr(await _repl.expect(r'x+\\n>>> ')))\n"
        "await _repl.close_stdin()\n"
        "print((await _repl).returncode)"
    )
    assert ex.stdout.splitlines()[:3] == ["'4\\n>>> '", "'xxx\\n>>> '", "0"]
    ex = kernel.execute("_e = %arun --bg -q --interactive cat\nawait _e.expect('never', timeout=0.2)")
    assert ex.error["ename"] == "TimeoutError" and "'never' not seen" in ex.error["evalue"]
    kernel.run("await _e.close_stdin()\nawait _e")


def test_a_hundred_jobs_at_once(kernel: Kernel):
    kernel.run("_warm = %arun --bg -q true\nawait _warm")
    fds, zombies = kernel.open_fds(), kernel.zombies()
    kernel.run("_hundred = [get_ipython().run_line_magic('arun', f'--bg -q echo {i}') for i in range(100)]")
    ex = kernel.run(
        "_results = [await j for j in _hundred]\n"
        "print(sum(r.stdout == f'{i}\\n' and r.ok for i, r in enumerate(_results)))"
    )
    assert ex.stdout == "100\n"  # quiet jobs: nothing replayed where they are awaited
    kernel.run("%ajobs clear\ndel _hundred, _results")
    deadline = time.monotonic() + 10
    while (kernel.open_fds(), kernel.zombies()) != (fds, zombies) and time.monotonic() < deadline:
        kernel.pump(0.05)
    assert (kernel.open_fds(), kernel.zombies()) == (fds, zombies)


def _kernel_with_job(marker: str) -> Kernel:
    k = Kernel()
    k.run("%load_ext asyncmagic")  # its own cell: the next one is awaited, so it returns once started
    k.run(f"_j = %arun --bg -q sleep {marker} & sleep {marker}")
    k.wait_until(lambda: len(sleeping(marker)) == 2, what="the job's processes")
    return k


def test_unload_ends_every_job(marker: str):
    k = _kernel_with_job(marker)
    try:
        k.run("%unload_ext asyncmagic")
        assert wait_gone(marker) == []
    finally:
        k.shutdown()


def test_shutdown_ends_every_job(marker: str):
    k = _kernel_with_job(marker)
    k.shutdown()
    assert wait_gone(marker) == []


def test_restart_ends_every_job(marker: str):
    k = _kernel_with_job(marker)
    try:
        k.manager.restart_kernel()
        assert wait_gone(marker) == []
    finally:
        k.client.stop_channels()
        k.manager.shutdown_kernel(now=True)


def test_sigkill_of_the_kernel_ends_its_jobs_within_5_s(marker: str):
    k = _kernel_with_job(marker)
    try:
        os.kill(k.pid, signal.SIGKILL)
        assert wait_gone(marker, within=5.0) == []
    finally:
        k.client.stop_channels()
        k.manager.shutdown_kernel(now=True)


def test_headless_run_gets_late_output_where_the_job_is_awaited(tmp_path: Path):
    gate = tmp_path / "gate"
    nb = new_notebook(
        cells=[
            new_code_cell("%load_ext asyncmagic"),
            new_code_cell(
                f"%%arun --bg -r job\necho early\nwhile [ ! -e {gate} ]; do sleep 0.01; done\necho late"
            ),
            new_code_cell(f"import pathlib\npathlib.Path({str(gate)!r}).touch()\nresult = await job"),
            new_code_cell("%ajobs wait --replay 1"),
        ]
    )
    NotebookClient(nb, timeout=60, kernel_name="python3").execute()

    def text(cell):
        return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")

    # What the starting cell's client missed (all that came after it finished) shows where
    # the job is awaited, and so does how it ended; nothing is lost and nothing shown twice.
    assert "late" not in text(nb.cells[1]) and "late" in text(nb.cells[2])
    late, ending = text(nb.cells[2]).rsplit("[job 1] ", 1)
    assert text(nb.cells[1]) + late == "early\nlate\n" and ending.startswith("exit 0 · ")
    assert text(nb.cells[3]).startswith("early\nlate\n") and "exit 0" in text(nb.cells[3])
    # The job's own cell keeps its last status: started, never a stale "starting".
    statuses = [o["data"]["text/plain"] for o in nb.cells[1].outputs if o.output_type == "display_data"]
    assert statuses and statuses[0].startswith("[job 1] started · pid ")


def test_a_job_with_huge_output_keeps_only_its_latest_in_memory(kernel: Kernel):
    rss = "int(open('/proc/self/statm').read().split()[1]) * __import__('os').sysconf('SC_PAGE_SIZE')"
    kernel.run(f"_rss0 = {rss}")
    kernel.run("_big = %arun --bg -q yes | head -c 200000000; echo the-end")
    kernel.run("_r = await _big")
    assert kernel.eval(f"({rss} - _rss0) // 2**20") <= 50
    assert kernel.eval("await _big.expect('the-end', timeout=1)").endswith("the-end")  # the latest is kept
    replay = kernel.run("%ajobs wait --replay " + str(kernel.eval("_big.id")))
    assert replay.stderr.startswith("… the job's earlier output is not kept for replay; full output: /tmp/")
    assert "y\nthe-end\n" in replay.stdout and len(replay.stdout) <= 2_000_100
    kernel.run("del _big, _r")


@pytest.mark.parametrize("awaiting", ["await _late", "%ajobs wait {id}"])
@pytest.mark.parametrize("client", ["person", "headless"])
def test_awaiting_a_job_replays_its_late_output_only_to_a_headless_client(
    kernel: Kernel, tmp_path: Path, awaiting: str, client: str
):
    """Issue 16.1: a client with a person (allow_stdin true: JupyterLab, Notebook 7, jupyter
    console) showed the late output in the job's cell already; printing it again where the
    job is awaited doubled it. A headless one (nbclient: allow_stdin false) dropped it."""
    gate = tmp_path / "gate"
    start = kernel.run(
        f"%%arun --bg -r _late\necho early\nwhile [ ! -e {gate} ]; do sleep 0.01; done\necho late"
    )
    job_id = kernel.eval("_late.id")
    gate.touch()
    ex = kernel.execute(awaiting.format(id=job_id), allow_stdin=client == "person")
    assert ex.error is None, ex.error
    kernel.wait_until(lambda: "late" in start.stdout, what="the late line in the job's cell")
    shown = "".join(line for line in ex.stdout.splitlines(keepends=True) if not line.startswith("[job "))
    if client == "person":
        assert shown == "", ex.streams
    else:  # what the job printed after its cell finished (whether "early" was is timing);
        # that nbclient then shows it exactly once is test_headless_run_gets_late_output_...
        assert shown in ("late\n", "early\nlate\n"), ex.streams
    assert start.stdout == "early\nlate\n"


def test_a_client_that_cannot_redraw_gets_the_end_as_a_line_in_the_jobs_cell(kernel: Kernel):
    """jupyter console shows a display once and ignores its updates (issue 16.4: `[job 1]
    starting` forever); it names no cell in its requests, so the end is also printed there."""
    console = kernel.execute("_cj = %arun --bg -q sh -c 'sleep 0.2; exit 3'", in_a_notebook=False)
    job = kernel.eval("_cj.id")
    kernel.wait_until(lambda: f"[job {job}] exit 3" in console.stderr, what="the printed end")
    lab = kernel.run("_lj = %arun --bg -q sleep 0.2")
    lab_job = kernel.eval("_lj.id")
    kernel.wait_until(
        lambda: any(
            f"[job {lab_job}] exit 0" in m["content"]["data"]["text/plain"]
            for m in lab.of_type("update_display_data")
        ),
        what="the updated status line",
    )
    kernel.run("await _lj")  # iopub is ordered: whatever the job's cell got came before this
    assert f"[job {lab_job}]" not in lab.stdout + lab.stderr  # redrawn in place, not printed too
    kernel.execute("await _cj")
