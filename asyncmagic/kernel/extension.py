"""Loading and unloading the extension: the magics, the awaiting rewrite, the completer."""

from __future__ import annotations

import sys
from typing import Any

from . import awaiting
from .completion import matcher_for
from .magics import AsyncMagics

AWAITABLE_CELL_MAGICS = {"arun"}
AWAITABLE_LINE_MAGICS = {"arun", "ajobs", "apipe"}
"""The magics whose top-level calls are awaited (see :mod:`asyncmagic.kernel.awaiting`)."""


def load(ipython: Any) -> None:
    """``%load_ext asyncmagic``: register the magics and the awaiting transformer.

    Creating the magics adds them to ``ipython.configurables``, so ``%config
    AsyncMagics.timeout = 60`` reaches them.
    """
    magics = AsyncMagics(ipython)
    ipython.register_magics(magics)
    awaiting.enable(AsyncMagics, cell=AWAITABLE_CELL_MAGICS, line=AWAITABLE_LINE_MAGICS)
    if awaiting.await_magics not in ipython.input_transformers_post:
        ipython.input_transformers_post.append(awaiting.await_magics)
    completer = getattr(ipython, "Completer", None)
    if completer is not None:
        completer.custom_matchers.append(matcher_for(magics))


def unload(ipython: Any) -> None:
    """``%unload_ext asyncmagic``: end the jobs, remove the transformer, the magics and their config entry."""
    if awaiting.await_magics in ipython.input_transformers_post:
        ipython.input_transformers_post.remove(awaiting.await_magics)
    completer = getattr(ipython, "Completer", None)
    if completer is not None:
        completer.custom_matchers[:] = [
            m for m in completer.custom_matchers if getattr(m, "matcher_identifier", None) != "asyncmagic"
        ]
    manager = ipython.magics_manager
    for magics in [c for c in ipython.configurables if isinstance(c, AsyncMagics)]:
        magics.background.close()
    remote = sys.modules.get("asyncmagic.engine.remote")  # never imported: nothing remote to end
    if remote is not None:
        remote.end_all_remote_now()  # and close the SSH connections: each host's wrapper ends the rest
    for table in manager.magics.values():
        for name, fn in list(table.items()):
            if isinstance(getattr(fn, "__self__", None), AsyncMagics):
                del table[name]
    for key, magics in list(manager.registry.items()):
        if isinstance(magics, AsyncMagics):
            del manager.registry[key]
    ipython.configurables[:] = [c for c in ipython.configurables if not isinstance(c, AsyncMagics)]
