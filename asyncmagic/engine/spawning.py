"""What a child is started with: its argv, its environment, its SIGINT action, and the one
atomic spawn (a cancellation cannot leave a process nobody owns)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from typing import Any

from .childwatch import use_pidfds
from .pathlookup import find_program, runs_itself

SCRIPT_ARG_MAX = 64 * 1024
"""Scripts longer than this (bytes) are passed in a file, not as one argument: Linux caps
one argument at 128 KiB (``MAX_ARG_STRLEN``, E2BIG past it)."""


_shells: dict[str | None, str] = {}


def default_shell() -> str:
    """bash when the machine has it, else sh (looked up once for each ``PATH``)."""
    path = os.environ.get("PATH")
    shell = _shells.get(path)
    if shell is None:
        shell = _shells[path] = shutil.which("bash") or "/bin/sh"
    return shell


_PLAIN_LINE = re.compile(r"[A-Za-z0-9_@%+=:,./ \t-]+")
"""Words the shell passes on as they are, between spaces: no quotes, ``$``, globs, ``~``,
braces, redirections, separators, comments, backslashes or a second line."""

_SHELL_ONLY = frozenset(
    ". : [ [[ ]] { } ! alias bg bind break builtin caller case cd command compgen complete"
    " compopt continue coproc declare dirs disown do done elif else enable esac eval exec exit"
    " export fc fg fi for function getopts hash help history if in jobs kill let local logout"
    " mapfile popd printf pushd pwd read readarray readonly return select set shift shopt"
    " source suspend test then time times trap type typeset ulimit umask unalias unset until"
    " wait while".split()
)
"""bash's keywords, and its builtins but those of :data:`_AS_PROGRAMS`: a line starting
with one needs the shell."""

_AS_PROGRAMS = frozenset(("true", "false", "echo"))
"""Builtins whose programs do the same with plain words, but for ``--help`` and
``--version`` (the programs print their help; the builtins do not)."""


def direct_argv(
    script: str, env: Mapping[str, str], cwd: str | os.PathLike[str] | None = None
) -> list[str] | None:
    """The argv of a one-line script that is a plain command (``make -j4 all``), run
    without a shell; None when it needs one.

    For such a line ``bash -c`` would look the program up on ``PATH`` and exec it in its own
    place, so the command is the same process either way; skipping bash saves its start-up
    (about 1 ms a command, most of a small cell's or a ``--parallel`` line's cost). Anything
    a shell would change goes to the shell: quoting, expansions, assignments, builtins,
    ``BASH_ENV`` (``--keep``'s state) or an exported function, a ``SHLVL`` bash would
    warn about, a program not found (the shell's message and 127) or one exec cannot run.
    The command's environment is the one bash gives it (:func:`as_bash_starts`). ``cwd``:
    where the command runs.
    """
    direct = _direct_command(script, env, cwd)
    return None if direct is None else direct[0]


def _direct_command(
    script: str, env: Mapping[str, str], cwd: str | os.PathLike[str] | None
) -> tuple[list[str], str] | None:
    """:func:`direct_argv`, and the program it found."""
    if not _PLAIN_LINE.fullmatch(script.strip()):
        return None
    words = script.split()
    name = words[0]
    if name in _SHELL_ONLY or "=" in name or name.startswith("-") or env.get("BASH_ENV"):
        return None
    if f"BASH_FUNC_{name}%%" in env or (name in _AS_PROGRAMS and {"--help", "--version"} & set(words)):
        return None
    if _shell_level(env.get("SHLVL")) is None:
        return None
    path = env.get("PATH", os.defpath)
    if "/" in name:
        program = shutil.which(os.path.join(cwd or os.getcwd(), name))
        executable = program is not None and runs_itself(program)
    elif all(os.path.isabs(d) for d in path.split(os.pathsep)):
        program, executable = find_program(name, path)
    else:  # a PATH with relative folders is searched from the command's cwd
        return None
    if program is None or not executable:
        return None
    return words, program  # argv[0] as typed, as bash gives it: what the program's messages name


def as_bash_starts(env: dict[str, str], cwd: str | os.PathLike[str] | None, typed: str, program: str) -> None:
    """Set in ``env`` what ``bash -c`` sets for the one command it execs: ``PWD``, ``OLDPWD``
    (gone unless it names a folder), ``SHLVL`` (see :func:`_shell_level`) and ``_`` (the
    program's path as bash found it: as ``typed`` when it has a slash)."""
    where = os.path.abspath(cwd if cwd is not None else os.getcwd())
    pwd = env.get("PWD")
    try:  # kept if it names that folder, even through a symlink
        same = bool(pwd) and os.path.isabs(pwd) and os.path.samefile(pwd, where)
    except OSError:
        same = False
    if not same:
        env["PWD"] = where
    oldpwd = env.get("OLDPWD")
    if oldpwd is not None and not (oldpwd and os.path.isdir(os.path.join(where, oldpwd))):
        del env["OLDPWD"]
    env["SHLVL"] = _shell_level(env.get("SHLVL")) or "0"
    env["_"] = typed if "/" in typed else program


def _shell_level(value: str | None) -> str | None:
    """``SHLVL`` as ``bash -c`` leaves it for the command it execs: one up as it starts,
    one down as it execs. None for a value bash would warn about or read its own way
    (past 998, signs, words): such a line is left to bash."""
    if value is None:
        return "0"
    digits = value.strip()
    if digits.isascii() and digits.isdigit() and int(digits) < 999:
        return str(int(digits))
    return None


def child_env(env: Mapping[str, str | None] | None) -> dict[str, str]:
    """The child's environment: ours, the overrides (None removes a variable), and
    unbuffered Python unless set."""
    merged = _our_environ()
    for name, value in (env or {}).items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    merged.setdefault("PYTHONUNBUFFERED", "1")
    return merged


_environ: tuple[dict[bytes, bytes], dict[str, str]] = ({}, {})


def _our_environ() -> dict[str, str]:
    """A copy of ``os.environ``, decoded again only when it changed.

    Decoding it costs a Python call or two a variable (about 0.1 ms in a kernel, most of a
    tenth of a short command's cost); comparing its bytes with the last ones seen is one
    loop in C. (``_data`` is CPython's; without it, decode.)
    """
    global _environ
    data = getattr(os.environ, "_data", None)
    if not isinstance(data, dict):
        return dict(os.environ)
    seen, text = _environ
    if data != seen:
        seen, text = dict(data), dict(os.environ)
        _environ = seen, text  # one assignment: a thread reading it sees the old pair or the new
    return dict(text)


def argv_of(
    command: str | Sequence[str],
    shell: str | None,
    always: ExitStack,
    env: dict[str, str],
    cwd: str | os.PathLike[str] | None,
) -> tuple[list[str], str, int | None]:
    """The argv, the command as text, and the fd the child must inherit (a long script's).

    A string runs as a script of ``shell``, passed as an argument (so a command in it that
    reads stdin cannot swallow the lines after it), or past :data:`SCRIPT_ARG_MAX` in an
    unnamed file; ``always`` closes that file once the spawn is over. With the default
    shell a plain one-line command runs without it (:func:`direct_argv`; ``env`` then gets
    what bash would have set in it, :func:`as_bash_starts`).
    """
    if isinstance(command, str):
        if shell is None and (direct := _direct_command(command, env, cwd)) is not None:
            words, program = direct
            as_bash_starts(env, cwd, words[0], program)
            return words, command, None
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
