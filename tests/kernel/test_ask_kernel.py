"""--ask in a real kernel, answered on the stdin channel as a frontend does."""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from kernelclient import Execution, Kernel, none_left, processes_with, usage_error

pytestmark = pytest.mark.kernel


def answering(
    kernel: Kernel, code: str, answer: Callable[[dict], str | None], timeout: float = 60, **kw
) -> tuple[Execution, list[dict]]:
    """Run ``code``, answering each input_request with ``answer(content)`` (None: leave it open)."""
    ex = kernel.submit(code, **kw)
    requests: list[dict] = []
    deadline = time.monotonic() + timeout
    while not ex.done:
        if time.monotonic() > deadline:
            raise TimeoutError(f"cell did not finish:\n{code}\n{ex.streams}")
        kernel.pump(0.01)
        try:
            msg = kernel.client.get_stdin_msg(timeout=0.01)
        except queue.Empty:
            continue
        assert msg["parent_header"]["msg_id"] == ex.msg_id  # the box belongs to this cell
        requests.append(msg["content"])
        value = answer(msg["content"])
        if value is not None:
            kernel.client.input(value)
    return ex, requests


def all_messages(ex: Execution) -> str:
    return json.dumps([m["content"] for _, m in ex.messages])


def test_read_p_and_getpass_are_asked_and_the_secret_shows_nowhere(kernel: Kernel):
    code = (
        "%%arun --ask -r _asked\n"
        'read -p "Project name: " name\n'
        'echo "creating $name"\n'
        'python3 -c \'import getpass; print(len(getpass.getpass("Token: ")), "chars")\'\n'
    )
    answers = iter(["myproj", "s3cr3t-Tok"])
    ex, requests = answering(kernel, code, lambda c: next(answers))
    assert ex.error is None, ex.error
    # The prompt is the output's last line, right above the box: not repeated as its label.
    assert requests == [{"prompt": "", "password": False}, {"prompt": "", "password": True}]
    assert ex.stdout.startswith("Project name: creating myproj\nToken: ")
    assert "creating myproj\n" in ex.stdout and "10 chars" in ex.stdout
    assert "s3cr3t" not in all_messages(ex)
    assert "s3cr3t" not in kernel.eval("_asked.stdout + _asked.stderr + repr(_asked)")
    log = kernel.eval("_asked.log_path or ''")
    assert not log or "s3cr3t" not in Path(log).read_text()


def test_python_input_and_a_program_opening_dev_tty_are_asked(kernel: Kernel):
    code = (
        "%%arun --ask\n"
        'python3 -c \'print("got", input("Q? "))\'\n'
        'python3 -c \'import os; fd = os.open("/dev/tty", os.O_RDWR); os.write(fd, b"tty> "); '
        'print("tty said", os.read(fd, 100).decode().strip())\'\n'
    )
    answers = iter(["forty-two", "hello"])
    ex, requests = answering(kernel, code, lambda c: next(answers))
    assert ex.error is None, ex.error
    assert len(requests) == 2
    assert "Q? got forty-two\n" in ex.stdout and "tty> tty said hello\n" in ex.stdout


def test_given_input_answers_first_then_the_person_is_asked(kernel: Kernel):
    code = "%%arun --ask --input 'one\\n'\nread -p 'A: ' a\nread -p 'B: ' b\necho \"$a $b\""
    ex, requests = answering(kernel, code, lambda c: "two")
    assert ex.error is None, ex.error
    assert len(requests) == 1  # for B: the given line answered A:
    assert ex.stdout == "A: B: one two\n"


def test_the_loop_runs_while_the_box_is_open(kernel: Kernel, tmp_path: Path):
    ticks = tmp_path / "ticks"
    kernel.run(
        "import asyncio, pathlib\n"
        f"_ticks = pathlib.Path({str(ticks)!r})\n"
        "async def _ticker():\n"
        "    while True:\n"
        "        with _ticks.open('a') as f:\n"
        "            f.write('.')\n"
        "        await asyncio.sleep(0.01)\n"
        "_tt = asyncio.ensure_future(_ticker())"
    )
    seen: list[int] = []

    def answer(content: dict) -> str:
        before = len(ticks.read_text())
        deadline = time.monotonic() + 30
        while len(ticks.read_text()) < before + 5:  # the box is open, the ticker goes on
            assert time.monotonic() < deadline, "the ticker stopped while the box was open"
            time.sleep(0.01)
        seen.append(len(ticks.read_text()) - before)
        return "ok"

    try:
        ex, _ = answering(kernel, "%arun --ask read -p 'Go? ' x", answer)
        assert ex.error is None and seen and seen[0] >= 5
    finally:
        kernel.run("_tt.cancel()")


def test_interrupting_while_the_box_is_open_ends_the_command(kernel: Kernel, marker: str):
    ex = kernel.submit(f"%%arun --ask\nread -p 'Wait: ' x # {marker}\nsleep {marker}")
    deadline = time.monotonic() + 30
    while True:
        kernel.pump(0.01)
        try:
            kernel.client.get_stdin_msg(timeout=0.01)
            break
        except queue.Empty:
            assert time.monotonic() < deadline, "no input_request"
    kernel.manager.interrupt_kernel()
    kernel.wait_until(lambda: ex.done, what="the interrupted cell to end")
    assert ex.error is not None and "interrupted" in ex.error["evalue"]
    assert none_left(processes_with, marker)
    assert kernel.run("1 + 1").result == "2"


def test_the_timeout_counts_while_the_box_is_open(kernel: Kernel, marker: str):
    ex, requests = answering(kernel, f"%%arun --ask -t 1\nread -p 'Never: ' x # {marker}", lambda c: None)
    assert requests and ex.error is not None and "timed out after 1.0 s" in ex.error["evalue"]
    assert none_left(processes_with, marker)


def test_headless_a_question_fails_at_once_naming_the_prompt(kernel: Kernel, marker: str):
    ex = kernel.execute(f"%arun --ask read -s -p 'Password: ' pw # {marker}", allow_stdin=False)
    assert ex.error is not None
    assert "asked 'Password:' and no one can answer (headless); give --input" in ex.error["evalue"]
    assert none_left(processes_with, marker)


def test_a_background_job_that_asks_fails_naming_the_prompt(kernel: Kernel, marker: str):
    ex = kernel.execute(f"_aj = %arun --bg -q --ask read -p 'Name: ' n # {marker}\nawait _aj")
    assert ex.error is not None
    assert "asked 'Name:' and no one can answer (a background job); give --input" in ex.error["evalue"]
    assert none_left(processes_with, marker)


def test_a_prompt_like_line_that_is_not_read_is_not_asked(kernel: Kernel, tmp_path: Path):
    gate = tmp_path / "gate"
    ex = kernel.submit(f"%arun --ask printf 'Name: '; while [ ! -e {gate} ]; do sleep 0.05; done; echo done")
    kernel.wait_until(lambda: "Name: " in ex.stdout, what="the prompt-like text")
    deadline = time.monotonic() + 1.5  # several looks of the asker (at most 0.3 s apart)
    while time.monotonic() < deadline:
        kernel.pump(0.01)
        with pytest.raises(queue.Empty):
            kernel.client.get_stdin_msg(timeout=0.01)
    gate.touch()
    kernel.wait_until(lambda: ex.done, what="the command to end")
    assert ex.error is None and ex.stdout.endswith("done\n")


@pytest.mark.parametrize(
    "line, message",
    [
        ("%%arun --ask --parallel\ntrue", "--ask asks for one command at a time"),
        ("%arun --ask --bg --interactive cat", "--ask asks for one command at a time"),
        ("%apipe --ask cat", "%apipe has no --ask: its stages read pipes, not a terminal"),
    ],
)
def test_bad_ask_lines_are_one_line(kernel: Kernel, line: str, message: str):
    assert message in usage_error(kernel.execute(line))
