"""Keeping a big log from filling the page cache: its written pages are let go as it grows.

A gigabyte of output written to a log costs the kernel process system time for every fresh
page the page cache takes: 0.35 s per GB when Linux reuses pages it just freed, 1.3 to 2.3 s
per GB on a virtual machine whose free memory the host has taken back. A log whose older
part is dropped behind it reuses the same few megabytes of pages: 0.5 s per GB either way.
Dropping starts the pages' writeback, and that waits for the disk (up to 0.25 s measured),
so it is done on a thread of its own, never the event loop's.
"""

from __future__ import annotations

import os
import queue
import threading

DROP_AFTER = 64 << 20
"""A log is left whole in the page cache up to this size (it is likely read again soon)."""

DROP_EVERY = 32 << 20
"""Bytes a log grows between two drops; the last this many stay cached (a follower reads them)."""

_work: queue.SimpleQueue[tuple[int, int]] = queue.SimpleQueue()
_worker: threading.Thread | None = None
_lock = threading.Lock()


def supported() -> bool:
    return hasattr(os, "posix_fadvise")


def drop_behind(fd: int, end: int) -> None:
    """Let the page cache drop the pages of file ``fd`` before offset ``end``, soon.

    The file is held by a duplicate descriptor until then, so closing ``fd`` meanwhile
    never lets the advice reach another file that takes its number. The thread ends when
    it has nothing left to do (no thread outlives the work asyncmagic started)."""
    global _worker
    if end <= 0 or not supported():
        return
    _work.put((os.dup(fd), end))
    with _lock:
        if _worker is None:
            _worker = threading.Thread(target=_drop_all, name="asyncmagic-pagecache", daemon=True)
            _worker.start()


def _drop_all() -> None:
    global _worker
    while True:
        with _lock:  # taking the last piece of work and ending are one step
            try:
                fd, end = _work.get_nowait()
            except queue.Empty:
                _worker = None
                return
        try:
            os.posix_fadvise(fd, 0, end, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass  # advice only: a file system that cannot take it keeps its pages
        finally:
            os.close(fd)
