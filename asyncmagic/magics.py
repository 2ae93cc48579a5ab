"""The IPython magics: ``%%arun`` and ``%arun``. They parse options and hand over.

Every magic has two doors: IPython's synchronous call (``run_cell_magic``), which runs to
the end with :func:`~asyncmagic.awaiting.run_blocking`, and :meth:`AsyncMagics.awaitable`,
which the input transformer in :mod:`asyncmagic.awaiting` awaits so the kernel's event
loop stays free. Both build the same coroutine.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import magic_arguments
from traitlets import Bool, Float, Unicode

from . import awaiting
from .foreground import run_for_cell
from .options import parse, run_options, settings, split_command
from .process import default_shell


@magics_class
class AsyncMagics(Magics):
    """Run shell commands as asyncio subprocesses on the kernel's event loop."""

    timeout = Float(None, allow_none=True, help="Default --timeout in seconds (None: no limit).").tag(
        config=True
    )
    grace = Float(2.0, help="Default --grace: seconds between SIGTERM and SIGKILL.").tag(config=True)
    default_shell = Unicode("", help="Shell for %%arun scripts; empty: bash, else sh.").tag(config=True)
    raise_on_error = Bool(True, help="Raise CommandError when a command fails (else only report it).").tag(
        config=True
    )

    @magic_arguments()
    @run_options
    @line_cell_magic
    def arun(self, line: str, cell: str | None = None) -> Any:
        """Run a shell script (the cell) or one command (the rest of the line), streaming its output.

        ::

            %%arun [options]
            script...

            %arun [options] command args...

        stdout and stderr stream into the cell as they arrive, in order; the kernel's
        event loop keeps running meanwhile. A failure (non-zero exit, timeout,
        interrupt) raises CommandError, shown as one line, unless --no-raise.
        ``x = %arun cmd`` stores the Result in x.
        """
        return awaiting.run_blocking(self._arun(line, cell, value=True))

    def awaitable(self, name: str, line: str, cell: str | None, *, value: bool) -> Coroutine[Any, Any, Any]:
        """The coroutine that runs magic ``name``; what an awaited cell awaits."""
        if name == "arun":
            return self._arun(line, cell, value=value)
        raise UsageError(f"no awaitable magic named {name!r}")

    async def _arun(self, line: str, cell: str | None, *, value: bool) -> Any:
        if cell is None:
            options, command = split_command(line, self.arun.parser)
            if not command:
                raise UsageError("%arun needs a command: %arun [options] command args...")
        else:
            options, command = line, cell
        args = parse(self.arun.parser, options)
        run = settings(
            args,
            self.shell.user_ns,
            timeout=self.timeout,
            grace=self.grace,
            raise_on_error=self.raise_on_error,
        )
        result = await run_for_cell(
            command, run, self.shell.user_ns, shell=self.default_shell or default_shell()
        )
        return result if value else None


awaiting.AWAITABLE_MAGICS["cell"].add("arun")
awaiting.AWAITABLE_MAGICS["line"].add("arun")
