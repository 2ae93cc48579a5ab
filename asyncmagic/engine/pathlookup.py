"""Finding a program on ``PATH`` as exec would, remembered while the folders searched do not change.

A plain line (``true``, ``make all``) runs without bash when its program is found and exec
can run it, and the program is told its path in ``_``, as bash tells it; so each such line
is looked up here (exec then searches ``PATH`` again itself). Done afresh every time, that
was about a tenth of a short command's CPU in a kernel whose ``PATH`` has a dozen folders
(``shutil.which`` tries each, and the file is opened to read its first bytes).

A folder's mtime changes whenever a name is added to it, removed or renamed, so a lookup is
kept with the mtimes of the folders it searched and used again only while they are the
same (as importlib's ``FileFinder`` keeps a folder's listing). What mtimes miss is never
kept: a folder changed in the last two seconds (an mtime is only as fine as the kernel's
clock tick), and a file of that name that is there but cannot be executed (a ``chmod +x``
changes the file, not its folder). The program found is checked again each time (its
inode, ctime and mode: a new file, new contents or new permissions).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from stat import S_ISDIR

SETTLE = 2.0
"""Seconds since a folder last changed before a lookup through it is kept."""

_LIMIT = 256
"""Lookups kept (the oldest go first)."""


@dataclass(frozen=True)
class _Lookup:
    program: str | None
    folders: tuple[tuple[str, int | None], ...]
    """Each folder searched, in order, and its mtime (None: it was not there)."""
    identity: tuple[int, int, int] | None
    """The program's inode, ctime and mode when found."""
    runs_itself: bool
    """Whether exec runs it (a binary or a ``#!`` script)."""


_kept: dict[tuple[str, str], _Lookup] = {}
_lock = threading.Lock()


def find_program(name: str, path: str) -> tuple[str | None, bool]:
    """The file ``name`` (no slash) runs from the folders of ``path`` (all absolute), as
    ``shutil.which`` finds it, or None; and whether exec runs it itself."""
    key = (name, path)
    kept = _kept.get(key)
    if kept is not None and _still(kept):
        return kept.program, kept.runs_itself
    found, keep = _look_up(name, path)
    with _lock:
        if keep:
            _kept[key] = found
            while len(_kept) > _LIMIT:
                del _kept[next(iter(_kept))]
        else:
            _kept.pop(key, None)
    return found.program, found.runs_itself


def runs_itself(program: str) -> bool:
    """Whether exec runs ``program`` itself: a binary or a ``#!`` script (bash runs a text
    file without ``#!`` as a script of its own; exec refuses it)."""
    try:
        with open(program, "rb") as file:
            head = file.read(4)
    except OSError:
        return False
    return head == b"\x7fELF" or head.startswith(b"#!")


def _look_up(name: str, path: str) -> tuple[_Lookup, bool]:
    """A fresh lookup, and whether it may be kept."""
    recent = time.time() - SETTLE
    folders: list[tuple[str, int | None]] = []
    keep = True
    for folder in dict.fromkeys(path.split(os.pathsep)):  # each folder once, as shutil.which
        try:
            stat = os.stat(folder)
        except OSError:
            folders.append((folder, None))
            continue
        folders.append((folder, stat.st_mtime_ns))
        keep = keep and stat.st_mtime < recent
        candidate = os.path.join(folder, name)
        identity = _identity(candidate)
        if identity is not None and not S_ISDIR(identity[2]) and os.access(candidate, os.X_OK):
            return _Lookup(candidate, tuple(folders), identity, runs_itself(candidate)), keep
        if identity is not None:
            keep = False  # there, but not to be run now: a chmod would not show in the folder
    return _Lookup(None, tuple(folders), None, False), keep


def _still(kept: _Lookup) -> bool:
    """Whether a kept lookup would find the same today."""
    for folder, mtime in kept.folders:
        try:
            now = os.stat(folder).st_mtime_ns
        except OSError:
            now = None
        if now != mtime:
            return False
    return kept.program is None or _identity(kept.program) == kept.identity


def _identity(file: str) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(file)
    except OSError:
        return None
    return stat.st_ino, stat.st_ctime_ns, stat.st_mode
