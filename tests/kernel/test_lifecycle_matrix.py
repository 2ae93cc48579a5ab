"""The lifecycle matrix: what runs × how it ends × from where, through a real kernel.

- :func:`test_matrix`: what runs (a command, ``--pty``, ``--split``, a job, pipelines with a
  Python stage first, in the middle, last, sync and async, ``--parallel``) and from where
  (an awaited cell, the blocking path in a ``def`` and with ``%autoawait off``, a thread,
  a job started by an asyncio task while the kernel is idle) × how it ends (exit 0 and
  non-zero, an unexpected signal, timeout, interrupt, a second interrupt during the stop,
  an interrupt while a flood holds reading paused, ``job.kill()`` right after the start,
  children that ignore INT and TERM, double-fork, or keep the pipe open).
- Failures inside what runs: a Python stage raising early or late, ``SystemExit``,
  ``KeyboardInterrupt`` (each place, sync and async); an input source raising or of a
  wrong type (every magic that takes ``--stdin``); a command that cannot start.
- The kernel's own end (``%unload_ext``, shutdown, restart, SIGKILL) × what is running.

For every case: the cell ends within :data:`BOUND`, the Result's ``ended`` (or the one-line
error) says what happened, no process of its tree is alive (found by /proc, by a marker
argument), and the kernel answers ``1+1``. Combinations that make no sense are skipped
with their reason in the test id. At the end, the kernel has no Python thread and no fd
more than before the matrix.

The exact "when" of the engine (a stop before the spawn finished, a cancel during the
stop) is timed in ``test_lifecycle_engine.py``.
"""

from __future__ import annotations

import os
import shlex
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from kernelclient import Kernel, none_left, processes_with, sleeping

pytestmark = pytest.mark.kernel

BOUND = 20.0
"""Seconds a cell may take to end: the slowest path is INT 3 s + grace 1 s + SIGKILL,
on a loaded 2-core machine."""


@dataclass(frozen=True)
class How:
    """How the command ends: the shell body, the options, and what the Result must say."""

    name: str
    body: str
    ended: str
    ok: bool = False
    options: str = ""
    interrupt: bool = False
    flood: bool = False
    """Interrupt once output streams: the display falls behind and holds reading paused."""
    again_after: float | None = None
    """Interrupt a second time this many seconds after the first, while it is stopping."""


HOWS = [
    How("exit-0", "echo hi; sleep 0.1", "exit", ok=True),
    How("exit-3", "echo hi; exit 3", "exit"),
    How("unexpected-signal", "echo hi; kill -9 $$", "signal"),
    How("timeout", "echo hi; exec sleep {m}", "timeout", options="-t 1"),
    How("interrupt", "echo hi; exec sleep {m}", "interrupted", interrupt=True),
    How(
        "interrupt-ignored-int-and-term",
        "trap '' INT TERM; echo hi; sleep {m}; sleep {m}",
        "interrupted",
        options="--grace 0.5",
        interrupt=True,
    ),
    How(
        "interrupt-mid-flood",
        "yes {m} | head -c 1000000000",  # bounded: if the interrupt never came, it ends
        "interrupted",
        options="--max-lines 0",  # everything shown: the display paces the reading
        interrupt=True,
        flood=True,
    ),
    How("grandchild-keeps-pipe", "sleep {m} & echo parent done", "exit", ok=True),
    How("double-fork", "(sleep {m} &); echo parent done", "exit", ok=True),
    How(
        "interrupt-during-stop",  # a second interrupt while the first waits out the grace
        "trap '' INT TERM; echo hi; sleep {m}; sleep {m}",
        "interrupted",
        options="--grace 1",
        interrupt=True,
        again_after=0.3,
    ),
    How("kill", "echo hi; exec sleep {m}", "killed", ok=True),  # asked for: not a failure
]


@dataclass(frozen=True)
class What:
    """What runs, and from where: a cell template around the body (``{b}``: the body quoted
    as one word, ``{quoted}`` as a Python string), and cells run before and after it."""

    name: str
    template: str
    background: bool = False
    before: str = ""
    after: str = ""
    main_thread: bool = True
    """False: the magic runs in a thread, which SIGINT (the stop button) never reaches."""


THREAD = """import threading
_box = []
def _in_thread():
    try:
        get_ipython().run_cell_magic('arun', '-r _res {o}', {quoted})
    except BaseException as exc:
        _box.append(exc)
_th = threading.Thread(target=_in_thread)
_th.start()
_th.join()
if _box:
    raise _box[0]"""

IDLE_TASK = """import asyncio
async def _go():
    return get_ipython().run_line_magic('arun', '--bg -q {o} bash -c ' + {b!r})
_t = asyncio.ensure_future(_go())"""

WHATS = [
    What("command", "%%arun -r _res {o}\n{body}"),
    What("pty", "%%arun --pty -r _res {o}\n{body}"),
    What("split", "%%arun --split -r _res {o}\n{body}"),
    What("bg-job", "_j = %arun --bg -q {o} bash -c {b}\n_res = await _j", background=True),
    What("pipeline-py-first", "%apipe -r _res {o} py:_src | bash -c {b}"),
    What("pipeline-py-middle", "%apipe -r _res {o} bash -c {b} | py:_upper | cat"),
    What("pipeline-py-last", "%apipe -r _res {o} bash -c {b} | py:_upper"),
    What("pipeline-async-last", "%apipe -r _res {o} bash -c {b} | py:_aupper"),
    What("parallel", "%%arun --parallel -r _all {o}\n{line}\necho other\n"),
    What("from-def", "def _f():\n    get_ipython().run_cell_magic('arun', '-r _res {o}', {quoted})\n_f()"),
    What("autoawait-off", "%%arun -r _res {o}\n{body}", before="%autoawait off", after="%autoawait on"),
    What("from-thread", THREAD, main_thread=False),
    What("bg-job-from-idle-task", "_j = await _t\n_res = await _j", background=True, before=IDLE_TASK),
]

SETUP = """
def _src(lines):
    yield from ("a", "b", "c")

def _upper(lines):
    for line in lines:
        yield line.upper()

async def _aupper(lines):
    async for line in lines:
        yield line.upper()
"""


def skip_reason(what: What, how: How) -> str | None:
    if how.name == "kill" and not what.background:
        return "kill() is a job's; a foreground cell is ended by interrupt"
    if how.interrupt and what.background:
        return "interrupting a cell that awaits a job stops the wait, never the job"
    if how.interrupt and not what.main_thread:
        return "SIGINT reaches only the main thread; a thread's command ends by exit or timeout"
    return None


def cases() -> Iterator[object]:
    for what in WHATS:
        for how in HOWS:
            reason = skip_reason(what, how)
            marks = [pytest.mark.skip(reason=reason)] if reason else []
            case_id = f"{what.name}-{how.name}" + (f"-skipped-because-{reason}" if reason else "")
            yield pytest.param(what, how, marks=marks, id=case_id)


@pytest.fixture(scope="module")
def k() -> Iterator[Kernel]:
    kernel = Kernel()
    kernel.run("%load_ext asyncmagic")
    kernel.run(SETUP)
    kernel.run(THREADS)
    kernel.run("%arun true")
    yield kernel
    kernel.shutdown()


@pytest.fixture(scope="module")
def baseline(k: Kernel) -> dict[str, object]:
    # pyzmq starts its garbage-collector thread on the first large zero-copy send, which
    # the flood cases would otherwise do mid-matrix: one big message first.
    k.run("print('x' * 2_000_000)")
    return {"threads": python_threads(k), "fds": our_fds(k), "fd_targets": fd_targets(k)}


LAZY_PLATFORM_THREADS = {"zmq.utils.garbage.GarbageCollectorThread"}
"""Started by pyzmq on its first large zero-copy send (the flood cases): not ours."""

THREADS = """
def _threads():
    import sys, threading
    frames = sys._current_frames()
    def name(t):
        kind = f'{type(t).__module__}.{type(t).__qualname__} {t.name}'
        frame = frames.get(t.ident)
        # The loop's default executor (asyncio.to_thread feeds --stdin) keeps its workers,
        # a bounded pool: an idle one (waiting in _worker) is not left behind, a busy one is.
        if t.name.startswith('asyncio_') and frame is not None and frame.f_code.co_name == '_worker':
            return kind + ' (idle executor worker)'
        return kind
    return sorted(name(t) for t in threading.enumerate())
"""


def python_threads(k: Kernel) -> list[str]:
    """The kernel's Python threads, by class and name. Not the OS count: native threads of
    libzmq come and go with load (11 -> 14 seen after the flood cases)."""
    return k.eval("_threads()")


def fd_targets(k: Kernel) -> list[str]:
    targets = []
    for fd in os.listdir(f"/proc/{k.pid}/fd"):
        try:
            targets.append(os.readlink(f"/proc/{k.pid}/fd/{fd}"))
        except OSError:
            continue  # closed while listed
    return sorted(targets)


def our_fds(k: Kernel) -> int:
    """The kernel's open fds, less IPython's history database (its journal comes and goes)."""
    return sum("/.ipython/" not in target for target in fd_targets(k))


def new_threads(k: Kernel, before: list[str]) -> list[str]:
    after = list(python_threads(k))
    for name in before:
        if name in after:
            after.remove(name)
    return [
        t
        for t in after
        if t.split()[0] not in LAZY_PLATFORM_THREADS and not t.endswith("(idle executor worker)")
    ]


def cell_for(template: str, how: How, marker: str) -> str:
    body = how.body.format(m=marker)
    options = how.options
    return template.format(
        o=options, body=body, b=shlex.quote(body), line=f"bash -c {shlex.quote(body)}", quoted=repr(body)
    )


def main_cell(what: What, how: How, marker: str) -> str:
    if how.name == "kill" and what.before:  # the job was started by the cell before
        return cell_for("_j = await _t\n_res = await _j.kill()", how, marker)
    if how.name == "kill":
        return cell_for("_j = %arun --bg -q {o} bash -c {b}\n_res = await _j.kill()", how, marker)
    return cell_for(what.template, how, marker)


def flooding_for(ex) -> float:
    """Seconds since the cell's first output message."""
    first = ex.first_time(lambda m: m["msg_type"] in ("stream", "display_data", "update_display_data"))
    return 0.0 if first is None else time.monotonic() - first


def interrupt_when(how: How, marker: str):
    if how.flood:  # half a second into the flood: the display paces it by now
        return lambda ex: flooding_for(ex) > 0.5
    if how.interrupt:
        return lambda ex: bool(sleeping(marker))
    return None


@pytest.mark.parametrize("what, how", list(cases()))
def test_matrix(k: Kernel, baseline: dict[str, object], marker: str, what: What, how: How) -> None:
    k.run("_res = _all = None")
    if what.before:
        k.run(cell_for(what.before, how, marker))
    started = time.monotonic()
    try:
        ex = k.execute(
            main_cell(what, how, marker),
            timeout=BOUND + 10,
            interrupt_when=interrupt_when(how, marker),
            again_after=how.again_after,
        )
    finally:
        if what.after:
            k.run(what.after)
    took = time.monotonic() - started
    assert took < BOUND, f"the cell took {took:.1f} s"
    if how.ok:
        assert ex.error is None, ex.error
    else:
        failed = ex.error is not None or "UsageError" in ex.stderr or "CommandError" in ex.stderr
        assert failed, f"a {how.name} cell must fail visibly: {ex.streams}"
    if what.name == "parallel" and how.interrupt:
        assert "interrupted" in ex.error["evalue"]
    elif what.name == "parallel":
        assert k.eval("_all[0].ended") == how.ended
        assert k.eval("_all[1].ok") is True
    elif what.background and how.name != "kill":
        assert k.eval("_j.result.ended") == how.ended, ex.streams
    else:
        assert k.eval("_res.ended") == how.ended, ex.streams
    assert none_left(processes_with, marker), f"left alive: {processes_with(marker)}"
    assert k.eval("1+1") == 2


# -- failures inside what runs: Python stages, input sources, stages that cannot start --

FAILING_STAGES = """
def _raise_early(lines):
    raise ValueError("early")

def _raise_late(lines):
    yield "a"
    yield "b"
    raise ValueError("late")

def _exit_late(lines):
    yield "a"
    raise SystemExit(3)

def _ki_late(lines):
    yield "a"
    raise KeyboardInterrupt

async def _araise_early(lines):
    raise ValueError("early")
    yield

async def _araise_late(lines):
    yield "a"
    raise ValueError("late")

async def _aexit_late(lines):
    yield "a"
    raise SystemExit(3)

async def _aki_late(lines):
    yield "a"
    raise KeyboardInterrupt

def _source_raises():
    yield "a\\n"
    raise ValueError("broke")
"""

STAGE_FAILURES = {
    "raise-early": "ValueError",
    "raise-late": "ValueError",
    "exit": "SystemExit",
    "ki": "KeyboardInterrupt",
}
STAGE_FUNCTIONS = {
    "raise-early": "raise_early",
    "raise-late": "raise_late",
    "exit": "exit_late",
    "ki": "ki_late",
}
PLACES = {
    "first": "%apipe -r _res py:{f} | bash -c 'cat; exec sleep {m}'",
    "middle": "%apipe -r _res bash -c 'seq 3; exec sleep {m}' | py:{f} | bash -c 'cat; exec sleep {m}'",
    "last": "%apipe -r _res bash -c 'seq 3; exec sleep {m}' | py:{f}",
}


@pytest.fixture(scope="module")
def failing(k: Kernel, baseline: dict[str, object]) -> Kernel:
    k.run(FAILING_STAGES)
    return k


def ends_failed_and_clean(k: Kernel, ex, marker: str, says: str) -> None:
    assert ex.error is not None, ex.streams
    assert says in ex.error["evalue"] + ex.stderr, (ex.error["evalue"], ex.streams)
    assert len(ex.error["traceback"]) == 1, ex.error["traceback"]
    assert none_left(processes_with, marker), f"left alive: {processes_with(marker)}"
    assert k.eval("1+1") == 2


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("place", list(PLACES))
@pytest.mark.parametrize("failure", list(STAGE_FAILURES))
def test_a_failing_python_stage_ends_the_pipeline(failing, marker, failure, place, kind):
    function = ("_a" if kind == "async" else "_") + STAGE_FUNCTIONS[failure]
    k = failing
    k.run("_res = None")
    ex = k.execute(PLACES[place].format(f=function, m=marker), timeout=BOUND + 10)
    assert ex.idle_at - ex.started < BOUND
    ends_failed_and_clean(k, ex, marker, STAGE_FAILURES[failure])
    assert k.eval("_res.ok") is False


INPUT_CELLS = {
    "arun": "%arun -r _res --stdin {src} bash -c 'cat; exec sleep {m}'",
    "cell-arun": "%%arun -r _res --stdin {src}\ncat; exec sleep {m}",
    "pty": "%arun --pty -r _res --stdin {src} bash -c 'cat; exec sleep {m}'",
    "apipe": "%apipe -r _res --stdin {src} bash -c 'cat; exec sleep {m}' | cat",
    "bg-job": "_j = %arun --bg -q --stdin {src} bash -c 'cat; exec sleep {m}'\n_res = await _j",
    "parallel": "%%arun --parallel -r _all --stdin {src}\nbash -c 'cat; exec sleep {m}'",
}


@pytest.mark.parametrize("where", list(INPUT_CELLS))
def test_an_input_source_that_raises_ends_the_command_naming_it(failing, marker, where):
    k = failing
    k.run("_g = _source_raises()")
    ex = k.execute(INPUT_CELLS[where].format(src="_g", m=marker), timeout=BOUND + 10)
    ends_failed_and_clean(k, ex, marker, "--stdin _g: input failed: ValueError: broke")


@pytest.mark.parametrize("where", list(INPUT_CELLS))
def test_an_input_source_of_a_wrong_type_is_refused_before_anything_starts(failing, marker, where):
    k = failing
    k.run("_nums = [3, 1, 2]")
    ex = k.execute(INPUT_CELLS[where].format(src="_nums", m=marker), timeout=BOUND)
    lines = ex.stderr.strip().splitlines()
    assert len(lines) == 1 and "UsageError: --stdin _nums" in lines[0] and "item 1 is int" in lines[0], (
        ex.streams
    )
    assert not processes_with(marker)
    assert k.eval("1+1") == 2


CANNOT_START = {
    "apipe-first": "%apipe no-such-command-{m} | bash -c 'exec sleep {m}'",
    "apipe-middle": "%apipe bash -c 'exec sleep {m}' | no-such-command-{m} | cat",
    "apipe-last": "%apipe bash -c 'exec sleep {m}' | no-such-command-{m}",
    "stdin-missing-path": (
        "import pathlib\n_p = pathlib.Path('/nonexistent-{m}')\n%arun --stdin _p bash -c 'exec sleep {m}'"
    ),
    "apipe-output-into-missing-dir": "%apipe bash -c 'exec sleep {m}' | cat > /nonexistent-{m}/out",
    "bg-job-cwd": "_j = %arun --bg --cwd /nonexistent-{m} bash -c 'exec sleep {m}'",
}


@pytest.mark.parametrize("where", list(CANNOT_START))
def test_a_command_that_cannot_start_is_one_line_and_leaves_nothing(failing, marker, where):
    k = failing
    ex = k.execute(CANNOT_START[where].format(m=marker), timeout=BOUND)
    lines = ex.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("UsageError: "), ex.streams
    assert none_left(processes_with, marker), f"left alive: {processes_with(marker)}"
    assert k.eval("1+1") == 2


# -- the kernel's own end: %unload_ext, shutdown, restart, SIGKILL ------------------------

RUNNING = {
    "bg-job": "_j = %arun --bg -q sleep {m}",
    "bg-job-ignoring-term": "_j = %arun --bg -q --grace 1 bash -c \"trap '' INT TERM; sleep {m}; sleep {m}\"",
    "bg-pty-job": "_j = %arun --bg -q --pty sleep {m}",
    "bg-double-fork": "_j = %arun --bg -q bash -c '(sleep {m} &); exec sleep {m}'",
    "bg-pipeline": "%%arun --bg -q\nsleep {m} | cat",
    "busy-cell": "%arun sleep {m}",
}
ENDS = ["unload", "shutdown", "restart", "kernel-sigkill"]


def end_skip_reason(running: str, end: str) -> str | None:
    if running == "busy-cell" and end == "unload":
        return "a busy kernel runs no %unload_ext until the cell ends"
    return None


def end_cases() -> Iterator[object]:
    for running in RUNNING:
        for end in ENDS:
            reason = end_skip_reason(running, end)
            marks = [pytest.mark.skip(reason=reason)] if reason else []
            yield pytest.param(
                running,
                end,
                marks=marks,
                id=f"{running}-{end}" + (f"-skipped-because-{reason}" if reason else ""),
            )


@pytest.mark.parametrize("running, end", list(end_cases()))
def test_the_kernels_end_ends_everything(marker, running, end):
    k = Kernel()
    try:
        k.run("%load_ext asyncmagic")  # its own cell: the next one is awaited
        cell = RUNNING[running].format(m=marker)
        if running == "busy-cell":
            k.submit(cell)
        else:
            k.run(cell)
        k.wait_until(lambda: bool(sleeping(marker)), what="the command to start")
        if end == "unload":
            k.run("%unload_ext asyncmagic")
        elif end == "shutdown":
            k.shutdown()
        elif end == "restart":
            k.manager.restart_kernel(now=False)
        else:
            os.kill(k.pid, signal.SIGKILL)
        assert none_left(processes_with, marker, within=BOUND), f"left alive: {processes_with(marker)}"
    finally:
        k.client.stop_channels()
        if k.manager.is_alive():
            k.manager.shutdown_kernel(now=True)


def test_matrix_leaves_no_threads_or_fds(k: Kernel, baseline: dict[str, object]) -> None:
    """After everything above, in the same kernel: no Python thread and no fd more than
    before it (a thread of a Python stage or the child watcher may still be finishing, an
    fd may still be closing: wait for the counts to settle). IPython's history database
    opens and closes its journal on its own: not counted."""

    def settled() -> bool:
        return not new_threads(k, baseline["threads"]) and our_fds(k) <= baseline["fds"]

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not settled():
        k.pump(0.05)
    assert new_threads(k, baseline["threads"]) == []
    grown = Counter(fd_targets(k)) - Counter(baseline["fd_targets"])
    assert our_fds(k) <= baseline["fds"], f"new fds: {sorted(grown.elements())}"
