"""%arun in terminal IPython, driven through a pseudo-terminal as a person types."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

IPYTHON = Path(sys.executable).with_name("ipython")


def _controlling_terminal() -> None:
    """Make the pty the child's controlling terminal, so Ctrl-C typed there sends SIGINT."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


IPYTHON_ARGS = ["--no-banner", "--colors=nocolor", "--HistoryManager.enabled=False"]


class Terminal:
    """A program under a pseudo-terminal of its own: terminal IPython by default."""

    def __init__(self, simple: bool = True, argv: list[str] | None = None) -> None:
        self.master, slave = pty.openpty()
        env = dict(os.environ, TERM="dumb" if simple else "xterm", COLUMNS="200", LINES="50")
        if argv is None:
            argv = [str(IPYTHON), *(["--simple-prompt"] if simple else []), *IPYTHON_ARGS]
        self.proc = subprocess.Popen(
            argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
            preexec_fn=_controlling_terminal,
        )
        os.close(slave)
        self.screen = ""

    def read_until(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.screen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{text!r} not seen; screen:\n{self.screen[-2000:]}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                self.screen += os.read(self.master, 65536).decode(errors="replace")
        return self.screen

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\r")

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        os.close(self.master)


@pytest.fixture
def terminal():
    t = Terminal()
    yield t
    t.close()


@pytest.fixture
def full_terminal():
    """IPython's own prompt (prompt_toolkit), as a person gets it without --simple-prompt."""
    t = Terminal(simple=False)
    yield t
    t.close()


def test_arun_streams_in_terminal_ipython(terminal: Terminal):
    terminal.read_until("In [1]:")
    terminal.type("%load_ext asyncmagic")
    terminal.read_until("In [2]:")
    terminal.type("%arun echo from-the-shell; echo to-stderr >&2; exit 3")
    screen = terminal.read_until("In [3]:")
    assert "from-the-shell" in screen and "to-stderr" in screen
    assert "CommandError: echo from-the-shell; echo to-stderr >&2; exit 3: exit 3" in screen
    terminal.type("r = %arun -q echo captured")
    terminal.read_until("In [4]:")
    terminal.type("print(r.stdout.upper(), r.returncode)")
    assert "CAPTURED\n 0" in terminal.read_until("In [5]:").replace("\r", "")


def test_ctrl_c_interrupts_a_command_in_terminal_ipython(terminal: Terminal, marker: str):
    from kernelclient import processes_with

    terminal.read_until("In [1]:")
    terminal.type("%load_ext asyncmagic")
    terminal.read_until("In [2]:")
    terminal.type(f"%arun sleep {marker} & echo st''arted; sleep {marker}")
    terminal.read_until("started")
    os.write(terminal.master, b"\x03")
    screen = terminal.read_until("In [3]:")
    assert "interrupted" in screen
    assert processes_with(marker) == []


def test_split_and_parallel_print_text_in_terminal_ipython(terminal: Terminal, tmp_path: Path):
    """A terminal cannot redraw two columns: --split prints each line as it comes, labelled
    by its stream (issue 16.2: nothing showed until the end)."""
    gate = tmp_path / "gate"
    terminal.read_until("In [1]:")
    terminal.type("%load_ext asyncmagic")
    terminal.read_until("In [2]:")
    terminal.type(
        f"%arun --split echo o''ut; echo e''rr >&2; while [ ! -e {gate} ]; do sleep 0.01; done; echo l''ast"
    )
    terminal.read_until("[err] err")  # while the command still runs
    gate.touch()
    screen = terminal.read_until("In [3]:").replace("\r", "")
    assert "[out] out\n[err] err\n[out] last\n" in screen  # no HTML, no in-place updates
    terminal.type("%arun --parallel echo fan''ned")
    screen = terminal.read_until("In [4]:").replace("\r", "")
    assert "[1 echo fan''ned] fanned\n" in screen and "1 command, 0 failed" in screen


def test_awaiting_a_job_prints_nothing_twice_in_terminal_ipython(terminal: Terminal):
    """Issue 16.1: the job's lines were printed live to this terminal, then again by
    ``await job`` and ``%ajobs wait``."""
    terminal.read_until("In [1]:")
    terminal.type("%load_ext asyncmagic")
    terminal.read_until("In [2]:")
    terminal.type("_j = %arun --bg bash -c 'echo line-$((6*7)); echo err-$((6*7)) >&2'")
    terminal.read_until("In [3]:")
    # IPython's loop runs only while a cell runs: the job's lines come during this one.
    terminal.type("_r = await _j; print('awaited', _r.returncode)")
    terminal.read_until("awaited 0")
    terminal.type("%ajobs wait 1")
    screen = terminal.read_until("In [5]:")
    assert screen.count("line-42") == 1 and screen.count("err-42") == 1, screen


def test_ask_is_answered_at_the_terminal(terminal: Terminal):
    terminal.read_until("In [1]:")
    terminal.type("%load_ext asyncmagic")
    terminal.read_until("In [2]:")
    terminal.type("%arun --ask read -p 'Your name: ' n; echo hi $n")
    terminal.read_until("Your name: ")
    terminal.type("bob")
    screen = terminal.read_until("In [3]:").replace("\r", "")
    assert "hi bob\n" in screen
    terminal.type("%arun --ask python3 -c 'import getpass; print(len(getpass.getpass(\"Pin: \")))'")
    terminal.read_until("Pin: ")
    terminal.type("12345")
    screen = terminal.read_until("In [4]:").replace("\r", "")
    assert "5\n" in screen and "12345" not in screen.split("Pin: ")[-1]  # typed with echo off


def test_a_job_runs_and_ends_between_prompts_and_its_status_is_exact(full_terminal: Terminal):
    """Issue 16.4: between prompts the loop did not run, so a job that had printed everything
    showed `running · 0 bytes`, and its duration grew until someone looked."""
    import re

    full_terminal.read_until("In [1]:")
    full_terminal.type("%load_ext asyncmagic")
    full_terminal.read_until("In [2]:")
    full_terminal.type("j = %arun --bg sh -c 'echo o''ne; sleep 0.3; echo t''wo'")
    screen = full_terminal.read_until("[job 1] exit 0")  # at the prompt, no cell running
    ended = re.search(r"\[job 1\] exit 0 · ([\d.]+ m?s)", screen.replace("\r", ""))
    assert ended and "two" in screen
    time.sleep(2)  # looking later must not change what it says
    full_terminal.type("%ajobs")
    table = full_terminal.read_until("In [4]:").replace("\r", "").rsplit("%ajobs", 1)[1]
    # state, elapsed (the same as when it ended), exit status, bytes out ("one\ntwo\n")
    assert re.search(r"\bexit\s+" + re.escape(ended.group(1)) + r"\s+0\s+8\b", table), table


def test_a_job_ending_during_another_command_says_so_after_it(terminal: Terminal):
    terminal.read_until("In [1]:")
    terminal.type("%load_ext asyncmagic")
    terminal.read_until("In [2]:")
    terminal.type("%arun --bg -q sleep 0.2")
    terminal.read_until("In [3]:")
    terminal.type("%arun sh -c 'echo fi''rst; sleep 1; echo se''cond'")
    screen = terminal.read_until("[job 1] exit 0").replace("\r", "")
    command_output = screen.split("first", 1)[1].split("second", 1)[0]
    assert "[job" not in command_output  # not inside the other command's output
    assert screen.index("[job 1] exit 0") > screen.index("second")


@pytest.fixture
def console():
    """jupyter console (a real ipykernel behind it), typed into as a person does."""
    c = Terminal(argv=[str(IPYTHON.with_name("jupyter-console")), "--simple-prompt", "--kernel=python3"])
    yield c
    c.close()


def test_split_and_a_job_read_right_in_jupyter_console(console: Terminal):
    """Issue 16.2 and 16.4: --split came out as two empty headings, a job kept `[job 1]
    starting` forever (jupyter console shows a display once, never its updates)."""
    console.read_until("In [1]:", timeout=60)
    console.type("%load_ext asyncmagic")
    # The kernel's first cell imports everything: on a loaded machine, as slow as its start.
    console.read_until("In [2]:", timeout=60)
    console.type("%arun --split sh -c 'echo o''ut; echo e''rr >&2'")
    screen = console.read_until("In [3]:").replace("\r", "")
    assert "[out] out" in screen and "[err] err" in screen
    console.type("j = %arun --bg -q sh -c 'sleep 0.3; exit 3'")
    console.read_until("In [4]:")
    console.type("import asyncio; await asyncio.sleep(1)")  # the job ends meanwhile; its end is printed
    screen = console.read_until("In [5]:").replace("\r", "")
    assert "[job 1] started · pid " in screen and "[job 1] exit 3" in screen
