"""The options the magics share, and turning them into checked settings for the engine.

Everything here runs before anything starts: a bad value is a ``UsageError`` that names
the problem, and no process is spawned.
"""

from __future__ import annotations

import argparse
import ast
import codecs
import difflib
import io
import os
import re
import shlex
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument, argument_group

from ..engine.capture import KeptLog, log_stem, prepare_log_dir
from ..engine.readiness import Readiness, parse_readiness
from ..engine.ssh import split_host
from ..engine.stdin import InputSource, check_source
from ..engine.stopping import INTERRUPT_GRACE

F = TypeVar("F", bound=Callable[..., Any])

_WORD = re.compile(r"""(?:[^\s'"\\]|\\.|'[^']*'?|"(?:[^"\\]|\\.)*"?)+""")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}")
    return value


COMMAND_ONLY = {
    "--shell": None,
    "--keep": False,
    "--parallel": False,
    "--jobs": None,
    "--interactive": False,
    "--pty": False,
    "--ask": False,
    "--host": [],
    "--hosts": None,
}
"""Options of ``%arun``/``%%arun`` that ``%apipe`` has no use for (its stages run without a
shell, each writing to the next one's pipe), with the value ``settings()`` sees without them."""


def _option_decorators() -> list[tuple[str, Callable[[F], F]]]:
    """Every option, in help order, as (its long name or group title, its decorator)."""
    decorators = [
        argument_group("Running"),
        argument(
            "-t",
            "--timeout",
            type=_seconds,
            metavar="SECONDS",
            help="End the command and everything it started after SECONDS "
            "(SIGTERM to the whole process group, SIGKILL after --grace).",
        ),
        argument(
            "--grace",
            type=_seconds,
            metavar="SECONDS",
            help="Seconds between SIGTERM and SIGKILL when stopping (default 2).",
        ),
        argument(
            "--interrupt-grace",
            type=_seconds,
            metavar="SECONDS",
            help="Seconds an interrupted command gets to handle Ctrl-C (save a checkpoint) "
            f"before SIGTERM (default {INTERRUPT_GRACE:g}; AsyncMagics.interrupt_grace).",
        ),
        argument(
            "--shell",
            metavar="PATH",
            help="The shell that runs the command (default: bash, else sh; AsyncMagics.default_shell).",
        ),
        argument("--cwd", metavar="DIR", help="Run in this directory."),
        argument(
            "--keep",
            action="store_true",
            help="Carry the shell's state from one --keep run to the next, like one terminal: the "
            "working directory, exported variables, functions and aliases (bash; each run is still "
            "its own process; the kernel's own directory does not move: %%ashell cd). "
            "AsyncMagics.keep_shell_state makes it the default; %%ashell shows and resets it.",
        ),
        argument(
            "--env",
            action="append",
            metavar="NAME=VALUE",
            default=[],
            help="Set an environment variable for the command (repeatable).",
        ),
        argument_group("Parallel"),
        argument(
            "--parallel",
            action="store_true",
            help="%%%%arun only: run each non-empty line of the cell as its own command, at most -j at "
            "once, and end with a summary table. -r NAME stores the list of Results.",
        ),
        argument(
            "-j",
            "--jobs",
            type=int,
            metavar="N",
            help=f"With --parallel: at most N at once (default: CPUs); with --host: at most N hosts "
            f"(default: all, up to {HOSTS_AT_ONCE}).",
        ),
        argument_group("Hosts"),
        argument(
            "--host",
            action="append",
            metavar="NAME[,NAME...]",
            default=[],
            help="Run the cell on these machines over SSH, each line labelled [NAME], at most -j at "
            "once, ending with a summary table; -r NAME stores the list of Results (each with .host). "
            "A name is what ssh takes: an ssh_config alias, user@host, host:port; {var} inserts a "
            "Python list. AsyncMagics.ssh_config, known_hosts, client_keys, connect_timeout.",
        ),
        argument("--hosts", metavar="VAR", help="Like --host, from a Python list (or str) in variable VAR."),
        argument_group("Background"),
        argument(
            "--bg",
            action="store_true",
            help="Run in the background: return a Job at once; the output keeps streaming into "
            "this cell. -r NAME stores the Job. See %%%%ajobs.",
        ),
        argument(
            "--interactive",
            action="store_true",
            help="With --bg: keep stdin open, for job.send(), job.close_stdin() and job.expect().",
        ),
        argument(
            "--ready",
            metavar="SPEC",
            help="With --bg: return once the job is ready to use, not once it started: tcp:[HOST:]PORT "
            "(a connection is accepted), http://HOST:PORT/PATH (a GET answers below 500) or /REGEX/ "
            "(a line of its output matches). If it exits first or --ready-timeout passes, the job is "
            "ended and the cell fails.",
        ),
        argument(
            "--ready-timeout",
            type=_seconds,
            metavar="SECONDS",
            help="With --ready: how long to wait (default 60; AsyncMagics.ready_timeout).",
        ),
        argument_group("Input"),
        argument(
            "-i",
            "--input",
            metavar="TEXT",
            help=r"Text for the command's stdin; Python escapes such as \n are understood. "
            "Without --input or --stdin, stdin is /dev/null.",
        ),
        argument(
            "--ask",
            action="store_true",
            help="Answer the command's questions here: it runs under a terminal of its own (as with "
            "--pty), and when it waits reading it (read -p, input(), getpass, sudo, ssh) an input box "
            "asks you (a password box when it reads with echo off). --input/--stdin lines answer first. "
            "Headless and in --bg jobs, a question fails the command at once. AsyncMagics.ask.",
        ),
        argument(
            "--stdin",
            metavar="NAME",
            help="Feed stdin from a variable: str, bytes, an iterable of lines, "
            "an open file, or a pathlib.Path (that file's contents).",
        ),
        argument_group("Output"),
        argument("-o", "--out", metavar="NAME", help="Store the captured stdout text in variable NAME."),
        argument("-e", "--err", metavar="NAME", help="Store the captured stderr text in variable NAME."),
        argument(
            "-r", "--result", metavar="NAME", help="Store the Result (with --bg: the Job) in variable NAME."
        ),
        argument("-q", "--quiet", action="store_true", help="Show nothing live (capture still works)."),
        argument(
            "--max-lines",
            type=int,
            metavar="N",
            help="Show at most N lines of a huge output, its head and its tail, with a notice between "
            "them (0: everything; default AsyncMagics.max_display_lines).",
        ),
        argument(
            "--label", action="store_true", help="Prefix every line with [out] or [err], for plain logs."
        ),
        argument(
            "--split",
            action="store_true",
            help="Show stdout and stderr side by side, updated in place while the command runs "
            "(HTML; plain text for terminals and saved notebooks).",
        ),
        argument(
            "--pty",
            action="store_true",
            help="Run under a pseudo-terminal, so the command sees a TTY (colour, progress bars, "
            "line buffering). stdout and stderr then arrive merged, as stdout.",
        ),
        argument(
            "--no-raise",
            action="store_true",
            help="Report a failure (non-zero exit, timeout) instead of raising CommandError.",
        ),
    ]
    return [(_name_of(decorate), decorate) for decorate in decorators]


def _name_of(decorate: Any) -> str:
    # IPython's argument decorators keep their arguments: args[0] is a group's title, or
    # the option strings, the long one last.
    names = [a for a in decorate.args if isinstance(a, str) and a.startswith("--")]
    return names[-1] if names else decorate.args[0]


_GROUP_OF_COMMAND_ONLY = {"Parallel", "Hosts"}
"""Groups made of command-only options alone: their heading goes with them."""


def plain_help(func: F) -> F:
    """Drop the reST ``::`` that IPython's ``magic_arguments`` puts above the usage: ``%arun?``
    is read as plain text."""
    if func.__doc__:
        func.__doc__ = func.__doc__.replace("::\n\n", "", 1)
    return func


def run_options(func: F) -> F:
    """Decorate a magic with every option of a command (``%arun``, ``%%arun``)."""
    for _, decorate in reversed(_option_decorators()):
        func = decorate(func)
    return func


def pipeline_options(func: F) -> F:
    """Decorate a magic with the options a pipeline (``%apipe``) takes: no command-only ones."""
    for name, decorate in reversed(_option_decorators()):
        if name not in COMMAND_ONLY and name not in _GROUP_OF_COMMAND_ONLY:
            func = decorate(func)
    return func


@dataclass(frozen=True)
class RunSettings:
    """Checked settings for one run, from the options and the magics' configured defaults."""

    timeout: float | None
    grace: float
    input: InputSource | None
    cwd: str | None
    interrupt_grace: float = INTERRUPT_GRACE
    env: dict[str, str | None] = field(default_factory=dict)
    """Variables to set (None: to remove) in the command's environment."""
    shell: str | None = None
    """The --shell given, found on PATH; None for the configured default."""
    out: str | None = None
    err: str | None = None
    result: str | None = None
    quiet: bool = False
    raise_on_error: bool = True
    background: bool = False
    interactive: bool = False
    max_lines: int = 0
    label: bool = False
    capture_limit: int | None = None
    page_limit: int | None = None
    """Characters a notebook shows of one output with ``--max-lines 0``; None: no limit."""
    split: bool = False
    pty: bool = False
    parallel: int = 0
    """With --parallel: how many commands at once; 0 without it."""
    hosts: tuple[str, ...] = ()
    """With --host/--hosts: the machines to run on, in the order named."""
    host_jobs: int = 0
    """With --host: how many hosts at once."""
    input_name: str | None = None
    """What ``input`` came from, for errors: ``--stdin NAME`` or ``--input``."""
    ready: Readiness | None = None
    ready_timeout: float = 60.0
    keep: bool = False
    """--keep: start from the kept shell state, and keep what this run leaves."""
    ask: bool = False
    """--ask: questions at the command's terminal are put to the person."""
    log_dir: str | None = None
    """The checked folder of kept logs (``AsyncMagics.log_dir``), None for the private one."""
    keep_log: KeptLog | None = None
    """This run's kept log, once named by :meth:`logged_as`."""

    def logged_as(self, who: str, command: str) -> RunSettings:
        """These settings with the kept log of one run named (``job3``, ``cell12``), if logs are kept."""
        if self.log_dir is None:
            return self
        return replace(self, keep_log=KeptLog(self.log_dir, log_stem(who, command, datetime.now())))

    def engine_options(self) -> dict[str, Any]:
        """What every engine start takes from these settings (``start()``, ``start_pipeline()``)."""
        return {
            "timeout": self.timeout,
            "grace": self.grace,
            "interrupt_grace": self.interrupt_grace,
            "input": self.input,
            "cwd": self.cwd,
            "env": self.env,
            "capture_limit": self.capture_limit,
            "keep_log": self.keep_log,
        }


def run_settings(
    args: argparse.Namespace,
    namespace: dict[str, Any],
    *,
    timeout: float | None,
    grace: float,
    raise_on_error: bool,
    interrupt_grace: float = INTERRUPT_GRACE,
    max_lines: int = 0,
    capture_limit: int | None = None,
    page_limit: int | None = None,
    ready_timeout: float = 60.0,
    log_dir: str = "",
    keep: bool = False,
    ask: bool = False,
) -> RunSettings:
    """Check ``args`` against the user's ``namespace``; configured defaults fill the gaps."""
    args = argparse.Namespace(**{**{k[2:]: v for k, v in COMMAND_ONLY.items()}, **vars(args)})
    timeout = args.timeout if args.timeout is not None else timeout
    if timeout is not None and timeout <= 0:
        raise UsageError(f"--timeout must be a positive number of seconds, not {args.timeout:g}")
    grace = args.grace if args.grace is not None else grace
    if grace < 0:
        raise UsageError(f"--grace must be zero or more seconds, not {grace:g}")
    if args.interrupt_grace is not None:
        interrupt_grace = args.interrupt_grace
    if interrupt_grace < 0:
        raise UsageError(f"--interrupt-grace must be zero or more seconds, not {interrupt_grace:g}")
    if args.input is not None and args.stdin is not None:
        raise UsageError("give --input or --stdin, not both")
    if args.interactive and not args.bg:
        raise UsageError("--interactive needs --bg: its stdin is written with job.send()")
    if args.interactive and (args.input is not None or args.stdin is not None):
        raise UsageError("--interactive keeps stdin open for job.send(); drop --input/--stdin")
    hosts = _hosts(args, namespace)
    if args.jobs is not None and not args.parallel and not hosts:
        raise UsageError("-j/--jobs goes with --parallel or --host")
    if hosts:
        _check_remote(args)
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"-j/--jobs must be 1 or more, not {args.jobs}")
    if args.parallel and (args.bg or args.interactive):
        raise UsageError("--parallel runs in the foreground: drop --bg/--interactive")
    if args.split and args.label:
        raise UsageError("give --split or --label, not both")
    if args.max_lines is not None and args.max_lines < 0:
        raise UsageError(f"--max-lines must be 0 (everything) or more, not {args.max_lines}")
    ready, ready_timeout = _ready(args, ready_timeout)
    if args.keep and (args.bg or args.parallel):
        raise UsageError("--keep runs in the foreground, one command after another: drop --bg/--parallel")
    keep = args.keep or (keep and not args.bg and not args.parallel and not hosts)
    if args.ask and (args.parallel or args.interactive):
        raise UsageError("--ask asks for one command at a time: drop --parallel/--interactive")
    ask = args.ask or (ask and not args.bg and not args.parallel and not args.interactive and not hosts)
    try:
        kept_logs = prepare_log_dir(log_dir) if log_dir else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    for name in (args.out, args.err, args.result):
        if name is not None and not name.isidentifier():
            raise UsageError(f"not a valid variable name: {name!r}")
    return RunSettings(
        timeout=timeout,
        grace=grace,
        interrupt_grace=interrupt_grace,
        input=_input(args, namespace),
        input_name=f"--stdin {args.stdin}" if args.stdin else "--input" if args.input is not None else None,
        cwd=args.cwd if hosts else _cwd(args.cwd),
        shell=args.shell if hosts else _shell(args.shell),
        env=_env(args.env, remote=bool(hosts)),
        out=args.out,
        err=args.err,
        result=args.result,
        quiet=args.quiet,
        raise_on_error=raise_on_error and not args.no_raise,
        background=args.bg,
        interactive=args.interactive,
        max_lines=max_lines if args.max_lines is None else args.max_lines,
        label=args.label,
        capture_limit=capture_limit,
        page_limit=page_limit,
        split=args.split,
        pty=args.pty,
        parallel=(args.jobs or os.cpu_count() or 1) if args.parallel else 0,
        hosts=hosts,
        host_jobs=args.jobs or min(len(hosts), HOSTS_AT_ONCE),
        ready=ready,
        ready_timeout=ready_timeout,
        log_dir=kept_logs,
        keep=keep,
        ask=ask,
    )


def _ready(args: argparse.Namespace, timeout: float) -> tuple[Readiness | None, float]:
    if args.ready is None:
        if args.ready_timeout is not None:
            raise UsageError("--ready-timeout goes with --ready")
        return None, timeout
    if not args.bg:
        raise UsageError("--ready goes with --bg (a foreground command is waited for until it ends)")
    try:
        ready = parse_readiness(args.ready)
    except ValueError as exc:
        raise UsageError(f"--ready: {exc}") from None
    if args.ready_timeout is not None:
        timeout = args.ready_timeout
    if timeout <= 0:
        raise UsageError(f"--ready-timeout must be a positive number of seconds, not {timeout:g}")
    return ready, timeout


def unescape(text: str) -> str:
    r"""Understand Python escapes (``\n``, ``\t``, ``\x41``, ``\u00e9``) in ``text``."""
    try:
        return codecs.decode(text.encode("latin-1", "backslashreplace"), "unicode_escape")
    except UnicodeDecodeError as exc:
        raise UsageError(f"--input: bad escape in {text!r}: {exc.reason}") from None


def _input(args: argparse.Namespace, namespace: dict[str, Any]) -> InputSource | None:
    if args.input is not None:
        return unescape(args.input)
    if args.stdin is None:
        return None
    name = args.stdin
    if name not in namespace:
        raise UsageError(f"--stdin: no variable named {name!r}")
    value = namespace[name]
    if isinstance(value, Path):
        if not value.is_file():
            raise UsageError(f"--stdin: {name} is the path {str(value)!r}, which is not a readable file")
        return value
    if isinstance(value, (str, bytes, bytearray, io.IOBase)) or hasattr(value, "read"):
        return value
    if isinstance(value, Iterable) or hasattr(value, "__aiter__"):
        try:
            check_source(value)  # a list's items, before anything starts
        except TypeError as exc:
            raise UsageError(f"--stdin {name}: {exc}") from None
        return value
    raise UsageError(
        f"--stdin: {name} is a {type(value).__name__}; give str, bytes, an iterable of lines, "
        "an open file or a pathlib.Path"
    )


def _shell(name: str | None) -> str | None:
    if name is None:
        return None
    found = shutil.which(name)
    if found is None:
        raise UsageError(f"--shell: no such program: {name}")
    return found


def _cwd(cwd: str | None) -> str | None:
    if cwd is None:
        return None
    path = os.path.expanduser(cwd)
    if not os.path.isdir(path):
        raise UsageError(f"--cwd: no such directory: {cwd}")
    return path


def _env(pairs: list[str], remote: bool = False) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name or "\0" in pair:
            raise UsageError(f"--env takes NAME=VALUE, not {pair!r}")
        if remote and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise UsageError(f"--env on a host: {name!r} is not a shell variable name")
        env[name] = value
    return env


HOSTS_AT_ONCE = 64
"""Hosts a --host cell runs on at once unless -j says otherwise: each is a connection and a
handshake of the kernel's own CPU."""


def _hosts(args: argparse.Namespace, namespace: dict[str, Any]) -> tuple[str, ...]:
    """The hosts of --host (names, comma lists, a ``{list}`` inserted) and --hosts VAR."""
    names: list[str] = []
    for text in args.host:
        names += _host_names(text, "--host")
    if args.hosts is not None:
        if args.hosts not in namespace:
            raise UsageError(f"--hosts: no variable named {args.hosts!r}")
        value = namespace[args.hosts]
        if isinstance(value, str):
            names += _host_names(value, f"--hosts {args.hosts}")
        elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            names += [v.strip() for v in value]
        else:
            raise UsageError(f"--hosts {args.hosts}: a list of host names (str), not {type(value).__name__}")
    seen: set[str] = set()
    for name in names:
        try:
            split_host(name)
        except ValueError as exc:
            raise UsageError(f"--host: {exc}") from None
        if name in seen:
            raise UsageError(f"--host: {name} is named twice")
        seen.add(name)
    if (args.host or args.hosts is not None) and not names:
        raise UsageError("--host: no host named")
    return tuple(names)


_INSERTED_LIST = re.compile(r"(--host(?:=|\s+))([\[(][^\])]*[\])])")


def join_host_lists(line: str) -> str:
    """``--host {fleet}`` arrives as ``--host ['web1', 'web2']`` (IPython inserts the list's
    repr): make it one word, ``--host web1,web2``, before the line is split into words."""
    return _INSERTED_LIST.sub(
        lambda m: m.group(1) + shlex.quote(",".join(_host_names(m.group(2), "--host"))), line
    )


def _host_names(text: str, option: str) -> list[str]:
    """``a,b c`` or an inserted Python list (``['a', 'b']``) -> names."""
    text = text.strip()
    if text[:1] in "[(":
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise UsageError(f"{option}: not a list of host names: {text}") from None
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise UsageError(f"{option}: not a list of host names: {text}")
        return [v.strip() for v in value]
    return [name for name in re.split(r"[,\s]+", text) if name]


_NOT_ON_HOSTS = {
    "parallel": "--parallel (give one or the other)",
    "keep": "--keep (the kept shell state is this machine's)",
    "ask": "--ask (questions are answered on this machine's terminals only)",
    "interactive": "--interactive",
    "ready": "--ready",
}


def _check_remote(args: argparse.Namespace) -> None:
    for name, said in _NOT_ON_HOSTS.items():
        if getattr(args, name, None):
            raise UsageError(f"--host does not go with {said}")


def parse(
    parser: argparse.ArgumentParser, text: str, absent: Mapping[str, str] | None = None
) -> argparse.Namespace:
    """Parse an options line with shell quoting rules (IPython's own splitter keeps the quotes).

    An unknown option is one line that names it and the option it most looks like
    (``--timout``: did you mean --timeout?), or, if it is in ``absent``, why this magic has
    none.
    """
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise UsageError(f"cannot parse the options: {exc}") from None
    try:
        if any(not action.option_strings for action in parser._actions):
            # Optional positionals mixed with options (``%ajobs wait --replay 1``) need
            # this; it is slower (it formats the usage on every call), so only then.
            return parser.parse_intermixed_args(argv)
        return parser.parse_args(argv)
    except UsageError as exc:
        raise _explained(exc, parser, absent or {}) from None


def _explained(exc: UsageError, parser: argparse.ArgumentParser, absent: Mapping[str, str]) -> UsageError:
    message = str(exc)
    if "unrecognized arguments: " not in message:
        return exc
    unknown = message.split("unrecognized arguments: ", 1)[1].split()
    known = sorted(parser._option_string_actions)
    for word in unknown:
        option = word.split("=", 1)[0]
        if option in absent:
            return UsageError(f"%{parser.prog} has no {option}: {absent[option]}")
        bare = {k.lstrip("-"): k for k in known if k.startswith("--")}  # "--" would make all look alike
        close = difflib.get_close_matches(option.lstrip("-"), bare, n=1, cutoff=0.7)
        if option.startswith("-") and close:
            return UsageError(f"%{parser.prog}: unknown option {option}; did you mean {bare[close[0]]}?")
    options = [word for word in unknown if word.startswith("-")]
    if options:
        return UsageError(f"%{parser.prog}: unknown option {options[0]}")
    return UsageError(f"%{parser.prog}: unexpected argument: {' '.join(unknown)}")


def split_command(line: str, parser: argparse.ArgumentParser) -> tuple[str, str]:
    """Split a line magic's text into its leading options and the command, kept verbatim.

    The command is the rest of the line from the first word that is not an option (or
    after ``--``), untouched, so the shell sees its quotes, pipes and ``$VARS`` as typed.
    """
    actions = parser._option_string_actions
    pos = 0
    expect_value = False
    for match in _WORD.finditer(line):
        word = match.group()
        if expect_value:
            expect_value = False
            pos = match.end()
            continue
        if word == "--":
            return line[: match.start()], line[match.end() :].strip()
        if not word.startswith("-") or word == "-":
            return line[: match.start()], line[match.start() :].strip()
        name = word.split("=", 1)[0]
        action = actions.get(name)
        if action is None and not name.startswith("--") and len(name) > 2:
            action = actions.get(name[:2])  # -t5 style
            if action is not None and action.nargs != 0:
                pos = match.end()
                continue
        if action is not None and action.nargs != 0 and "=" not in word:
            expect_value = True
        pos = match.end()
    return line[:pos], ""
