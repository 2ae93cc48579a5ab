"""The IPython magics: ``%%arun``/``%arun`` and ``%ajobs``. They parse options and hand over.

Every magic has two doors: IPython's synchronous call (``run_cell_magic``), which runs to
the end with :func:`~asyncmagic.kernel.awaiting.run_blocking`, and :meth:`AsyncMagics.awaitable`,
which the input transformer in :mod:`asyncmagic.kernel.awaiting` awaits so the kernel's event
loop stays free. Both build the same coroutine.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Coroutine
from dataclasses import replace
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display
from traitlets import Bool, Float, Int, List, TraitError, Unicode, validate

from ..display.output import PAGE_CEILING
from ..display.status import status_text
from ..display.table import connections_table, jobs_table
from ..engine.capture import prepare_log_dir
from ..engine.flow import Flow
from ..engine.jobs import Job
from ..engine.pipeline import Pipeline, start_pipeline
from ..engine.process import OutputCallback, start
from ..engine.result import CommandError
from ..engine.running import Running
from ..engine.shellstate import KeptShell, describe_state
from ..engine.spawning import default_shell
from ..engine.ssh import CONNECTIONS, ConnectError, SSHSettings
from ..engine.stopping import INTERRUPT_GRACE
from . import awaiting, hosts, parallel, pipesyntax
from .asking import asker
from .background import Background
from .foreground import Launch, run_for_cell
from .options import (
    RunSettings,
    join_host_lists,
    parse,
    pipeline_options,
    plain_help,
    run_options,
    run_settings,
    split_command,
)
from .pipesyntax import PipelineSpec
from .policy import first_of

_NOT_FOR_PIPELINES = {
    "--interactive": "a pipeline's stdin is its first stage's input",
    "--pty": "each stage writes to the next one's pipe",
    "--parallel": "run several pipelines with --bg",
    "-j": "it has no --parallel",
    "--jobs": "it has no --parallel",
    "--shell": "its stages run without a shell",
    "--keep": "its stages run without a shell, which is what keeps the state",
    "--ask": "its stages read pipes, not a terminal",
    "--host": "its first stage runs on a host written @HOST: %apipe @web1 cat FILE | grep x",
    "--hosts": "its first stage runs on a host written @HOST: %apipe @{host} cat FILE | grep x",
}
"""What ``%apipe`` says for the command-only options it does not take."""


@magics_class
class AsyncMagics(Magics):
    """Run shell commands as asyncio subprocesses on the kernel's event loop."""

    timeout = Float(None, allow_none=True, help="Default --timeout in seconds (None: no limit).").tag(
        config=True
    )
    grace = Float(2.0, help="Default --grace: seconds between SIGTERM and SIGKILL.").tag(config=True)
    interrupt_grace = Float(
        INTERRUPT_GRACE,
        help="Default --interrupt-grace: seconds a command has to handle Ctrl-C before SIGTERM.",
    ).tag(config=True)
    default_shell = Unicode("", help="Shell for %%arun scripts; empty: bash, else sh.").tag(config=True)
    raise_on_error = Bool(True, help="Raise CommandError when a command fails (else only report it).").tag(
        config=True
    )
    max_display_lines = Int(
        1000, help="Default --max-lines: lines of a huge output shown, head and tail (0: all)."
    ).tag(config=True)
    ready_timeout = Float(60.0, help="Default --ready-timeout: seconds a job has to get ready.").tag(
        config=True
    )
    ask = Bool(
        False, help="Make --ask the default of %arun/%%arun in the foreground: questions are put to you."
    ).tag(config=True)
    keep_shell_state = Bool(
        False, help="Make --keep the default of %arun/%%arun in the foreground (see %ashell)."
    ).tag(config=True)
    log_dir = Unicode(
        "",
        help="A folder where every command's whole log is kept after the kernel exits (mode 0600 "
        "files in a 0700 folder, named by date, cell or job and command); empty: a private "
        "temporary folder, removed at exit.",
    ).tag(config=True)
    page_limit = Int(
        PAGE_CEILING,
        help="Characters of one output a notebook shows with --max-lines 0 (half head, half tail): "
        "past a few MB a browser page freezes. 0: no limit.",
    ).tag(config=True)
    ssh_config = Unicode(
        "", help="The ssh_config file --host names are read from; empty: ~/.ssh/config."
    ).tag(config=True)
    known_hosts = Unicode(
        "",
        help="The known_hosts file host keys are checked against; empty: ~/.ssh/known_hosts; 'none': "
        "no check (trust any key: only for throwaway machines).",
    ).tag(config=True)
    client_keys = List(
        Unicode(),
        help="Private key files --host logs in with; empty: the ssh_config's, the agent's, ~/.ssh/id_*.",
    ).tag(config=True)
    connect_timeout = Float(10.0, help="Seconds a --host machine has to answer and let us in.").tag(
        config=True
    )
    ssh_keepalive = Float(
        15.0, help="Seconds between keepalives on an idle SSH connection (three unanswered close it; 0: off)."
    ).tag(config=True)
    capture_limit = Int(
        32_000_000,
        help="Characters of each stream kept in result.stdout/stderr; past it the head and the tail "
        "(every byte is in the log file the notice names).",
    ).tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell, **kwargs)
        self.background = Background(shell)
        self.kept_shell = KeptShell()

    @plain_help
    @magic_arguments()
    @run_options
    @line_cell_magic
    def arun(self, line: str, cell: str | None = None) -> Any:
        """Run a shell script (the cell) or one command (the rest of the line), streaming its output.

            %%arun [options]
            script...

            %arun [options] command args...

        stdout and stderr stream into the cell as they arrive, in order; the kernel's
        event loop keeps running meanwhile. A failure (non-zero exit, timeout,
        interrupt) raises CommandError, shown as one line, unless --no-raise.
        ``x = %arun cmd`` stores the Result in x (with --bg, the Job).
        """
        command, settings = self._arun_args(line, cell)
        if settings.background:
            _ready_needs_the_loop(settings)
            return self._start_job(command, settings)
        return awaiting.run_blocking(self._arun(command, settings, value=True))

    @plain_help
    @magic_arguments()
    @argument(
        "action",
        nargs="?",
        default="list",
        choices=["list", "kill", "wait", "clear", "show", "tail", "attach", "hosts"],
        help="list (default): the table of jobs; kill/wait ID|all; show/tail/attach ID; "
        "clear: forget finished jobs; hosts: the open SSH connections.",
    )
    @argument("target", nargs="?", help="A job id, or 'all'.")
    @argument("--replay", action="store_true", help="With wait: print the job's whole output again.")
    @argument(
        "-n", "--lines", type=int, metavar="N", help="With tail/attach: the last N lines first (default 100)."
    )
    @argument("-f", "--follow", action="store_true", help="With tail: keep following, as attach does.")
    @line_magic
    def ajobs(self, line: str) -> None:
        """List, wait for, kill and forget background jobs (``%arun --bg``).

        %ajobs                     table: id, command, pid, state, elapsed, exit, bytes out
        %ajobs kill ID|all         SIGTERM to the job's process group, SIGKILL after the grace
        %ajobs wait [--replay] ID|all
                                   wait (the loop stays free), print what a headless
                                   client dropped, raise if a job failed
        %ajobs show ID             the job's output so far (head and tail), and its log
        %ajobs tail [-n N] [-f] ID the last N lines (default 100); -f: attach
        %ajobs attach [-n N] ID    the last N lines, then the live output and status here,
                                   until the job ends; interrupting stops the watching only
        %ajobs clear               forget finished jobs
        %ajobs hosts               the open SSH connections (--host): host, address, user,
                                   opened, open sessions
        """
        loop = self.background.loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:  # a synchronous call on the jobs' own loop, which it blocks
            return self._ajobs_blocking(line)
        if running is None and loop.is_running():  # another thread
            return asyncio.run_coroutine_threadsafe(self._ajobs(line), loop).result()
        if running is None:
            return loop.run_until_complete(self._ajobs(line))
        return awaiting.run_blocking(self._ajobs(line))

    @plain_help
    @magic_arguments()
    @argument(
        "action",
        nargs="?",
        default="show",
        choices=["show", "reset", "cd"],
        help="show (default); reset: forget it; cd: move the kernel's own directory there.",
    )
    @line_magic
    def ashell(self, line: str) -> None:
        """Show or reset the shell state that ``--keep`` runs carry from one to the next.

        %ashell         the kept directory, the exported variables that differ from the
                        kernel's, the functions and the aliases
        %ashell reset   forget it: the next --keep run starts from the kernel's
                        directory and environment
        %ashell cd      move the kernel's own working directory to the kept one (%cd)
        """
        args = parse(self.ashell.parser, line)
        state = self.kept_shell.state
        if args.action == "reset":
            self.kept_shell.state = None
            print("forgot the kept shell state")
            return
        if state is None:
            print(
                "no kept shell state: the next --keep run starts from the kernel's directory and environment"
            )
            return
        if args.action == "cd":
            self.shell.run_line_magic("cd", state.cwd)
            return
        print(describe_state(state))

    def awaitable(self, name: str, line: str, cell: str | None, *, value: bool) -> Coroutine[Any, Any, Any]:
        """The coroutine that runs magic ``name``; what an awaited cell awaits."""
        if name == "arun":
            return self._arun_awaited(line, cell, value=value)
        if name == "ajobs":
            return self._ajobs(line)
        if name == "apipe":
            return self._apipe_awaited(line, value=value)
        raise UsageError(f"no awaitable magic named {name!r}")

    # -- %arun ---------------------------------------------------------------------------

    def _arun_args(self, line: str, cell: str | None) -> tuple[str, RunSettings]:
        line = join_host_lists(line)
        if cell is None:
            options, command = split_command(line, self.arun.parser)
            if not command:
                raise UsageError("%arun needs a command: %arun [options] command args...")
        else:
            options, command = line, cell
        args = parse(self.arun.parser, options)
        settings = self._settings(args, keep=self.keep_shell_state, ask=self.ask)
        shell = settings.shell or self.default_shell or default_shell()
        if settings.keep and os.path.basename(shell) != "bash":
            raise UsageError("--keep needs bash: bash alone carries its state across runs (BASH_ENV)")
        return command, settings

    async def _arun_awaited(self, line: str, cell: str | None, *, value: bool) -> Any:
        command, settings = self._arun_args(line, cell)
        if settings.background:
            job = self._start_job(command, settings)
            await _started(job, settings)
            return job if value else None
        return await self._arun(command, settings, value=value)

    async def _arun(self, command: str, settings: RunSettings, *, value: bool) -> Any:
        namespace = self.shell.user_ns
        if settings.hosts:
            cell = self._cell()
            results = await hosts.run_hosts_for_cell(
                command,
                settings,
                lambda host, s: self._launch_command(command, s.logged_as(cell, f"{host} {command}"), host),
                namespace,
            )
            return results if value else None
        if settings.parallel:
            results = await parallel.run_lines_for_cell(
                command,
                settings,
                lambda line: self._launch_command(line, settings.logged_as(self._cell(), line)),
                namespace,
            )
            return results if value else None
        if settings.keep:
            return await self._arun_kept(command, settings, value=value)
        launch = self._launch_command(command, settings.logged_as(self._cell(), command))
        result = await run_for_cell(launch, settings, namespace, command=command)
        return result if value else None

    async def _arun_kept(self, command: str, settings: RunSettings, *, value: bool) -> Any:
        """``--keep``: start from the kept shell state; what the run leaves is kept."""
        state = self.kept_shell.state
        if settings.cwd is None and state is not None and not os.path.isdir(state.cwd):
            print(f"--keep: {state.cwd} is gone; starting in {os.getcwd()}", file=sys.stderr)
            self.kept_shell.state = replace(state, cwd=os.getcwd())
        with self.kept_shell.carried(settings.env, settings.cwd) as (env, cwd):
            settings = replace(settings, env=env, cwd=cwd).logged_as(self._cell(), command)
            result = await run_for_cell(
                self._launch_command(command, settings), settings, self.shell.user_ns, command=command
            )
        return result if value else None

    def _start_job(self, command: str, settings: RunSettings) -> Job:
        who = f"job{self.background.jobs.next_id}"
        if settings.hosts:
            launch = hosts.start_hosts_job(
                command,
                settings,
                lambda host, s: self._launch_command(command, s.logged_as(who, f"{host} {command}"), host),
            )
            return self.background.start(command, launch, settings, self.shell.user_ns)
        launch = self._launch_command(command, settings.logged_as(who, command))
        return self.background.start(command, launch, settings, self.shell.user_ns)

    def _settings(self, args: Any, keep: bool = False, ask: bool = False) -> RunSettings:
        return run_settings(
            args,
            self.shell.user_ns,
            timeout=self.timeout,
            grace=self.grace,
            interrupt_grace=self.interrupt_grace,
            raise_on_error=self.raise_on_error,
            max_lines=self.max_display_lines,
            capture_limit=self.capture_limit or None,
            page_limit=self.page_limit or None,
            ready_timeout=self.ready_timeout,
            log_dir=self.log_dir,
            keep=keep,
            ask=ask,
        )

    @validate("log_dir")
    def _check_log_dir(self, proposal: Any) -> str:
        if proposal["value"]:
            try:
                prepare_log_dir(proposal["value"])
            except ValueError as exc:
                raise TraitError(str(exc)) from None
        return proposal["value"]

    def _cell(self) -> str:
        return f"cell{self.shell.execution_count}"

    def _launch_command(self, command: str, settings: RunSettings, host: str | None = None) -> Launch:
        """What starts ``command``: here, or on ``host`` (where the host's shell is the default).
        With no shell named the engine picks it, and runs a plain one-line command without one."""
        shell = settings.shell
        if host is None:
            shell = shell or self.default_shell or None
        ask = asker(self.shell, background=settings.background) if settings.ask else None
        remote = {} if host is None else {"host": host, "ssh": self.ssh_settings()}

        def launch(on_output: OutputCallback | None, flow: Flow | None) -> Awaitable[Running]:
            return start(
                command,
                **remote,
                shell=shell,
                stdin="pipe" if settings.interactive else None,
                pty=settings.pty,
                ask=ask,
                on_output=on_output,
                flow=flow,
                **settings.engine_options(),
            )

        return launch

    def ssh_settings(self) -> SSHSettings:
        """Where --host's SSH client configuration comes from (``%config AsyncMagics.*``)."""
        try:
            return SSHSettings(
                config=os.path.expanduser(self.ssh_config),
                known_hosts=os.path.expanduser(self.known_hosts),
                client_keys=tuple(os.path.expanduser(k) for k in self.client_keys),
                connect_timeout=self.connect_timeout,
                keepalive=self.ssh_keepalive,
            )
        except ValueError as exc:
            raise UsageError(f"AsyncMagics: {exc}") from None

    # -- %apipe --------------------------------------------------------------------------

    @plain_help
    @magic_arguments()
    @argument("--dry-run", action="store_true", help="Print each stage as its argv list; run nothing.")
    @pipeline_options
    @no_var_expand
    @line_magic
    def apipe(self, line: str) -> Any:
        """Run a pipeline built without a shell: ``cmd1 | cmd2 | py:func | cmd3``.

            %apipe [options] cmd1 args | cmd2 args | py:func | cmd3 [< in] [> out | >> out]

        Each stage is executed directly, joined to the next by an OS pipe. Words follow
        shell quoting, but nothing is expanded: no globs, no $VAR (%%arun is the shell).
        {name} inserts a Python value as ONE argument; {name*} a list as several; {{ and
        }} are literal braces. py:NAME runs a function of lines (str, newline-stripped)
        that returns or yields lines; plain functions run in a thread, async generators
        on the loop. Each stage's stderr shows labelled [N name]; the pipeline fails if
        any stage fails, except a stage ended by SIGPIPE because a later one stopped
        reading. ``x = %apipe ...`` returns the Result; its ``stages`` say how each ended.
        ``@HOST cmd args | ...`` runs the first stage on HOST over SSH (as given: its words
        are quoted for the host's shell), its output streaming into the local stages.
        """
        spec, settings, dry = self._apipe_args(line)
        if dry:
            print(spec.dry_run())
            return None
        if settings.background:
            _ready_needs_the_loop(settings)
            return self._start_pipeline_job(spec, settings)
        return awaiting.run_blocking(self._apipe(spec, settings, value=True))

    def _apipe_args(self, line: str) -> tuple[PipelineSpec, RunSettings, bool]:
        options, text = split_command(line, self.apipe.parser)
        args = parse(self.apipe.parser, options, absent=_NOT_FOR_PIPELINES)
        settings = self._settings(args)
        try:
            spec = pipesyntax.parse(text, self.shell.user_ns)
            if not args.dry_run:
                pipesyntax.check_commands(spec, env={**os.environ, **settings.env}, cwd=settings.cwd)
        except pipesyntax.PipeSyntaxError as exc:
            raise UsageError(f"%apipe: {exc}") from None
        return spec, settings, args.dry_run

    async def _apipe_awaited(self, line: str, *, value: bool) -> Any:
        spec, settings, dry = self._apipe_args(line)
        if dry:
            print(spec.dry_run())
            return None
        if settings.background:
            job = self._start_pipeline_job(spec, settings)
            await _started(job, settings)
            return job if value else None
        return await self._apipe(spec, settings, value=value)

    async def _apipe(self, spec: PipelineSpec, settings: RunSettings, *, value: bool) -> Any:
        command = " | ".join(map(str, spec.stages))
        launch = _launch_pipeline(spec, settings.logged_as(self._cell(), command), self._pipeline_ssh(spec))
        result = await run_for_cell(launch, settings, self.shell.user_ns, command=command)
        return result if value else None

    def _start_pipeline_job(self, spec: PipelineSpec, settings: RunSettings) -> Job:
        command = " | ".join(str(stage) for stage in spec.stages)
        logged = settings.logged_as(f"job{self.background.jobs.next_id}", command)
        launch = _launch_pipeline(spec, logged, self._pipeline_ssh(spec))
        return self.background.start(command, launch, settings, self.shell.user_ns)

    def _pipeline_ssh(self, spec: PipelineSpec) -> SSHSettings | None:
        return self.ssh_settings() if spec.remote else None

    # -- %ajobs --------------------------------------------------------------------------

    def _ajobs_blocking(self, line: str) -> None:
        """``%ajobs`` where the jobs' loop cannot run (inside a ``def``, ``%autoawait off``):
        list, clear and kill work (kill blocks through the escalation); wait cannot."""
        args = parse(self.ajobs.parser, line)
        if self._ajobs_now(args):
            return
        if args.action in ("wait", "show", "tail", "attach"):
            raise UsageError(
                f"%ajobs {args.action} needs the kernel's event loop, which this call blocks: "
                "run it at the top level of a cell (with %autoawait on)"
            )
        for job in self._targets(args.target):
            job.kill_now()
            print(f"[job {job.id}] killed: {job.command[:60]}")

    def _ajobs_now(self, args: Any) -> bool:
        """list and clear, which need no waiting; True if ``args`` was one of them."""
        _check_ajobs_options(args)
        table = self.background.jobs
        if args.action == "list":
            display(jobs_table(table))
            return True
        if args.action == "clear":
            print(f"forgot {table.clear()} finished job(s)")
            return True
        if args.action == "hosts":
            display(connections_table(CONNECTIONS.table()))
            return True
        return False

    async def _ajobs(self, line: str) -> None:
        args = parse(self.ajobs.parser, line)
        if self._ajobs_now(args):
            return
        jobs = self._targets(args.target)
        if args.action in ("show", "tail", "attach"):
            return await self._look(args, jobs)
        if args.action == "kill":
            for job in jobs:
                await job.kill()
                print(status_text(job))
            return
        failed = []
        for job in jobs:
            await job.wait_quietly()
            try:
                self.background.settle(job, say_status=False)  # said below, after any replay
            except CommandError as exc:
                failed.append(exc)
            if args.replay:
                self.background.replay(job, whole=True)
            print(status_text(job), file=sys.stderr if job.result and not job.result.ok else sys.stdout)
        if failed:
            raise first_of(failed)

    async def _look(self, args: Any, jobs: list[Job]) -> None:
        """show, tail and attach: one job's output in this cell."""
        if len(jobs) != 1 or args.target == "all":
            raise UsageError(f"%ajobs {args.action} takes one job id, not 'all'")
        job, lines = jobs[0], 100 if args.lines is None else args.lines
        if args.action == "show":
            await self.background.show(job, self.max_display_lines)
        elif args.action == "attach" or args.follow:
            await self.background.attach(job, lines, self.max_display_lines)
        else:
            await self.background.tail(job, lines)

    def _targets(self, target: str | None) -> list[Job]:
        if target is None:
            raise UsageError("%ajobs: which job? give an id or 'all'")
        if target == "all":
            return list(self.background.jobs)
        if not target.isdigit():
            raise UsageError(f"%ajobs: not a job id: {target!r}")
        try:
            return [self.background.jobs.get(int(target))]
        except KeyError as exc:
            raise UsageError(f"%ajobs: {exc.args[0]}") from None


def _launch_pipeline(spec: PipelineSpec, settings: RunSettings, ssh: SSHSettings | None) -> Launch:
    async def launch(on_output: OutputCallback | None, flow: Flow | None) -> Pipeline:
        try:
            return await start_pipeline(
                spec.stages,
                stdin_path=spec.stdin_path,
                stdout_path=spec.stdout_path,
                append=spec.append,
                on_output=on_output,
                flow=flow,
                ssh=ssh,
                **settings.engine_options(),
            )
        except ConnectError as exc:  # the one host of the pipeline: the cell's error
            raise UsageError(f"%apipe: cannot reach {exc}") from None

    return launch


async def _started(job: Job, settings: RunSettings) -> None:
    """Wait until a job's process exists, so its pid is known when the cell returns; with
    ``--ready``, until it is ready to use."""
    if settings.ready is not None:
        try:
            await job.ready(settings.ready, settings.ready_timeout)
        except asyncio.CancelledError:  # job.ready() ended the job
            if job.result is None:
                raise
            raise CommandError(
                job.result, f"interrupted before ready: {settings.ready}; job {job.id} killed"
            ) from None
        return
    try:
        await job.process()
    except Exception:
        pass  # reported by the job itself


def _check_ajobs_options(args: Any) -> None:
    if args.lines is not None and args.action not in ("tail", "attach"):
        raise UsageError("%ajobs: -n/--lines goes with tail or attach")
    if args.lines is not None and args.lines < 0:
        raise UsageError(f"%ajobs: -n/--lines must be 0 or more, not {args.lines}")
    if args.follow and args.action != "tail":
        raise UsageError("%ajobs: -f/--follow goes with tail")
    if args.replay and args.action != "wait":
        raise UsageError("%ajobs: --replay goes with wait")


def _ready_needs_the_loop(settings: RunSettings) -> None:
    if settings.ready is not None:
        raise UsageError(
            "--ready needs the kernel's event loop, which this call blocks: "
            "run it at the top level of a cell (with %autoawait on), or await job.ready()"
        )
