"""What a child is started with: its argv, its environment, its SIGINT action, and the one
atomic spawn (a cancellation cannot leave a process nobody owns)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from typing import Any

from .childwatch import use_pidfds

SCRIPT_ARG_MAX = 64 * 1024
"""Scripts longer than this (bytes) are passed in a file, not as one argument: Linux caps
one argument at 128 KiB (``MAX_ARG_STRLEN``, E2BIG past it)."""


def default_shell() -> str:
    """bash when the machine has it, else sh."""
    return shutil.which("bash") or "/bin/sh"


def child_env(env: Mapping[str, str | None] | None) -> dict[str, str]:
    """The child's environment: ours, the overrides (None removes a variable), and
    unbuffered Python unless set."""
    merged = dict(os.environ)
    for name, value in (env or {}).items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    merged.setdefault("PYTHONUNBUFFERED", "1")
    return merged


def argv_of(
    command: str | Sequence[str], shell: str | None, always: ExitStack
) -> tuple[list[str], str, int | None]:
    """The argv, the command as text, and the fd the child must inherit (a long script's).

    A string runs as a script of ``shell``, passed as an argument (so a command in it that
    reads stdin cannot swallow the lines after it), or past :data:`SCRIPT_ARG_MAX` in an
    unnamed file; ``always`` closes that file once the spawn is over.
    """
    if isinstance(command, str):
        shell = shell or default_shell()
        if len(command.encode()) <= SCRIPT_ARG_MAX:
            return [shell, "-c", command], command, None
        fd = _script_file(command)
        always.callback(os.close, fd)
        return [shell, f"/dev/fd/{fd}"], command, fd
    argv = [os.fspath(a) for a in command]
    return argv, " ".join(argv), None


async def spawn(
    loop: asyncio.AbstractEventLoop,
    protocol: asyncio.SubprocessProtocol,
    argv: list[str],
    preexec: Callable[[Callable[[], None] | None], Callable[[], None]] | None = None,
    **options: Any,
) -> tuple[asyncio.SubprocessTransport, bool]:
    """Start ``argv`` as the leader of a new session; the transport, and whether the caller
    was cancelled meanwhile.

    A spawn is atomic: a cancellation arriving during it would leave a process nobody owns,
    so it is noted and returned, for the caller to end the process and then go on
    cancelling. ``preexec`` wraps the ``preexec_fn`` (a controlling terminal).
    """
    use_pidfds()
    sigint = _SigintDefault()
    preexec_fn = sigint.arm()
    if preexec is not None:
        preexec_fn = preexec(preexec_fn)
    try:
        task = asyncio.ensure_future(
            loop.subprocess_exec(
                lambda: protocol, *argv, start_new_session=True, preexec_fn=preexec_fn, **options
            )
        )
        cancelled = False
        while True:
            try:
                transport, _ = await asyncio.shield(task)
                return transport, cancelled
            except asyncio.CancelledError:
                if task.cancelled():
                    raise
                cancelled = True
    finally:
        sigint.restore()


def _script_file(script: str) -> int:
    """An fd of an unnamed temporary file holding ``script``, for ``shell /dev/fd/N``.

    Unlinked at once, so nothing is left behind however the command ends; the shell
    reopens it through ``/dev/fd`` and reads it from the start.
    """
    fd, path = tempfile.mkstemp(prefix="asyncmagic-script-")
    os.unlink(path)
    view = memoryview(script.encode())
    while view:
        view = view[os.write(fd, view) :]
    return fd


class _SigintDefault:
    """Make children start with the default SIGINT action.

    ipykernel ignores SIGINT between cells, and an ignored signal stays ignored across
    exec, so a child spawned then could not be interrupted. A signal with a Python
    handler resets to the default on exec; so, in the main thread, we install a no-op
    handler around the spawn (cheap, and keeps the fast vfork path) and restore the old one
    when the spawn is done. Elsewhere we fall back to a ``preexec_fn`` that resets it in
    the child.
    """

    def __init__(self) -> None:
        self._saved: Any = None

    def arm(self) -> Callable[[], None] | None:
        """Prepare a spawn; returns the ``preexec_fn`` to use (None on the fast path)."""
        if threading.current_thread() is not threading.main_thread():
            return _reset_sigint
        if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
            self._saved = signal.SIG_IGN
            signal.signal(signal.SIGINT, _ignore)
        return None

    def restore(self) -> None:
        """Put the old SIGINT action back, once the spawn is done."""
        if self._saved is not None and signal.getsignal(signal.SIGINT) is _ignore:
            signal.signal(signal.SIGINT, self._saved)
        self._saved = None


def _ignore(signum: int, frame: object) -> None:
    """Stands in for SIG_IGN while a child is spawned."""


def _reset_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
