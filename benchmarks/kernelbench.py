"""Shared pieces of the benchmarks: a real kernel and a cell timed as a frontend sees it."""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from kernelclient import Execution, Kernel


@dataclass
class Timed:
    """One cell: wall time from sending the request to idle, and the iopub it produced."""

    seconds: float
    stream_messages: int
    stream_bytes: int
    execution: Execution


def timed(kernel: Kernel, code: str, timeout: float = 600) -> Timed:
    t0 = time.monotonic()
    ex = kernel.execute(code, timeout=timeout)
    assert ex.error is None, (code, ex.error)
    streams = ex.of_type("stream")
    return Timed(
        seconds=ex.idle_at - t0,
        stream_messages=len(streams),
        stream_bytes=sum(len(m["content"]["text"].encode()) for m in streams),
        execution=ex,
    )


def median(values: list[float]) -> float:
    return statistics.median(values)


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
