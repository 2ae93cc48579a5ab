"""asyncmagic: run shell commands from IPython as asyncio subprocesses, streaming live.

``%load_ext asyncmagic`` registers the magics. The engine (:func:`run`, :func:`start`,
:class:`Result`) is plain asyncio and works without IPython::

    result = await asyncmagic.run("ls -la", timeout=5)
"""

from __future__ import annotations

from typing import Any

from .process import Process, run, start
from .result import CommandError, Result

__all__ = ["CommandError", "Process", "Result", "run", "start"]
__version__ = "0.1.0"


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext asyncmagic``: register the magics, their config and the awaiting transformer."""
    from .awaiting import await_magics
    from .magics import AsyncMagics

    magics = AsyncMagics(ipython)
    ipython.register_magics(magics)
    if magics not in ipython.configurables:
        ipython.configurables.append(magics)
    if await_magics not in ipython.input_transformers_post:
        ipython.input_transformers_post.append(await_magics)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext asyncmagic``: remove the transformer and the magics."""
    from .awaiting import await_magics
    from .magics import AsyncMagics

    if await_magics in ipython.input_transformers_post:
        ipython.input_transformers_post.remove(await_magics)
    magics = ipython.magics_manager.registry.pop(AsyncMagics.__name__, None)
    if magics is not None:
        for kind, names in magics.magics.items():
            for name in names:
                ipython.magics_manager.magics[kind].pop(name, None)
        if magics in ipython.configurables:
            ipython.configurables.remove(magics)
