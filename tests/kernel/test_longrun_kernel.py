"""Long-running work in a real kernel: jobs that are ready, re-attached, kept logs, kept shell state."""

from __future__ import annotations

import re
import socket
import stat
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from kernelclient import Kernel, found, none_left, processes_with, sleeping, usage_error

pytestmark = pytest.mark.kernel


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def error_line(ex) -> str:
    assert ex.error is not None, f"expected an error:\n{ex.code}\n{ex.streams}"
    return f"{ex.error['ename']}: {ex.error['evalue']}"


# -- --ready -------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["tcp:{port}", "tcp:127.0.0.1:{port}", "http://127.0.0.1:{port}/"])
def test_a_server_job_returns_once_it_answers(kernel: Kernel, tmp_path: Path, spec: str):
    port = free_port()
    # The server only starts listening after a pause: a cell that returned at the start
    # would find the port closed.
    server = (
        "import time, http.server as h; time.sleep(0.5); "
        f"h.test(h.SimpleHTTPRequestHandler, port={port}, bind='127.0.0.1')"
    )
    kernel.run(
        f"_srv = %arun --bg -q --cwd {tmp_path} --ready {spec.format(port=port)} python3 -c {server!r}"
    )
    try:
        assert kernel.eval("_srv.state") == "running"
        got = kernel.run(f"%arun curl -s -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{port}/")
        assert got.stdout.strip() == "200"
    finally:
        kernel.run("await _srv.kill()")


def test_ready_on_a_line_of_output(kernel: Kernel, marker: str):
    ex = kernel.run(
        "_j = %arun --bg --ready /listening/ "
        f"sh -c 'echo starting; sleep 0.3; echo listening on 9; exec sleep {marker}'"
    )
    try:
        kernel.wait_until(lambda: "listening on 9" in ex.stdout, what="the ready line in the cell")
        assert kernel.eval("_j.state") == "running"
        assert kernel.eval("'listening on 9' in _j.stdout")  # it returned after the line, not before
    finally:
        kernel.run("await _j.kill()")


def test_ready_on_a_partial_line_and_on_stderr(kernel: Kernel, marker: str):
    kernel.run(
        f"_j = %arun --bg -q --ready '/port [0-9]+/' sh -c 'printf \"port 42\" >&2; exec sleep {marker}'"
    )
    try:
        assert kernel.eval("_j.state") == "running"
    finally:
        kernel.run("await _j.kill()")


def test_a_job_that_exits_before_ready_fails_the_cell(kernel: Kernel):
    port = free_port()
    ex = kernel.execute(f"%arun --bg -q --ready tcp:{port} sh -c 'echo bye; exit 3'")
    assert error_line(ex).startswith("CommandError: job ")
    assert error_line(ex).endswith(f"exit 3 before ready: tcp:{port}")


def test_a_job_never_ready_is_ended_after_the_ready_timeout(kernel: Kernel, marker: str):
    port = free_port()
    ex = kernel.execute(f"%arun --bg -q --ready tcp:{port} --ready-timeout 0.5 -r _never sleep {marker}")
    assert error_line(ex).startswith(f"CommandError: not ready after 0.5 s: tcp:{port}; job ")
    assert error_line(ex).endswith(" killed")
    assert none_left(sleeping, marker)
    assert kernel.eval("_never.state") == "killed"


def test_the_loop_runs_while_a_job_gets_ready(kernel: Kernel, tmp_path: Path, marker: str):
    gate = tmp_path / "gate"
    # The job gets ready only after a task on the kernel's loop has ticked 5 times: if the
    # wait blocked the loop, it would never be ready.
    kernel.run(
        "import asyncio, pathlib\n"
        "async def _ticker():\n"
        "    for _ in range(5):\n"
        "        await asyncio.sleep(0.02)\n"
        f"    pathlib.Path({str(gate)!r}).touch()\n"
        "_t = asyncio.ensure_future(_ticker())"
    )
    kernel.run(
        "_j = %arun --bg -q --ready-timeout 20 --ready /go/ "
        f"sh -c 'while [ ! -e {gate} ]; do sleep 0.01; done; echo go; exec sleep {marker}'"
    )
    try:
        assert kernel.eval("_t.done()")
    finally:
        kernel.run("await _j.kill()")


def test_interrupting_the_wait_for_ready_ends_the_job(kernel: Kernel, marker: str):
    port = free_port()
    ex = kernel.execute(
        f"%arun --bg -q --ready tcp:{port} sleep {marker}",
        interrupt_when=lambda ex: bool(sleeping(marker)),
    )
    assert error_line(ex).startswith(f"CommandError: interrupted before ready: tcp:{port}; job ")
    assert none_left(sleeping, marker)


def test_job_ready_is_a_coroutine_too(kernel: Kernel, marker: str):
    kernel.run(f"_j = %arun --bg -q sh -c 'sleep 0.2; echo up; exec sleep {marker}'")
    try:
        assert kernel.eval("(await _j.ready('/up/', timeout=20)) is _j")
        ex = kernel.execute(f"await _j.ready('tcp:{free_port()}', timeout=0.3)")
        assert "not ready after 0.3 s" in error_line(ex)
        assert none_left(sleeping, marker)
    finally:
        kernel.run("await _j.kill()")


@pytest.mark.parametrize(
    "options, message",
    [
        ("--bg --ready tcp:http", "--ready: not a port number in 'tcp:http'"),
        ("--bg --ready tcp:70000", "--ready: port out of range (1-65535) in 'tcp:70000'"),
        ("--bg --ready http://:80/", "--ready: no host in 'http://:80/'"),
        ("--bg --ready http://h:99999/", "--ready: port out of range"),
        ("--bg --ready '/[/'", "--ready: bad regular expression in '/[/'"),
        ("--bg --ready 8000", "--ready: not a readiness spec: '8000'"),
        ("--ready tcp:8000", "--ready goes with --bg"),
        ("--bg --ready-timeout 5", "--ready-timeout goes with --ready"),
        ("--bg --ready tcp:8000 --ready-timeout 0", "--ready-timeout must be a positive number"),
    ],
)
def test_bad_readiness_is_one_line_and_starts_nothing(
    kernel: Kernel, marker: str, options: str, message: str
):
    assert usage_error(kernel.execute(f"%arun {options} sleep {marker}")).startswith(message)
    assert not processes_with(marker)


def test_ready_inside_a_function_says_it_needs_the_loop(kernel: Kernel, marker: str):
    ex = kernel.execute(f"def _f():\n    %arun --bg --ready tcp:8000 sleep {marker}\n_f()")
    assert "UsageError: --ready needs the kernel's event loop" in ex.stderr
    assert not processes_with(marker)


# -- AsyncMagics.log_dir -----------------------------------------------------------------

STEM = re.compile(r"^\d{4}-\d\d-\d\d_\d{6}_(cell\d+|job\d+)_([^_]+)(_\d+)?\.log$")


def test_logs_stay_in_log_dir_after_the_kernel_exits(tmp_path: Path):
    logs = tmp_path / "cache" / "asyncmagic"
    k = Kernel()
    try:
        k.run("%load_ext asyncmagic")
        k.run(f"%config AsyncMagics.log_dir = {str(logs)!r}")
        k.run("%arun -q echo hello kept")
        k.run("_j = %arun --bg -q sh -c 'echo from the job; echo to stderr >&2'\nawait _j")
        k.run("%apipe -q seq 1 3 | sort -r")
        k.run("%%arun -q --parallel\necho one\necho two")
        assert k.eval("_j.result.log_path").startswith(str(logs))
    finally:
        k.shutdown()
    assert stat.S_IMODE(logs.stat().st_mode) == 0o700
    kept = {STEM.match(p.name).group(1, 2): p for p in logs.iterdir()}
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in kept.values())
    by_command = {command: path.read_text() for (_, command), path in kept.items()}
    assert by_command == {
        "echo-hello-kept": "hello kept\n",
        "sh-c-echo-from-the-job-echo-to-stderr-2": "from the job\nto stderr\n",
        "seq-1-3-sort-r": "3\n2\n1\n",
        "echo-one": "one\n",
        "echo-two": "two\n",
    }
    assert ("job1", "sh-c-echo-from-the-job-echo-to-stderr-2") in kept


def test_a_symlink_planted_at_a_log_name_is_never_followed(kernel: Kernel, tmp_path: Path):
    logs = tmp_path / "logs"
    logs.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("untouched\n")
    job = kernel.eval("get_ipython().find_line_magic('arun').__self__.background.jobs.next_id")
    now = datetime.now()
    for second in range(-2, 30):  # every name the job's log can get in the next half minute
        when = now + timedelta(seconds=second)
        (logs / f"{when:%Y-%m-%d_%H%M%S}_job{job}_echo-secret.log").symlink_to(victim)
    kernel.run(f"%config AsyncMagics.log_dir = {str(logs)!r}")
    try:
        kernel.run("_j = %arun --bg -q echo secret\nawait _j")
    finally:
        kernel.run("%config AsyncMagics.log_dir = ''")
    assert victim.read_text() == "untouched\n"
    path = Path(kernel.eval("_j.result.log_path"))
    assert path.parent == logs and path.name.endswith("_2.log") and not path.is_symlink()
    assert path.read_text() == "secret\n"


def test_an_unusable_log_dir_is_refused_in_one_line(kernel: Kernel, tmp_path: Path, marker: str):
    open_dir = tmp_path / "shared"
    open_dir.mkdir(mode=0o755)
    open_dir.chmod(0o755)
    a_file = tmp_path / "file"
    a_file.write_text("")
    for path, message in [
        (open_dir, "is open to other users (mode 755): chmod 700 it, or pick another"),
        (a_file / "logs", "cannot use log_dir"),
        ("/proc/asyncmagic-logs", "cannot use log_dir"),
    ]:
        ex = kernel.execute(f"%config AsyncMagics.log_dir = {str(path)!r}")
        assert message in ex.stderr and ex.stderr.count("\n") == 1, ex.stderr
    assert kernel.eval("get_ipython().find_line_magic('arun').__self__.log_dir") == ""
    # A folder that stops being usable after it was set: the next command says so, and starts nothing.
    good = tmp_path / "good"
    kernel.run(f"%config AsyncMagics.log_dir = {str(good)!r}")
    try:
        good.chmod(0o755)
        ex = kernel.execute(f"%arun sleep {marker}")
        assert "UsageError: log_dir" in ex.stderr and "is open to other users" in ex.stderr
        assert not processes_with(marker)
    finally:
        kernel.run("%config AsyncMagics.log_dir = ''")


# -- %ajobs attach / tail / show ---------------------------------------------------------


def started_job(kernel: Kernel, script: str) -> int:
    """Start ``script`` as a quiet job; its id."""
    kernel.run(f"_job = %arun --bg -q sh -c {script!r}")
    return int(kernel.eval("_job.id"))


def test_attach_shows_the_tail_then_the_live_output_in_the_attaching_cell(kernel: Kernel, tmp_path: Path):
    gate = tmp_path / "gate"
    job = started_job(
        kernel, f"seq 1 5; while [ ! -e {gate} ]; do sleep 0.01; done; echo after; echo bye >&2"
    )
    kernel.wait_until(lambda: kernel.eval("_job.stdout") == "1\n2\n3\n4\n5\n", what="the job's first lines")
    attach = kernel.submit(f"%ajobs attach -n 2 {job}")
    kernel.wait_until(lambda: "4\n5\n" in attach.stdout, what="the tail in the attaching cell")
    assert not attach.done  # following, until the job ends
    gate.touch()
    kernel.wait_until(lambda: attach.done, what="the attach to end with the job")
    assert attach.error is None
    assert attach.stdout == "4\n5\nafter\n"  # the tail, then the live output: no gap, no repeat
    assert attach.stderr == "bye\n"
    statuses = [
        m["content"]["data"]["text/plain"] for m in attach.of_type("display_data", "update_display_data")
    ]
    assert statuses and statuses[-1].startswith(f"[job {job}] exit 0")


def test_interrupting_an_attach_stops_the_watching_not_the_job(kernel: Kernel, marker: str):
    job = started_job(kernel, f"echo up; exec sleep {marker}")
    ex = kernel.execute(f"%ajobs attach {job}", interrupt_when=lambda ex: "up" in ex.stdout)
    assert ex.error is not None and ex.error["ename"] == "StoppedWatching"
    assert "stopped watching; the job runs on" in ex.error["evalue"]
    assert found(sleeping, marker) and kernel.eval("_job.state") == "running"
    kernel.run("await _job.kill()")
    assert none_left(sleeping, marker)


def test_tail_and_attach_of_a_finished_job_return_at_once(kernel: Kernel):
    job = started_job(kernel, "seq 1 10; printf partial")
    kernel.run("await _job")
    tail = kernel.run(f"%ajobs tail -n 3 {job}")
    assert tail.stdout.startswith("9\n10\npartial") and f"[job {job}] exit 0" in tail.stdout
    attach = kernel.run(f"%ajobs tail -f -n 1 {job}")
    assert attach.stdout.startswith("partial")


def test_show_prints_head_and_tail_and_the_log_with_everything(kernel: Kernel):
    job = started_job(kernel, "seq 1 100")
    kernel.run("await _job")
    kernel.run("%config AsyncMagics.max_display_lines = 10")
    try:
        ex = kernel.run(f"%ajobs show {job}")
    finally:
        kernel.run("%config AsyncMagics.max_display_lines = 1000")
    assert ex.stdout.startswith("1\n2\n3\n4\n5\n") and "96\n97\n98\n99\n100\n" in ex.stdout
    assert "\n50\n" not in ex.stdout and "90 lines" in ex.stderr
    log = ex.stdout.rsplit("full output: ", 1)[1].split(" (deleted", 1)[0]
    assert Path(log).read_text() == "".join(f"{i}\n" for i in range(1, 101))


@pytest.mark.parametrize(
    "line, message",
    [
        ("attach 999", "%ajobs: no job 999"),
        ("attach", "%ajobs: which job?"),
        ("show all", "%ajobs show takes one job id, not 'all'"),
        ("show -n 3 1", "%ajobs: -n/--lines goes with tail or attach"),
        ("wait -f 1", "%ajobs: -f/--follow goes with tail"),
        ("tail -n -1 1", "%ajobs: -n/--lines must be 0 or more"),
        ("show --replay 1", "%ajobs: --replay goes with wait"),
    ],
)
def test_bad_ajobs_lines_are_one_line(kernel: Kernel, line: str, message: str):
    assert usage_error(kernel.execute(f"%ajobs {line}")).startswith(message)


# -- --keep and %ashell --------------------------------------------------------------------


@pytest.fixture
def own() -> Iterator[Kernel]:
    """A kernel of its own: these tests move directories and keep state."""
    k = Kernel()
    k.run("%load_ext asyncmagic")
    yield k
    k.shutdown()


def test_keep_carries_directory_and_exports_across_cells(own: Kernel, tmp_path: Path):
    kernel_cwd = own.eval("__import__('os').getcwd()")
    own.run("import os; os.environ['FROM_KERNEL'] = 'k'")
    own.run(f"%arun --keep cd {tmp_path}")
    own.run("%%arun --keep\nexport A='one two'\nexport B=$'line\\nnext=x'\nunset FROM_KERNEL")
    ex = own.run('%%arun --keep\npwd\necho "$A|$B|${FROM_KERNEL-unset}"')
    assert ex.stdout == f"{tmp_path}\none two|line\nnext=x|unset\n"
    plain = own.run("%arun sh -c 'pwd; echo ${A-none} $FROM_KERNEL'")  # without --keep: the kernel's
    assert plain.stdout == f"{kernel_cwd}\nnone k\n"
    assert own.eval("__import__('os').getcwd()") == kernel_cwd  # the kernel did not move


def test_keep_carries_functions_and_aliases_and_keeps_line_numbers(own: Kernel):
    own.run("%%arun --keep\ngreet() { echo hello $1; }\nalias hi='echo hi there'")
    ex = own.execute("%%arun --keep\ngreet you\nhi\necho line $LINENO\nnosuchcommand-xyz")
    assert ex.stdout == "hello you\nhi there\nline 3\n"
    assert "line 4: nosuchcommand-xyz: command not found" in ex.stderr


def test_state_is_kept_after_a_failure_and_not_from_a_child_bash(own: Kernel, tmp_path: Path):
    ex = own.execute(f"%%arun --keep\ncd {tmp_path}\nbash -c 'cd /; export C=child'\nexport D=parent\nexit 3")
    assert ex.error is not None and "exit 3" in ex.error["evalue"]
    assert own.run("%arun --keep sh -c 'pwd; echo ${C-none} $D'").stdout == f"{tmp_path}\nnone parent\n"


def test_a_script_that_execs_leaves_the_previous_state(own: Kernel, tmp_path: Path):
    own.run(f"%arun --keep cd {tmp_path}")
    own.run("%arun --keep cd / && exec true")
    assert own.run("%arun --keep pwd").stdout == f"{tmp_path}\n"


def test_an_interrupted_keep_cell_ends_and_keeps_its_state(own: Kernel, tmp_path: Path, marker: str):
    ex = own.execute(
        f"%%arun --keep\ncd {tmp_path}\nsleep {marker}", interrupt_when=lambda ex: bool(sleeping(marker))
    )
    assert ex.error is not None and "interrupted" in ex.error["evalue"]
    assert none_left(processes_with, marker)
    assert own.run("%arun --keep pwd").stdout == f"{tmp_path}\n"


def test_ashell_shows_resets_and_moves_the_kernel(own: Kernel, tmp_path: Path):
    assert "no kept shell state" in own.run("%ashell").stdout
    own.run(f"%%arun --keep\ncd {tmp_path}\nexport SHOWN=yes\nf() {{ :; }}\nalias ll='ls -l'")
    shown = own.run("%ashell").stdout
    assert f"directory: {tmp_path}\n" in shown and "SHOWN='yes'" in shown
    assert "functions: f" in shown and "aliases: ll='ls -l'" in shown
    own.run("%ashell cd")
    assert own.eval("__import__('os').getcwd()") == str(tmp_path)
    own.run("%ashell reset")
    own.run("%cd /")
    assert own.run("%arun --keep sh -c 'pwd; echo ${SHOWN-gone}'").stdout == "/\ngone\n"


def test_keep_shell_state_makes_keep_the_default_of_foreground_runs(own: Kernel, tmp_path: Path):
    kernel_cwd = own.eval("__import__('os').getcwd()")
    own.run("%config AsyncMagics.keep_shell_state = True")
    own.run(f"%arun cd {tmp_path}")
    assert own.run("%arun pwd").stdout == f"{tmp_path}\n"
    # A job runs beside the cells, not after them: it neither starts from the state nor changes it.
    own.run("_j = %arun --bg -q sh -c 'pwd; cd /'\nawait _j")
    assert own.eval("_j.stdout") == f"{kernel_cwd}\n"
    assert own.run("%arun pwd").stdout == f"{tmp_path}\n"


@pytest.mark.parametrize(
    "line, message",
    [
        ("%arun --keep --bg pwd", "--keep runs in the foreground"),
        ("%%arun --keep --parallel\npwd", "--keep runs in the foreground"),
        ("%arun --keep --shell sh pwd", "--keep needs bash"),
        ("%apipe --keep pwd", "%apipe has no --keep: its stages run without a shell"),
        ("%ashell bogus", "argument action: invalid choice: 'bogus'"),
    ],
)
def test_bad_keep_lines_are_one_line(kernel: Kernel, line: str, message: str):
    assert message in usage_error(kernel.execute(line))
