"""What a command reads on stdin: every accepted input source, turned into byte chunks.

Accepted: ``str``, ``bytes``, a ``pathlib.Path`` (that file's contents), an open file
(text or binary), an iterable of lines (``str`` or ``bytes``, a missing trailing newline
is added), and an async iterable of the same. Blocking sources (files, iterators that
may compute) are read in a worker thread so the event loop never waits on them.
"""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from itertools import islice
from pathlib import PurePath
from typing import Any

InputSource = str | bytes | bytearray | os.PathLike | io.IOBase | Iterable[Any] | AsyncIterable[Any]

CHUNK = 64 * 1024
BATCH = 1024


def check_source(source: object) -> None:
    """Raise TypeError now, before anything starts, if ``source`` cannot be a command's input."""
    if isinstance(source, (str, bytes, bytearray, PurePath, AsyncIterable)):
        return
    if isinstance(source, (list, tuple)):
        for number, item in enumerate(source, 1):
            if not isinstance(item, (str, bytes, bytearray, memoryview)):
                raise TypeError(
                    f"input lines must be str or bytes: item {number} is {type(item).__name__} {item!r:.40}"
                )
        return
    if hasattr(source, "read") or isinstance(source, Iterable):
        return
    raise TypeError(
        f"cannot use {type(source).__name__} as input: give str, bytes, a Path, "
        "an open file or an iterable of lines"
    )


def input_failed(error: BaseException) -> str:
    """One line for an input source that raised while it was being fed."""
    text = str(error).splitlines()[0] if str(error) else ""
    return f"input failed: {type(error).__name__}" + (f": {text}" if text else "")


def as_line(item: object) -> bytes:
    """One line of an iterable as bytes, with a trailing newline."""
    if isinstance(item, str):
        data = item.encode()
    elif isinstance(item, (bytes, bytearray, memoryview)):
        data = bytes(item)
    else:
        raise TypeError(f"input lines must be str or bytes, not {type(item).__name__}")
    return data if data.endswith(b"\n") else data + b"\n"


async def byte_chunks(source: InputSource) -> AsyncIterator[bytes]:
    """Yield ``source`` as byte chunks of at most about 64 KiB."""
    check_source(source)
    if isinstance(source, str):
        source = source.encode()
    if isinstance(source, (bytes, bytearray)):
        view = memoryview(source)
        for start in range(0, len(view), CHUNK):
            yield bytes(view[start : start + CHUNK])
        return
    if isinstance(source, PurePath):
        with open(source, "rb") as f:
            async for chunk in _read_file(f):
                yield chunk
        return
    if hasattr(source, "read"):
        async for chunk in _read_file(source):
            yield chunk
        return
    if isinstance(source, AsyncIterable):
        async for item in source:
            yield as_line(item)
        return
    iterator = iter(source)
    while batch := await asyncio.to_thread(_next_batch, iterator):
        yield b"".join(batch)


def _next_batch(iterator: Iterator[Any]) -> list[bytes]:
    return [as_line(item) for item in islice(iterator, BATCH)]


async def _read_file(f: Any) -> AsyncIterator[bytes]:
    while data := await asyncio.to_thread(f.read, CHUNK):
        yield data.encode() if isinstance(data, str) else bytes(data)


class WriteGate:
    """Back-pressure on a pipe we write: asyncio's ``pause_writing``/``resume_writing``
    calls close and open it, and :meth:`drain` waits while it is closed."""

    def __init__(self) -> None:
        self._open: asyncio.Future[None] | None = None
        self.lost = False
        """The reader went away: nothing more can be written."""

    def pause(self) -> None:
        if self._open is None:
            self._open = asyncio.get_running_loop().create_future()

    def resume(self) -> None:
        if self._open is not None and not self._open.done():
            self._open.set_result(None)
        self._open = None

    def lose(self) -> None:
        self.lost = True
        self.resume()

    async def drain(self) -> None:
        if self._open is not None:
            await self._open


class GatedPipe(asyncio.Protocol):
    """The protocol of a write pipe (``loop.connect_write_pipe``): it works its gate."""

    def __init__(self) -> None:
        self.gate = WriteGate()

    def pause_writing(self) -> None:
        self.gate.pause()

    def resume_writing(self) -> None:
        self.gate.resume()

    def connection_lost(self, exc: Exception | None) -> None:
        self.gate.lose()


async def feed(
    source: InputSource,
    pipe: asyncio.WriteTransport,
    gate: WriteGate,
    failed: Callable[[BaseException], None],
) -> None:
    """Write all of ``source`` into ``pipe`` with back-pressure, then close it.

    A reader that stops early (a broken pipe) is not an error. An error of the source goes
    to ``failed`` (it ends the command), never out of this task: a SystemExit raised by a
    source must not stop the event loop, and awaiting the command's stop here would wait
    for the command's end, which waits for this feeder.
    """
    try:
        async for chunk in byte_chunks(source):
            if pipe.is_closing() or gate.lost:
                return
            pipe.write(chunk)
            await gate.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        failed(exc)
    finally:
        pipe.close()


async def lines_of(source: InputSource) -> list[str]:
    """All of ``source``, as lines without their newlines (answers given in advance)."""
    data = b"".join([chunk async for chunk in byte_chunks(source)])
    return data.decode(errors="replace").splitlines()
