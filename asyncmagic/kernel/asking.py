"""Asking the person for a command's answer (``--ask``), without blocking the kernel's loop.

- A notebook (JupyterLab, Notebook 7, jupyter console): an ``input_request`` on the
  kernel's stdin channel, as Python's ``input()`` sends it (``password: true`` for a
  secret; the prompt itself is the output's last line, right above the box), and the
  reply polled without blocking: ipykernel's own ``raw_input`` blocks
  the main thread, so every task of the loop would stop while the box is open.
- Terminal IPython: the line is read from the terminal by the loop itself (echo off for a
  secret), so an interrupt stops the reading and no thread is left waiting on stdin.
- Nobody (a headless run, whose execute request says ``allow_stdin: false``; a background
  job): :class:`~asyncmagic.engine.prompts.NoAnswer` at once, naming the prompt.

An answer is never printed or kept: the command reads it from its terminal, and the
terminal's echo of it is left out of the output.
"""

from __future__ import annotations

import asyncio
import os
import sys
import termios
from typing import Any

from ..engine.prompts import Ask, NoAnswer, Prompt

POLL_EVERY = 0.02
"""Seconds between two looks at the stdin channel for the reply."""


def asker(shell: Any, *, background: bool) -> Ask:
    """How to ask for the command of the current cell (taken now, in the cell's context)."""
    if background:
        return _nobody("a background job")
    kernel = getattr(shell, "kernel", None)
    if kernel is None:
        return _at_the_terminal
    parent = kernel.get_parent("shell") or {}
    if not parent.get("content", {}).get("allow_stdin", False):
        return _nobody("headless")
    ident = _parent_ident(kernel)
    lock = _lock(kernel)

    async def ask(prompt: Prompt) -> str:
        async with lock:  # one box at a time: the channel has one reply per request
            return await _input_request(kernel, parent, ident, prompt)

    return ask


def _nobody(why: str) -> Ask:
    async def ask(prompt: Prompt) -> str:
        raise NoAnswer(
            f"asked {prompt.text.strip() or 'for input'!r} and no one can answer ({why}); give --input"
        )

    return ask


def _parent_ident(kernel: Any) -> Any:
    context_var = getattr(kernel, "_shell_parent_ident", None)
    if context_var is not None and hasattr(kernel, "_get_shell_context_var"):
        return kernel._get_shell_context_var(context_var)
    return kernel._parent_ident["shell"]


_locks: dict[int, asyncio.Lock] = {}


def _lock(kernel: Any) -> asyncio.Lock:
    return _locks.setdefault(id(kernel), asyncio.Lock())


async def _input_request(kernel: Any, parent: dict[str, Any], ident: Any, prompt: Prompt) -> str:
    import zmq

    sys.stdout.flush()
    sys.stderr.flush()
    socket, session = kernel.stdin_socket, kernel.session
    while True:  # replies to earlier, abandoned requests are stale
        try:
            socket.recv_multipart(zmq.NOBLOCK)
        except zmq.ZMQError:
            break
    # The prompt is already the last line of the output, just above the box: as the box's
    # label too, it would read twice ("Project name:" / "Project name: myproj").
    content = {"prompt": "", "password": prompt.secret}
    session.send(socket, "input_request", content, parent, ident=ident)
    while True:
        await asyncio.sleep(POLL_EVERY)
        _, reply = session.recv(socket, mode=zmq.NOBLOCK)
        if reply is not None:
            return str(reply.get("content", {}).get("value", ""))


async def _at_the_terminal(prompt: Prompt) -> str:
    """Read one line from the terminal IPython runs in, on the loop (cooked mode: the
    terminal edits the line; Enter makes it readable)."""
    fd = sys.stdin.fileno()
    loop = asyncio.get_running_loop()
    saved = termios.tcgetattr(fd) if prompt.secret else None
    if saved is not None:
        quiet = list(saved)
        quiet[3] &= ~termios.ECHO
        termios.tcsetattr(fd, termios.TCSANOW, quiet)
    ready: asyncio.Future[None] = loop.create_future()
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
        line = os.read(fd, 65536).decode(errors="replace")
    finally:
        loop.remove_reader(fd)
        if saved is not None:
            termios.tcsetattr(fd, termios.TCSANOW, saved)
            print(file=sys.stderr)  # the Enter that was not echoed
    return line.rstrip("\n") if line else "\x04"
