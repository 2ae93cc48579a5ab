"""asyncmagic: run shell commands from IPython as asyncio subprocesses, streaming live.

``%load_ext asyncmagic`` registers the magics. The engine (:func:`run`, :func:`start`,
:class:`Result`) is plain asyncio and works without IPython::

    result = await asyncmagic.run("ls -la", timeout=5)
"""

from __future__ import annotations

from typing import Any

from .jobs import Job
from .process import Process, run, start
from .result import CommandError, Result

__all__ = ["CommandError", "Job", "Process", "Result", "run", "start"]
__version__ = "0.1.0"


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext asyncmagic``: register the magics and the awaiting transformer.

    Creating the magics adds them to ``ipython.configurables``, so ``%config
    AsyncMagics.timeout = 60`` reaches them.
    """
    from .awaiting import await_magics
    from .completion import matcher_for
    from .magics import AsyncMagics

    magics = AsyncMagics(ipython)
    ipython.register_magics(magics)
    if await_magics not in ipython.input_transformers_post:
        ipython.input_transformers_post.append(await_magics)
    completer = getattr(ipython, "Completer", None)
    if completer is not None:
        completer.custom_matchers.append(matcher_for(magics))


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext asyncmagic``: remove the transformer, the magics and their config entry."""
    from .awaiting import await_magics
    from .magics import AsyncMagics

    if await_magics in ipython.input_transformers_post:
        ipython.input_transformers_post.remove(await_magics)
    completer = getattr(ipython, "Completer", None)
    if completer is not None:
        completer.custom_matchers[:] = [
            m for m in completer.custom_matchers if getattr(m, "matcher_identifier", None) != "asyncmagic"
        ]
    manager = ipython.magics_manager
    for magics in [c for c in ipython.configurables if isinstance(c, AsyncMagics)]:
        magics.background.close()
    for table in manager.magics.values():
        for name, fn in list(table.items()):
            if isinstance(getattr(fn, "__self__", None), AsyncMagics):
                del table[name]
    for key, magics in list(manager.registry.items()):
        if isinstance(magics, AsyncMagics):
            del manager.registry[key]
    ipython.configurables[:] = [c for c in ipython.configurables if not isinstance(c, AsyncMagics)]
