"""A real ipykernel driven through jupyter_client, read the way a frontend reads it.

Every iopub message is kept with its arrival time, so tests can ask what reached the
client, in which order, and for which cell (parent msg_id).
"""

from __future__ import annotations

import os
import queue
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jupyter_client.manager import start_new_kernel


@dataclass
class Execution:
    """What one execute request produced, as a frontend sees it."""

    msg_id: str
    code: str
    messages: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    reply: dict[str, Any] | None = None
    started: float = field(default_factory=time.monotonic)
    idle_at: float | None = None

    @property
    def done(self) -> bool:
        return self.idle_at is not None

    def of_type(self, *types: str) -> list[dict[str, Any]]:
        return [m for _, m in self.messages if m["msg_type"] in types]

    @property
    def streams(self) -> list[tuple[str, str]]:
        return [(m["content"]["name"], m["content"]["text"]) for m in self.of_type("stream")]

    @property
    def runs(self) -> list[tuple[str, str]]:
        """The streams' text in order, a message's neighbours of the same stream joined
        (where one message ends is the kernel's flush timing, not the output)."""
        runs: list[tuple[str, str]] = []
        for name, text in self.streams:
            if runs and runs[-1][0] == name:
                runs[-1] = (name, runs[-1][1] + text)
            else:
                runs.append((name, text))
        return runs

    @property
    def stdout(self) -> str:
        return "".join(text for name, text in self.streams if name == "stdout")

    @property
    def stderr(self) -> str:
        return "".join(text for name, text in self.streams if name == "stderr")

    @property
    def error(self) -> dict[str, Any] | None:
        errors = self.of_type("error")
        return errors[0]["content"] if errors else None

    @property
    def result(self) -> str | None:
        results = self.of_type("execute_result")
        return results[0]["content"]["data"]["text/plain"] if results else None

    def first_time(self, predicate: Callable[[dict[str, Any]], bool]) -> float | None:
        for t, m in self.messages:
            if predicate(m):
                return t
        return None


class Kernel:
    """One running kernel; ``execute`` sends a cell and gathers its messages until idle."""

    def __init__(self) -> None:
        self.manager, self.client = start_new_kernel(kernel_name="python3")
        self.executions: dict[str, Execution] = {}
        self.pid = int(self.eval("__import__('os').getpid()"))

    def submit(self, code: str, *, allow_stdin: bool = True, in_a_notebook: bool = True) -> Execution:
        """Send a cell as JupyterLab does (``allow_stdin: true``, the cell named in the
        metadata), as nbclient does (``allow_stdin`` false), or, ``in_a_notebook=False``, as
        jupyter console does (no cell to name)."""
        content = {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": allow_stdin,
            "stop_on_error": True,
        }
        metadata = {"cellId": str(uuid.uuid4())} if in_a_notebook else {}
        msg = self.client.session.msg("execute_request", content, metadata=metadata)
        self.client.shell_channel.send(msg)
        ex = Execution(msg_id=msg["header"]["msg_id"], code=code)
        self.executions[ex.msg_id] = ex
        return ex

    def pump(self, timeout: float = 0.05) -> None:
        """Read what iopub has now, filing each message under its cell."""
        try:
            msg = self.client.get_iopub_msg(timeout=timeout)
        except queue.Empty:
            return
        now = time.monotonic()
        ex = self.executions.get(msg["parent_header"].get("msg_id"))
        if ex is None:
            return
        ex.messages.append((now, msg))
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            ex.idle_at = now

    def wait_until(self, condition: Callable[[], bool], timeout: float = 30, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what or condition}")
            self.pump()

    def execute(
        self,
        code: str,
        *,
        timeout: float = 60,
        interrupt_when: Callable[[Execution], bool] | None = None,
        again_after: float | None = None,
        allow_stdin: bool = True,
        in_a_notebook: bool = True,
    ) -> Execution:
        """Run ``code`` until idle; interrupt once ``interrupt_when(ex)`` holds, and a second
        time ``again_after`` seconds later if the cell is still running (a stop during a stop)."""
        ex = self.submit(code, allow_stdin=allow_stdin, in_a_notebook=in_a_notebook)
        interrupted_at: float | None = None
        again = again_after is not None
        deadline = time.monotonic() + timeout
        while not ex.done:
            if interrupt_when is not None and interrupted_at is None and interrupt_when(ex):
                interrupted_at = ex.interrupted_at = time.monotonic()  # type: ignore[attr-defined]
                self.manager.interrupt_kernel()
            elif again and interrupted_at is not None and time.monotonic() > interrupted_at + again_after:
                self.manager.interrupt_kernel()
                again = False
            if time.monotonic() > deadline:
                raise TimeoutError(f"cell did not finish in {timeout} s:\n{code}\n{ex.streams}")
            self.pump()
        return ex

    def run(self, code: str, **kw: Any) -> Execution:
        """Execute and require success."""
        ex = self.execute(code, **kw)
        assert ex.error is None, f"{code!r} failed: {ex.error['ename']}: {ex.error['evalue']}\n{ex.streams}"
        return ex

    def eval(self, expression: str) -> Any:
        import ast

        ex = self.execute(f"print(repr({expression}))")
        assert ex.error is None, ex.error
        return ast.literal_eval(ex.stdout.strip())

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def stable_fd_count(self, reads: int = 5, within: float = 10) -> int:
        """The fd count once ``reads`` reads in a row (50 ms apart) agree: an earlier test's
        lazily closed fd may still be closing."""
        deadline = time.monotonic() + within
        counts = [self.open_fds()]
        while len(counts) < reads or len(set(counts[-reads:])) > 1:
            assert time.monotonic() < deadline, f"fd count never settled: {counts[-10:]}"
            self.pump(0.05)
            counts.append(self.open_fds())
        return counts[-1]

    def zombies(self) -> int:
        count = 0
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = open(f"/proc/{entry}/stat").read()
                except OSError:
                    continue
                fields = stat[stat.rfind(")") + 2 :].split()
                if fields[0] == "Z" and int(fields[1]) == self.pid:
                    count += 1
        return count

    def shutdown(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=False)


def usage_error(ex: Execution) -> str:
    """The message of the one-line UsageError a cell printed (IPython prints it on stderr
    and raises nothing)."""
    assert ex.error is None and ex.stderr.startswith("UsageError: "), ex.streams
    assert ex.stderr.count("\n") == 1, ex.stderr
    return ex.stderr[len("UsageError: ") :].rstrip("\n")


def processes_with(marker: str) -> list[int]:
    """Pids of live (non-zombie) processes whose command line contains ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = open(f"/proc/{entry}/cmdline", "rb").read().replace(b"\0", b" ").decode()
            state = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            found.append(int(entry))
    return found


def none_left(find: Callable[[str], list[int]], marker: str, within: float = 5.0) -> bool:
    """Wait until ``find(marker)`` (:func:`processes_with`, :func:`sleeping`) finds nothing;
    False if something is still alive after ``within`` seconds."""
    deadline = time.monotonic() + within
    while find(marker):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def found(find: Callable[[str], list[int]], marker: str, within: float = 10.0) -> bool:
    """Wait until ``find(marker)`` finds something: a command that ``exec``s its ``sleep``
    is still its shell for a moment after it started."""
    deadline = time.monotonic() + within
    while not find(marker):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def sleeping(marker: str) -> list[int]:
    """Pids of live ``sleep MARKER`` processes themselves (not shells mentioning them)."""
    return [pid for pid in processes_with(marker) if _cmdline(pid) == f"sleep {marker}"]


def _cmdline(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""
