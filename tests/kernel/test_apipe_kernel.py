"""%apipe in a real ipykernel."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kernelclient import Kernel, processes_with, sleeping

pytestmark = pytest.mark.kernel


def test_the_access_log_example(kernel: Kernel, tmp_path: Path):
    log = tmp_path / "access.log"
    log.write_text(
        "1.1.1.1 GET /\n2.2.2.2 GET /healthcheck\n1.1.1.1 GET /a\n3.3.3.3 GET /b\n1.1.1.1 GET /c\n"
    )
    ex = kernel.run(
        f"%apipe cat {log} | grep -v healthcheck | cut -d' ' -f1 | sort | uniq -c | sort -rn | head -n 5"
    )
    assert [line.split() for line in ex.stdout.splitlines()] == [["3", "1.1.1.1"], ["1", "3.3.3.3"]]


def test_python_stage_and_inserted_value(kernel: Kernel):
    ex = kernel.run(
        "def _keep_odd(lines):\n    for line in lines:\n        if int(line) % 2:\n            yield line\n"
        "_n = 3\n"
        "%apipe seq 1 1000000 | py:_keep_odd | head -n {_n}"
    )
    assert ex.stdout == "1\n3\n5\n"


def test_assignment_returns_the_result_with_stages(kernel: Kernel):
    ex = kernel.run(
        "_r = %apipe -q printf '%s\\n' fix1 feat fix2 | grep -i fix\n"
        "print(str(_r) == _r.stdout, _r.lines, [(s.command, s.returncode, s.ended) for s in _r.stages])"
    )
    assert ex.stdout == (
        "True ['fix1', 'fix2'] [('printf %s\\\\n fix1 feat fix2', 0, 'exit'), ('grep -i fix', 0, 'exit')]\n"
    )


def test_injection_attempts_stay_literal_and_ipython_does_not_expand(kernel: Kernel, tmp_path: Path):
    pwned = tmp_path / "pwned"
    ex = kernel.run(f"_x = 'a b; touch {pwned}'\n_HOME = 'python-home'\n%apipe printf '%s|' {{_x}} $_HOME")
    assert ex.stdout == f"a b; touch {pwned}|$_HOME|"
    assert not pwned.exists()


def test_dry_run_prints_argv_lists_and_runs_nothing(kernel: Kernel, tmp_path: Path):
    touched = tmp_path / "touched"
    ex = kernel.run(f"_x = 'a b; rm -rf ~'\n%apipe --dry-run printf '%s\\n' {{_x}} | touch {touched}")
    assert ex.stdout == f"1: ['printf', '%s\\\\n', 'a b; rm -rf ~']\n2: ['touch', '{touched}']\n"
    assert not touched.exists()


def test_stage_stderr_is_labelled_and_failure_raises(kernel: Kernel):
    ex = kernel.execute("%apipe ls /no/such/dir | sort")
    assert ex.stderr.startswith("[1 ls] ls: cannot access '/no/such/dir'")
    assert ex.error["ename"] == "CommandError" and "exit 2" in ex.error["evalue"]


def test_sigpipe_is_not_a_failure(kernel: Kernel):
    assert kernel.run("%apipe yes | head -n 2").stdout == "y\ny\n"


def test_input_options_feed_the_first_stage(kernel: Kernel):
    assert kernel.run("%apipe --input 'b\\na\\n' sort").stdout == "a\nb\n"
    ex = kernel.run("_gen = (str(i) for i in range(3))\n%apipe --stdin _gen tac")
    assert ex.stdout == "2\n1\n0\n"


def test_redirections(kernel: Kernel, tmp_path: Path):
    out = tmp_path / "out.txt"
    kernel.run(f"%apipe seq 3 > {out}")
    kernel.run(f"%apipe echo 4 >> {out}")
    assert out.read_text() == "1\n2\n3\n4\n"
    assert kernel.run(f"%apipe sort -r < {out} | head -n 1").stdout == "4\n"


def test_raising_python_stage_shows_its_error_and_leaves_nothing(kernel: Kernel, marker: str):
    ex = kernel.execute(
        "def _boom(lines):\n    for line in lines:\n        raise RuntimeError('no ' + line)\n"
        f"%apipe sh -c 'echo x; sleep {marker}' | py:_boom | cat"
    )
    assert "[2 py:_boom] RuntimeError: no x" in ex.stderr
    assert ex.error["ename"] == "CommandError"
    assert sleeping(marker) == []


def test_timeout_and_interrupt_end_all_stages(kernel: Kernel, marker: str):
    ex = kernel.execute(f"%apipe -t 0.3 sh -c 'sleep {marker} & sleep {marker}' | cat | cat")
    assert "timed out after 0.3 s" in ex.error["evalue"]
    assert processes_with(marker) == []
    other = marker + "2"
    ex = kernel.execute(f"%apipe sleep {other} | cat", interrupt_when=lambda ex: bool(sleeping(other)))
    assert "interrupted" in ex.error["evalue"]
    assert processes_with(other) == []


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("%apipe echo a | | cat", "empty stage 2"),
        ("%apipe echo a |", "trailing '|'"),
        ("%apipe echo 'open", "unbalanced single quote"),
        ("%apipe echo | no_such_command_q", "stage 2: no_such_command_q: command not found"),
        ("%apipe py:_undefined_fn | cat", "no variable named '_undefined_fn'"),
        ("_nc = 3\n%apipe py:_nc", "not callable"),
        ("%apipe cat < /no/such/file", "no such file"),
        ("%apipe echo {_undefined_var}", "no variable named '_undefined_var'"),
        ("%apipe --interactive cat", "no --interactive"),
    ],
)
def test_bad_pipelines_are_usage_errors_and_start_nothing(kernel: Kernel, line: str, message: str):
    before = set(
        kernel.eval(
            "[p.pid for p in __import__('asyncmagic.engine.process').engine.process.live_processes()]"
        )
    )
    ex = kernel.execute(line)
    assert "UsageError" in ex.stderr and message in ex.stderr
    assert (
        set(
            kernel.eval(
                "[p.pid for p in __import__('asyncmagic.engine.process').engine.process.live_processes()]"
            )
        )
        <= before
    )


def test_background_pipeline(kernel: Kernel):
    ex = kernel.run("_pj = %apipe --bg -q seq 5 | tac\n_r = await _pj\nprint(_r.lines, len(_r.stages))")
    assert ex.stdout == "['5', '4', '3', '2', '1'] 2\n"


def test_no_fd_leak_after_300_pipelines(kernel: Kernel):
    kernel.run("%apipe -q echo warm | cat")
    fds, zombies = kernel.stable_fd_count(), kernel.zombies()
    ex = kernel.run(
        "import asyncmagic.kernel.awaiting as _aw\n"
        "def _same(lines):\n    return lines\n"
        "for _i in range(300):\n"
        "    await _aw.line('apipe', '-q echo x | py:_same | cat')\n"
        "print('ran', _i + 1)"
    )
    assert ex.stdout == "ran 300\n"
    deadline = time.monotonic() + 10
    # No growth: an earlier test's fd closing meanwhile may make the count fall, never rise.
    while (kernel.open_fds() > fds or kernel.zombies() > zombies) and time.monotonic() < deadline:
        kernel.pump(0.05)
    assert kernel.open_fds() <= fds and kernel.zombies() <= zombies
