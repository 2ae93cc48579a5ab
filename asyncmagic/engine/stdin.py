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
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
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
