"""Making a magic awaitable: the cell stays busy while the kernel's event loop stays free.

IPython has no async magics, but it decides whether a cell is async *after* its input
transformers ran. :func:`await_magics` (an ``input_transformers_post`` stage) rewrites a
top-level ``get_ipython().run_cell_magic('arun', ...)`` or ``[x =]
get_ipython().run_line_magic('arun', ...)`` into ``await`` of this module's :func:`cell`
or :func:`line`, so ipykernel runs the cell as a task on its loop, and an interrupt
cancels that task. Where no rewrite applies (autoawait off, a magic inside a function)
the magic runs the same coroutine to the end with :func:`run_blocking`.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import contextvars
import signal
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

from IPython import get_ipython

T = TypeVar("T")

AWAITABLE_MAGICS: dict[str, set[str]] = {"cell": set(), "line": set()}
"""Magic names, by kind, whose top-level calls are rewritten; set by :func:`enable`."""

_owner: type | None = None
"""The class whose instances own those magics (IPython has an ``AsyncMagics`` of its own)."""


def enable(owner: type, *, cell: set[str], line: set[str]) -> None:
    """Rewrite top-level calls of these magics of ``owner``; called when the extension loads."""
    global _owner
    _owner = owner
    AWAITABLE_MAGICS["cell"] = set(cell)
    AWAITABLE_MAGICS["line"] = set(line)


_CALLS = {"run_cell_magic": "cell", "run_line_magic": "line"}


def await_magics(lines: list[str]) -> list[str]:
    """Input transformer: await top-level calls of asyncmagic's magics."""
    shell = get_ipython()
    if shell is None or not shell.autoawait or not _asyncio_runner(shell):
        return lines
    source = "".join(lines)
    if "get_ipython().run_" not in source:
        return lines
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return lines
    edits = []
    for stmt in tree.body:
        if isinstance(stmt, ast.Expr):
            call, value = stmt.value, False
        elif isinstance(stmt, ast.Assign):
            call, value = stmt.value, True
        else:
            continue
        kind = _magic_kind(call)
        if kind is not None:
            edits.append((call, kind, value))
    if not edits:
        return lines
    encoded = [line.encode() for line in source.splitlines(keepends=True)]
    for call, kind, value in reversed(edits):
        _rewrite(encoded, call, kind, value)
    return [line.decode() for line in encoded]


def _magic_kind(node: ast.expr) -> str | None:
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
        return None
    owner = node.func.value
    if not (
        isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "get_ipython"
    ):
        return None
    kind = _CALLS.get(node.func.attr)
    if kind is None or not node.args or not isinstance(node.args[0], ast.Constant):
        return None
    return kind if node.args[0].value in AWAITABLE_MAGICS[kind] else None


def _rewrite(lines: list[bytes], call: ast.Call, kind: str, value: bool) -> None:
    func = call.func
    assert call.end_lineno is not None and call.end_col_offset is not None
    assert func.end_lineno is not None and func.end_col_offset is not None
    end = lines[call.end_lineno - 1]
    # The flag goes before the closing parenthesis; the later edit first keeps offsets valid.
    lines[call.end_lineno - 1] = (
        end[: call.end_col_offset - 1] + f", _value={value})".encode() + end[call.end_col_offset :]
    )
    if func.end_lineno == func.lineno:
        row = lines[func.lineno - 1]
        head = f"await __import__('asyncmagic.kernel.awaiting').kernel.awaiting.{kind}".encode()
        lines[func.lineno - 1] = row[: func.col_offset] + head + row[func.end_col_offset :]


def _asyncio_runner(shell: Any) -> bool:
    from IPython.core.async_helpers import _asyncio_runner as runner

    return shell.loop_runner is runner


def cell(name: str, line: str, cell: str, _value: bool = False) -> Awaitable[Any]:
    """What a rewritten ``%%name line`` cell awaits."""
    magics, fn = _find(name)
    return _interruptible(magics.awaitable(name, _expand(fn, line), cell, value=_value))


def line(name: str, line: str, _value: bool = False) -> Awaitable[Any]:
    """What a rewritten ``[x =] %name line`` awaits."""
    magics, fn = _find(name)
    return _interruptible(magics.awaitable(name, _expand(fn, line), None, value=_value))


WAKE_EVERY = 0.05


async def _interruptible(coro: Awaitable[T]) -> T:
    """Await ``coro`` while waking the loop every 50 ms, so an interrupt is never stuck.

    ipykernel's SIGINT handler for awaited cells schedules the cancellation with
    ``call_soon`` from inside the signal handler, which does not wake a loop asleep in
    ``select()``: a cell awaiting a silent process would only see its interrupt when
    something else woke the loop. A cheap timer makes sure something does.
    """
    ticker = asyncio.ensure_future(_tick())
    try:
        with _ctrl_c_cancels(asyncio.current_task()):
            return await coro
    finally:
        ticker.cancel()


@contextlib.contextmanager
def _ctrl_c_cancels(task: asyncio.Task[Any] | None) -> Iterator[None]:
    """In terminal IPython, make Ctrl-C cancel the awaited magic instead of abandoning it.

    There, SIGINT raises KeyboardInterrupt out of ``run_until_complete`` and the task would
    stay pending with its process running. Only when Python's default handler is in place
    (ipykernel installs its own, which already cancels the cell).
    """
    if (
        task is None
        or threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, task.cancel)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)


async def _tick() -> None:
    while True:
        await asyncio.sleep(WAKE_EVERY)


def _find(name: str) -> tuple[Any, Callable[..., Any]]:
    """Our magics instance and the magic function, found through IPython's own lookup.

    Not through ``magics_manager.registry``: it is keyed by class name, and IPython has an
    ``AsyncMagics`` class of its own (for ``%autoawait``) that may take that key.
    """
    shell = get_ipython()
    fn = shell.find_cell_magic(name) or shell.find_line_magic(name)
    magics = getattr(fn, "__self__", None)
    if _owner is None or not isinstance(magics, _owner):
        raise NameError(f"asyncmagic is not loaded: run %load_ext asyncmagic (magic {name!r})")
    return magics, fn


def _expand(fn: Callable[..., Any], line: str) -> str:
    """Expand ``$name``/``{name}`` in the options line as IPython would, unless the magic opts out."""
    from IPython.core.magic import MAGIC_NO_VAR_EXPAND_ATTR

    if getattr(fn, MAGIC_NO_VAR_EXPAND_ATTR, False):
        return line
    # depth 2: var_expand's caller is _expand, whose caller is cell()/line(), called by the cell.
    return get_ipython().var_expand(line, 2)


def _wait_through_interrupts(event: threading.Event) -> None:
    """Wait for ``event``; a further Ctrl-C must not cut short a stop already begun."""
    while True:
        try:
            event.wait()
            return
        except KeyboardInterrupt:
            continue


def run_blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to the end from synchronous code, even inside a running event loop.

    With no loop running in this thread, ``asyncio.run`` (which turns Ctrl-C into a
    cancellation). Inside a running loop (a magic called from a function in a notebook
    cell), a fresh loop in a worker thread, in this context so output reaches this cell;
    a KeyboardInterrupt here cancels the coroutine, waits for its cleanup, and then
    re-raises whatever it ended with.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    outcome: dict[str, Any] = {}
    started = threading.Event()
    finished = threading.Event()

    def worker() -> None:
        loop = asyncio.new_event_loop()
        try:
            task = loop.create_task(coro)
            outcome["cancel"] = lambda: loop.call_soon_threadsafe(task.cancel)
            started.set()
            outcome["value"] = loop.run_until_complete(task)
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            started.set()
            finished.set()

    context = contextvars.copy_context()
    # Waiting on Events, not Thread.join: an interrupted join can leave the thread
    # looking finished on Python < 3.13.
    threading.Thread(target=context.run, args=(worker,), name="asyncmagic-blocking", daemon=True).start()
    try:
        finished.wait()
    except KeyboardInterrupt:
        _wait_through_interrupts(started)
        outcome.get("cancel", lambda: None)()
        _wait_through_interrupts(finished)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
