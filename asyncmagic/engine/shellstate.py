"""A shell that remembers without a shell that lives: state carried from one bash run to the next.

Each ``--keep`` run is still its own bash process (its own process group, every lifetime
guarantee). What a terminal session would remember is carried across instead:

- Before: bash sources ``$BASH_ENV`` before the script, when it runs non-interactively.
  That file (written here, mode 0600 in a private folder) defines the kept functions and
  aliases, sets an ``EXIT`` trap, and unsets ``BASH_ENV`` so no child bash sources it
  again. The script itself is passed unchanged: its line numbers stay the user's. The
  kept working directory and environment are given as the process's own ``cwd`` and
  ``env``.
- After: the trap writes ``$PWD``, the exported environment (``env -0``, NUL-separated, so
  any value survives), ``declare -f`` and ``alias -p`` into that folder as the shell
  exits, whatever the exit status. A script that ``exec``s, replaces the trap or is
  killed by SIGKILL leaves no new state: the previous one stays.

Only bash has ``BASH_ENV`` and ``declare -f``; other shells are refused by the caller.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from .spawning import child_env

_NOT_KEPT = frozenset({"_", "SHLVL", "PWD", "BASH_ENV"})
"""Variables bash sets by itself (or that carry the machinery): never part of the state."""


@dataclass(frozen=True)
class ShellState:
    """What one ``--keep`` run left behind, as the next one starts from it."""

    cwd: str
    env: dict[str, str] = field(default_factory=dict)
    """The whole exported environment."""
    functions: str = ""
    """``declare -f`` output: bash that defines them again."""
    aliases: str = ""
    """``alias -p`` output."""

    def env_changes(self, base: Mapping[str, str]) -> dict[str, str | None]:
        """What turns ``base`` (the kernel's environment) into this one: None unsets."""
        changes: dict[str, str | None] = {k: v for k, v in self.env.items() if base.get(k) != v}
        changes.update({k: None for k in base if k not in self.env and k not in _NOT_KEPT})
        return changes


def describe_state(state: ShellState, width: int = 100) -> str:
    """The state as a person reads it: directory, changed variables, functions, aliases."""
    lines = [f"directory: {state.cwd}"]
    for name, value in sorted(state.env_changes(child_env(None)).items()):
        shown = "(unset)" if value is None else repr(value)
        lines.append(f"  {name}={shown[: width - len(name) - 4]}")
    if len(lines) == 1:
        lines.append("  (the environment is the kernel's)")
    else:
        lines.insert(1, "exported variables that differ from the kernel's:")
    names = [line.split()[0] for line in state.functions.splitlines() if line.endswith(" () ")]
    if names:
        lines.append(f"functions: {', '.join(names)}")
    aliases = [
        line.removeprefix("alias ") for line in state.aliases.splitlines() if line.startswith("alias ")
    ]
    if aliases:
        lines.append(f"aliases: {', '.join(aliases)}")
    return "\n".join(lines)


class Carrier:
    """The folder one run's state passes through: ``BASH_ENV`` in, the trap's files out."""

    def __init__(self, state: ShellState | None) -> None:
        self.folder = tempfile.mkdtemp(prefix="asyncmagic-shell-")
        self.bash_env = os.path.join(self.folder, "start.sh")
        fd = os.open(self.bash_env, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(self._prologue(state))

    def _prologue(self, state: ShellState | None) -> str:
        q = {
            name: shlex.quote(os.path.join(self.folder, name))
            for name in ("cwd", "env", "functions", "aliases")
        }
        save = (
            f'printf %s "$PWD" > {q["cwd"]}; command -p env -0 > {q["env"]}; '
            f"declare -f > {q['functions']}; alias -p > {q['aliases']}"
        )
        lines = ["unset BASH_ENV"]
        if state is not None:
            lines += [state.functions, state.aliases]
            if state.aliases.strip():
                lines.append("shopt -s expand_aliases")
        handler = f"__asyncmagic_rc=$?; {{ {save}; }} 2>/dev/null; exit $__asyncmagic_rc"
        lines.append(f"trap {shlex.quote(handler)} EXIT")
        return "\n".join(lines) + "\n"

    def read(self) -> ShellState | None:
        """The state the run left, or None if it left none (it ``exec``'d, was killed...)."""
        try:
            with open(os.path.join(self.folder, "cwd")) as f:
                cwd = f.read()
            with open(os.path.join(self.folder, "env"), "rb") as b:
                raw = b.read()
            with open(os.path.join(self.folder, "functions")) as f:
                functions = f.read()
            with open(os.path.join(self.folder, "aliases")) as f:
                aliases = f.read()
        except OSError:
            return None
        if not cwd or not raw:
            return None  # the trap did not finish
        env = {}
        for item in raw.decode(errors="surrogateescape").split("\0"):
            name, sep, value = item.partition("=")
            if sep and name not in _NOT_KEPT and not name.startswith("ASYNCMAGIC_"):
                env[name] = value
        return ShellState(cwd=cwd, env=env, functions=functions, aliases=aliases)

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class KeptShell:
    """The state the ``--keep`` runs of one kernel carry, from the kernel's own at first."""

    def __init__(self) -> None:
        self.state: ShellState | None = None

    @contextlib.contextmanager
    def carried(
        self, env: Mapping[str, str | None], cwd: str | None
    ) -> Iterator[tuple[dict[str, str | None], str | None]]:
        """The environment and directory one run starts with; as it ends, what it left
        becomes the state (also when it failed, as in a terminal)."""
        carrier = Carrier(self.state)
        try:
            start_env = dict(self.state.env_changes(child_env(None))) if self.state else {}
            start_env.update(env)
            start_env["BASH_ENV"] = carrier.bash_env
            if cwd is None and self.state is not None:
                cwd = self.state.cwd
            yield start_env, cwd
        finally:
            left = carrier.read()
            if left is not None:
                self.state = left
            carrier.close()
