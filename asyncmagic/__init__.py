"""asyncmagic: run shell commands from IPython as asyncio subprocesses, streaming live.

``%load_ext asyncmagic`` registers the magics. The engine (:func:`run`, :func:`start`,
:func:`run_pipeline`, :func:`start_pipeline`, :class:`Result`) is plain asyncio and works
without IPython::

    result = await asyncmagic.run("ls -la", timeout=5)
    result = await asyncmagic.run_pipeline([Command(("seq", "10")), Command(("wc", "-l"))])
"""

from __future__ import annotations

from typing import Any

from .engine.jobs import Job
from .engine.pipeline import Command, Pipeline, PyStage, Stage, run_pipeline, start_pipeline
from .engine.process import Process, run, start
from .engine.result import CommandError, Result
from .engine.running import Running

__all__ = [
    "Command",
    "CommandError",
    "Job",
    "Pipeline",
    "Process",
    "PyStage",
    "Result",
    "Running",
    "Stage",
    "run",
    "run_pipeline",
    "start",
    "start_pipeline",
]
__version__ = "0.1.0"


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext asyncmagic``: register the magics and the awaiting transformer."""
    from .kernel.extension import load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext asyncmagic``: end the jobs, remove the magics and the transformer."""
    from .kernel.extension import unload

    unload(ipython)
