"""Reading a ``%apipe`` line: shell-like words, ``|`` between stages, ``<``/``>``/``>>``
redirections, ``py:NAME`` stages and safe ``{name}`` insertion of Python values.

No shell ever sees the line, so nothing here is expanded but ``{name}``: no globs, no
``$VAR``. Quoting follows the shell: '...' is literal, "..." keeps spaces and ``\\``
escapes ``"``, ``\\``, ``$`` and backquote; outside quotes ``\\`` escapes the next character.
``{name}`` (outside single quotes) inserts ``str(value)`` into its word, so a value with
spaces or ``; rm -rf ~`` stays inside one argument; a word that is exactly ``{name*}``
becomes one argument per item; ``{{`` and ``}}`` are literal braces. ``@HOST`` before the
first stage runs that stage on HOST over SSH (its words quoted for the host's shell, so it
runs as given there too); ``@{name}`` takes the host from a variable.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..engine.pipeline import Command, PyStage, RemoteCommand, Stage

OPERATORS = ("|", "<", ">>", ">")
_FIELD = re.compile(r"\{\{|\}\}|\{([A-Za-z_][\w.]*)(\*?)\}|[{}]")


class PipeSyntaxError(ValueError):
    """The line is not a pipeline we can run; the message says where."""


@dataclass(frozen=True)
class PipelineSpec:
    """A parsed ``%apipe`` line, every value already inserted."""

    stages: tuple[Stage, ...]
    stdin_path: str | None = None
    stdout_path: str | None = None
    append: bool = False

    @property
    def remote(self) -> bool:
        """True when the first stage runs on a host."""
        return isinstance(self.stages[0], RemoteCommand)

    def dry_run(self) -> str:
        """One line per stage as its argv list, as it would run: ``1: ['printf', '%s\\n', 'x']``."""
        lines = []
        for number, stage in enumerate(self.stages, 1):
            if isinstance(stage, RemoteCommand):
                shown = f"@{stage.host} {list(stage.argv)!r}"
            else:
                shown = repr(list(stage.argv)) if isinstance(stage, Command) else str(stage)
            lines.append(f"{number}: {shown}")
        if self.stdin_path:
            lines.append(f"stdin: {self.stdin_path!r}")
        if self.stdout_path:
            lines.append(f"stdout: {self.stdout_path!r}{' (append)' if self.append else ''}")
        return "\n".join(lines)


@dataclass
class _Word:
    """A word as typed: its pieces, each marked literal (single-quoted) or not."""

    pieces: list[tuple[str, bool]]


def tokenize(line: str) -> list[_Word | str]:
    """Split ``line`` into words and operator strings, keeping which parts were quoted."""
    tokens: list[_Word | str] = []
    word: list[tuple[str, bool]] | None = None
    i, n = 0, len(line)

    def add(text: str, literal: bool) -> None:
        nonlocal word
        if word is None:
            word = []
        word.append((text, literal))

    def end_word() -> None:
        nonlocal word
        if word is not None:
            tokens.append(_Word(word))
            word = None

    while i < n:
        c = line[i]
        if c.isspace():
            end_word()
            i += 1
        elif c == "'":
            close = line.find("'", i + 1)
            if close < 0:
                raise PipeSyntaxError(f"unbalanced single quote at column {i + 1}")
            add(line[i + 1 : close], True)
            i = close + 1
        elif c == '"':
            i += 1
            buf = []
            while i < n and line[i] != '"':
                if line[i] == "\\" and i + 1 < n and line[i + 1] in '"\\$`':
                    buf.append(line[i + 1])
                    i += 2
                else:
                    buf.append(line[i])
                    i += 1
            if i >= n:
                raise PipeSyntaxError("unbalanced double quote")
            add("".join(buf) or "", False)
            i += 1
        elif c == "\\":
            if i + 1 < n:
                add(line[i + 1], True)
            i += 2
        elif c in "|<>":
            end_word()
            op = ">>" if line.startswith(">>", i) else c
            tokens.append(op)
            i += len(op)
        else:
            j = i
            while j < n and not line[j].isspace() and line[j] not in "'\"\\|<>":
                j += 1
            add(line[i:j], False)
            i = j
    end_word()
    return tokens


def expand(word: _Word, namespace: Mapping[str, Any]) -> list[str]:
    """The argument(s) a word stands for, ``{name}`` fields filled in."""
    if len(word.pieces) == 1 and not word.pieces[0][1]:
        match = re.fullmatch(r"\{([A-Za-z_][\w.]*)\*\}", word.pieces[0][0])
        if match:
            value = _lookup(match.group(1), namespace)
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                raise PipeSyntaxError(
                    f"{{{match.group(1)}*}} needs a list of arguments, not {type(value).__name__}"
                )
            return [_as_arg(item, match.group(1)) for item in value]
    out = []
    for text, literal in word.pieces:
        out.append(text if literal else _fill(text, namespace))
    return ["".join(out)]


def _fill(text: str, namespace: Mapping[str, Any]) -> str:
    def field(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        if match.group(1) is None:
            raise PipeSyntaxError(f"lone {token!r} in {text!r}: write {token * 2} for a literal brace")
        if match.group(2):
            raise PipeSyntaxError(f"{{{match.group(1)}*}} must be a whole word of its own")
        return _as_arg(_lookup(match.group(1), namespace), match.group(1))

    return _FIELD.sub(field, text)


def _lookup(path: str, namespace: Mapping[str, Any]) -> Any:
    head, *attrs = path.split(".")
    if head not in namespace:
        raise PipeSyntaxError(f"{{{path}}}: no variable named {head!r}")
    value = namespace[head]
    for attr in attrs:
        try:
            value = getattr(value, attr)
        except AttributeError:
            raise PipeSyntaxError(f"{{{path}}}: {type(value).__name__} has no attribute {attr!r}") from None
    return value


def _as_arg(value: Any, name: str) -> str:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, bytes):
        raise PipeSyntaxError(f"{{{name}}} is bytes; decode it to str first")
    text = str(value)
    if "\0" in text:
        raise PipeSyntaxError(f"{{{name}}} contains a NUL character, which no argument can hold")
    return text


def parse(line: str, namespace: Mapping[str, Any]) -> PipelineSpec:
    """Parse a ``%apipe`` line into stages, looking up ``{name}`` and ``py:NAME`` in ``namespace``."""
    tokens = tokenize(line)
    if not tokens:
        raise PipeSyntaxError("empty pipeline: %apipe cmd1 | cmd2 ...")
    groups: list[list[_Word | str]] = [[]]
    for token in tokens:
        if token == "|":
            groups.append([])
        else:
            groups[-1].append(token)
    stdin_path = stdout_path = None
    append = False
    stages: list[Stage] = []
    for number, group in enumerate(groups, 1):
        words: list[_Word] = []
        items = iter(group)
        for item in items:
            if isinstance(item, _Word):
                words.append(item)
                continue
            target = next(items, None)
            if not isinstance(target, _Word):
                raise PipeSyntaxError(f"stage {number}: {item!r} needs a file name after it")
            path = "".join(expand(target, namespace))
            if item == "<":
                if number != 1:
                    raise PipeSyntaxError(f"stage {number}: '<' is allowed on the first stage only")
                stdin_path = path
            else:
                if number != len(groups):
                    raise PipeSyntaxError(f"stage {number}: {item!r} is allowed on the last stage only")
                stdout_path, append = path, item == ">>"
        if not words:
            if number == len(groups) and number > 1:
                raise PipeSyntaxError("trailing '|': nothing after the last '|'")
            raise PipeSyntaxError(f"empty stage {number}: nothing between two '|'")
        stages.append(_stage(number, words, namespace))
    if stdin_path is not None and not os.path.isfile(stdin_path):
        raise PipeSyntaxError(f"'<' {stdin_path}: no such file")
    return PipelineSpec(tuple(stages), stdin_path, stdout_path, append)


def check_commands(spec: PipelineSpec, env: Mapping[str, str] | None = None, cwd: str | None = None) -> None:
    """Fail before anything starts if a stage's program cannot be found or run."""
    path = (env or {}).get("PATH", os.environ.get("PATH", os.defpath))
    for number, stage in enumerate(spec.stages, 1):
        if not isinstance(stage, Command):
            continue
        program = stage.argv[0]
        if os.sep in program:
            full = os.path.join(cwd or os.getcwd(), program)
            if not (os.path.isfile(full) and os.access(full, os.X_OK)):
                raise PipeSyntaxError(f"stage {number}: {program}: no such executable file")
        elif shutil.which(program, path=path) is None:
            raise PipeSyntaxError(f"stage {number}: {program}: command not found")


def _stage(number: int, words: list[_Word], namespace: Mapping[str, Any]) -> Stage:
    first = words[0].pieces
    if first and not first[0][1] and first[0][0].startswith("@"):
        return _remote_stage(number, words, namespace)
    if len(first) == 1 and not first[0][1] and first[0][0].startswith("py:"):
        name = first[0][0][3:]
        if len(words) > 1:
            raise PipeSyntaxError(
                f"stage {number}: py:{name} takes no arguments (use a closure or functools.partial)"
            )
        if name not in namespace:
            raise PipeSyntaxError(f"stage {number}: py:{name}: no variable named {name!r}")
        func = namespace[name]
        if not callable(func):
            raise PipeSyntaxError(f"stage {number}: py:{name} is a {type(func).__name__}, not callable")
        return PyStage(func, name)
    argv = [arg for word in words for arg in expand(word, namespace)]
    if not argv:
        raise PipeSyntaxError(f"stage {number}: no command left after inserting values")
    return Command(tuple(argv))


def _remote_stage(number: int, words: list[_Word], namespace: Mapping[str, Any]) -> RemoteCommand:
    """``@HOST cmd args``: the stage runs on HOST."""
    head = words[0].pieces
    host = "".join(expand(_Word([(head[0][0][1:], False), *head[1:]]), namespace)).strip()
    if number != 1:
        raise PipeSyntaxError(f"stage {number}: only the first stage can run on a host (@{host})")
    if not host:
        raise PipeSyntaxError("'@' needs a host name right after it: @web1 cat /var/log/syslog | ...")
    argv = [arg for word in words[1:] for arg in expand(word, namespace)]
    if not argv:
        raise PipeSyntaxError(f"@{host}: no command to run there")
    return RemoteCommand(host, tuple(argv))
