"""%%arun and %arun in a real ipykernel, read through jupyter_client as a frontend does."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kernelclient import Kernel, processes_with, sleeping

pytestmark = pytest.mark.kernel


def test_first_line_arrives_while_the_command_still_runs(kernel: Kernel, tmp_path: Path):
    gate = tmp_path / "gate"
    ex = kernel.submit(f"%%arun\necho first\nwhile [ ! -e {gate} ]; do sleep 0.01; done\necho second")
    kernel.wait_until(lambda: "first" in ex.stdout, what="the first line")
    assert not ex.done and "second" not in ex.stdout
    gate.touch()
    kernel.wait_until(lambda: ex.done)
    assert ex.stdout == "first\nsecond\n" and ex.error is None


def test_streams_keep_their_names_and_order(kernel: Kernel):
    ex = kernel.run("%%arun\necho o1\nsleep 0.1\necho e1 >&2\nsleep 0.1\necho o2\necho e2 >&2")
    assert ex.streams == [("stdout", "o1\n"), ("stderr", "e1\n"), ("stdout", "o2\n"), ("stderr", "e2\n")]


def test_the_event_loop_stays_free_during_a_foreground_command(kernel: Kernel, tmp_path: Path):
    # The command waits for a file that only an asyncio task in the kernel creates:
    # if the loop were blocked, the command would time out.
    gate = tmp_path / "from-the-loop"
    code = (
        "import asyncio, pathlib\n"
        f"async def _open_gate():\n    await asyncio.sleep(0.2)\n    pathlib.Path({str(gate)!r}).touch()\n"
        "_gate_task = asyncio.ensure_future(_open_gate())\n"
        f"%arun --timeout 20 while [ ! -e {gate} ]; do sleep 0.01; done; echo gate opened"
    )
    ex = kernel.run(code)
    assert ex.stdout == "gate opened\n"


def test_one_line_form_keeps_shell_syntax(kernel: Kernel):
    ex = kernel.run('%arun -t 10 echo "a  b" | tr a-z A-Z; echo $((1+2))')
    assert ex.stdout == "A  B\n3\n"


def test_timeout_ends_the_tree_and_says_so(kernel: Kernel, marker: str):
    ex = kernel.execute(f"%%arun --timeout 0.5\nsleep {marker} &\nsleep {marker}")
    assert ex.error is not None and ex.error["ename"] == "CommandError"
    assert "timed out after 0.5 s" in ex.error["evalue"]
    assert processes_with(marker) == []


def test_interrupt_ends_the_tree_and_the_kernel_stays_usable(kernel: Kernel, marker: str):
    ex = kernel.execute(
        f"%arun bash -c 'sleep {marker} & echo started; sleep {marker}'",
        interrupt_when=lambda ex: "started" in ex.stdout,
    )
    assert ex.error is not None and "interrupted" in ex.error["evalue"]
    assert ex.idle_at - ex.interrupted_at < 1.5
    assert processes_with(marker) == []
    assert kernel.eval("1+1") == 2


def test_interrupt_escalates_for_a_child_ignoring_sigint_and_sigterm(kernel: Kernel, marker: str):
    ex = kernel.execute(
        f"%%arun --grace 0.5\ntrap '' INT TERM\nsleep {marker}",
        interrupt_when=lambda ex: bool(sleeping(marker)),
    )
    assert "interrupted" in ex.error["evalue"]
    assert ex.idle_at - ex.interrupted_at < 1.0 + 0.5 + 0.5
    assert processes_with(marker) == []


CHECKPOINT = """
import pathlib, sys, time
out = pathlib.Path(sys.argv[1])
print("training", flush=True)
try:
    time.sleep(float(sys.argv[2]))
except KeyboardInterrupt:
    out.write_text("saving")
    time.sleep(float(sys.argv[3]))  # a checkpoint that takes its time
    out.write_text("saved")
"""


def interrupt_a_training_run(kernel: Kernel, tmp_path, options: str, run_for: str, save_for: str):
    """Run CHECKPOINT, interrupt it once it trains; the cell and the checkpoint file."""
    script, out = tmp_path / "train.py", tmp_path / "checkpoint"
    script.write_text(CHECKPOINT)
    ex = kernel.execute(
        f"%arun {options} python3 {script} {out} {run_for} {save_for}",
        interrupt_when=lambda ex: "training" in ex.stdout,
    )
    assert "interrupted" in ex.error["evalue"]
    return ex, out.read_text()


def test_a_ctrl_c_handler_gets_time_to_save_and_the_cell_says_stopping(kernel: Kernel, marker, tmp_path):
    """Issue 16.7: a handler got 0.5 s before SIGTERM and was killed mid-save."""
    ex, saved = interrupt_a_training_run(kernel, tmp_path, "", marker, "1.5")
    assert saved == "saved"
    said = ex.first_time(
        lambda m: m["msg_type"] == "update_display_data" and "stopping…" in m["content"]["data"]["text/plain"]
    )
    assert said is not None and said - ex.interrupted_at < 1.0  # at once, not after the save
    assert processes_with(marker) == []


def test_interrupt_grace_is_an_option(kernel: Kernel, marker, tmp_path):
    ex, saved = interrupt_a_training_run(
        kernel, tmp_path, "--interrupt-grace 0.2 --grace 0.2", marker, marker
    )
    assert saved == "saving"  # SIGTERM came after 0.2 s, mid-save
    assert ex.idle_at - ex.interrupted_at < 0.2 + 0.2 + 1.5
    assert processes_with(marker) == []
    ex = kernel.execute("%arun --interrupt-grace -1 true")
    assert "UsageError: --interrupt-grace must be zero or more seconds" in ex.stderr


def test_each_magic_documents_exactly_its_own_options():
    """Issue 16.9: %apipe? listed options it rejects; %arun? showed reST markers and called
    --parallel "%arun only"."""
    from asyncmagic.kernel.magics import AsyncMagics

    arun, apipe = AsyncMagics.arun.__doc__, AsyncMagics.apipe.__doc__
    assert "::" not in arun and "::" not in apipe
    assert "%%arun only" in arun and "--interrupt-grace" in arun
    for option in ("--parallel", "--jobs", "--shell", "--interactive", "--pty"):
        assert option in arun and option not in apipe
    for option in ("--timeout", "--stdin", "--bg", "--split", "--dry-run"):
        assert option in apipe


def test_interrupt_inside_a_function_uses_the_blocking_path(kernel: Kernel, marker: str):
    ex = kernel.execute(
        f"def _f():\n    %arun sleep {marker}\n_f()",
        interrupt_when=lambda ex: bool(sleeping(marker)),
    )
    assert ex.error["ename"] == "CommandError" and "interrupted" in ex.error["evalue"]
    assert processes_with(marker) == []


def test_blocking_path_streams_into_the_cell(kernel: Kernel):
    ex = kernel.run(
        "def _g():\n    r = %arun echo from a function\n    return r\n_r = _g()\nprint(_r.returncode)"
    )
    assert ex.stdout == "from a function\n0\n"


def test_input_text_understands_escapes(kernel: Kernel):
    ex = kernel.run(r"%arun --input 'one\ttwo\nthré€\n' cat")
    assert ex.stdout == "one\ttwo\nthré€\n"


@pytest.mark.parametrize(
    "setup",
    [
        "_src = 'a\\nb\\n'",
        "_src = b'a\\nb\\n'",
        "_src = ['a', 'b']",
        "_src = (x for x in ['a', 'b'])",
        "import io; _src = io.StringIO('a\\nb\\n')",
        "import pathlib, tempfile; _src = pathlib.Path(tempfile.mktemp()); _src.write_text('a\\nb\\n')",
        "import tempfile; _p = tempfile.mktemp(); open(_p, 'w').write('a\\nb\\n'); _src = open(_p)",
    ],
    ids=["str", "bytes", "lines", "generator", "stringio", "path", "open-file"],
)
def test_stdin_from_a_variable(kernel: Kernel, setup: str):
    ex = kernel.run(f"{setup}\n%arun --stdin _src cat")
    assert ex.stdout == "a\nb\n"


def test_capture_into_variables(kernel: Kernel):
    kernel.run("%%arun -q -o _out -e _err -r _res\necho captured\necho warned >&2")
    assert kernel.eval("(_out, _err, _res.returncode, _res.ok)") == ("captured\n", "warned\n", 0, True)
    assert kernel.run("%%arun -q -o _out\necho quiet").streams == []
    ex = kernel.run("_x = %arun echo hi\nprint(_x.stdout, _x.ended)")
    assert ex.stdout == "hi\nhi\n exit\n"


def test_bare_line_magic_shows_no_result_value(kernel: Kernel):
    assert kernel.run("%arun true").result is None


def test_failure_raises_one_line_error(kernel: Kernel):
    ex = kernel.execute("%%arun\necho partial\nexit 3")
    assert ex.stdout == "partial\n"
    assert ex.error["ename"] == "CommandError"
    assert len(ex.error["traceback"]) == 1 and len(ex.error["traceback"][0]) <= 200
    assert "exit 3" in ex.error["traceback"][0]


def test_failure_stops_run_all(kernel: Kernel):
    # A failing cell aborts the cells queued behind it, as "Run All" needs.
    first = kernel.submit("%arun exit 1")
    second = kernel.submit("_should_not_run = True")
    kernel.wait_until(lambda: first.done and second.done)
    assert first.error is not None
    assert kernel.eval("'_should_not_run' in globals()") is False


def test_no_raise_only_reports(kernel: Kernel):
    ex = kernel.run("%%arun --no-raise -r _res\nexit 4")
    assert "exit 4" in ex.stderr and kernel.eval("_res.returncode") == 4


def test_config_defaults(kernel: Kernel):
    try:
        kernel.run("%config AsyncMagics.raise_on_error = False")
        assert "exit 2" in kernel.run("%arun exit 2").stderr
        kernel.run("%config AsyncMagics.timeout = 0.3")
        ex = kernel.run("%arun sleep 5")
        assert "timed out after 0.3 s" in ex.stderr
    finally:
        kernel.run("%config AsyncMagics.raise_on_error = True\n%config AsyncMagics.timeout = None")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("%arun --bogus touch {m}", "unknown option --bogus"),
        ("%arun --timout 5 touch {m}", "%arun: unknown option --timout; did you mean --timeout?"),
        ("%apipe --pty touch {m}", "%apipe has no --pty"),
        ("%arun -t -1 touch {m}", "--timeout must be a positive number"),
        ("%arun -t soon touch {m}", "not a number of seconds: 'soon'"),
        ("%arun --grace -2 touch {m}", "--grace must be zero or more"),
        ("%arun --stdin _undefined_name touch {m}", "no variable named '_undefined_name'"),
        ("_int = 5\n%arun --stdin _int touch {m}", "_int is a int"),
        ("%arun --cwd /no/such/dir touch {m}", "no such directory: /no/such/dir"),
        ("%arun --env NOEQUALS touch {m}", "--env takes NAME=VALUE"),
        ("%arun -o 'not a name' touch {m}", "not a valid variable name"),
        ("%arun --input x --stdin _src touch {m}", "not both"),
        ("%arun -t 5", "needs a command"),
        ("%arun --shell no_such_shell_xyz touch {m}", "--shell: no such program: no_such_shell_xyz"),
        ("%apipe --shell sh touch {m}", "%apipe has no --shell"),
    ],
)
def test_bad_input_is_a_usage_error_and_nothing_starts(
    kernel: Kernel, tmp_path: Path, line: str, message: str
):
    touched = tmp_path / "started"
    ex = kernel.execute(line.format(m=touched))
    text = ex.stderr + (ex.error["evalue"] if ex.error else "")
    assert message in text
    assert "UsageError" in text
    assert not touched.exists()


def test_missing_shell_is_a_usage_error(kernel: Kernel):
    try:
        kernel.run("%config AsyncMagics.default_shell = '/no/such/shell'")
        ex = kernel.execute("%arun true")
        assert "UsageError" in ex.stderr and "/no/such/shell" in ex.stderr
    finally:
        kernel.run("%config AsyncMagics.default_shell = ''")


def test_missing_command_exits_127_with_a_message(kernel: Kernel):
    ex = kernel.execute("%arun no_such_command_abc")
    assert "no_such_command_abc" in ex.stderr and "not found" in ex.stderr
    assert "exit 127 (command not found)" in ex.error["evalue"]


def test_env_cwd_and_shell_options(kernel: Kernel, tmp_path: Path):
    ex = kernel.run(f"%arun --env A=1 --env B='two words' --cwd {tmp_path} echo $A $B $(pwd)")
    assert ex.stdout == f"1 two words {tmp_path}\n"
    assert kernel.run("%%arun\necho $0").stdout.strip().endswith("/bash")
    assert kernel.run("%%arun --shell sh\necho $0").stdout.strip().endswith("/sh")


def test_invalid_and_split_utf8(kernel: Kernel):
    code = "%%arun\nprintf 'bad\\xff\\n'\nprintf 'split\\xe2\\x82'; sleep 0.2; printf '\\xac\\n'"
    ex = kernel.run(code)
    assert ex.stdout == "bad\ufffd\nsplit€\n"


def test_megabyte_line_arrives_whole(kernel: Kernel):
    ex = kernel.run(
        "%arun -r _big head -c 1048576 /dev/zero | tr '\\0' x\nprint(_big.stdout == 'x' * 1048576)"
    )
    assert ex.stdout.endswith("True\n")
    # On screen: its head and its tail, and a notice between them.
    assert ex.stdout == "x" * 256_000 + "x" * 256_000 + "True\n"
    assert ex.stderr.startswith("\n… 536.6 kB not shown; full output: /tmp/asyncmagic-")
    names = [name for name, _ in ex.streams]
    after = names[names.index("stderr") :]
    assert after[0] == "stderr" and set(after[1:]) == {"stdout"} and len(after) >= 3  # notice, tail, print
    ex = kernel.run("%arun --max-lines 0 head -c 1048576 /dev/zero | tr '\\0' x")
    assert ex.stdout == "x" * 1048576


def test_cat_without_input_ends_at_once_and_the_cell_continues(kernel: Kernel):
    ex = kernel.run("%%arun --timeout 10\ncat\necho after cat")
    assert ex.stdout == "after cat\n"


def test_help_lists_the_options(kernel: Kernel):
    doc = kernel.eval("get_ipython().find_cell_magic('arun').__doc__")
    for option in (
        "--timeout",
        "--grace",
        "--input",
        "--stdin",
        "--out",
        "--err",
        "--result",
        "--quiet",
        "--no-raise",
        "--cwd",
        "--env",
    ):
        assert option in doc


def test_many_runs_leave_no_fds_or_zombies(kernel: Kernel):
    """No growth across 500 runs. The baseline is taken once the count is steady: earlier
    tests may still be closing fds lazily, so the count can fall meanwhile, never rise."""
    kernel.run("%arun true")  # warm up: the first run opens the child watcher's resources
    fds = kernel.stable_fd_count()
    zombies = kernel.zombies()
    ex = kernel.run(
        "import asyncmagic.kernel.awaiting as _aw\n"
        "for _i in range(500):\n"
        "    await _aw.line('arun', '-q -i x cat')\n"
        "print('ran', _i + 1)"
    )
    assert ex.stdout == "ran 500\n"
    deadline = time.monotonic() + 10
    while (kernel.open_fds() > fds or kernel.zombies() > zombies) and time.monotonic() < deadline:
        kernel.pump(0.05)
    assert kernel.open_fds() <= fds
    assert kernel.zombies() <= zombies


def test_unload_removes_the_magics():
    k = Kernel()
    try:
        k.run("%load_ext asyncmagic\n%unload_ext asyncmagic")
        ex = k.execute("%arun echo hi")
        assert "Line magic function `%arun` not found" in ex.stderr and ex.stdout == ""
        k.run("%load_ext asyncmagic")
        assert k.run("%arun echo back").stdout == "back\n"
    finally:
        k.shutdown()
