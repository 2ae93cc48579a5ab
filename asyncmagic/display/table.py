"""Tables as a person reads them: HTML in a notebook, aligned text in a terminal; the one
of ``%ajobs`` and the summary that ends a ``--parallel`` cell."""

from __future__ import annotations

import html
import os
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from ..engine.jobs import Job
from ..engine.result import Result, format_seconds
from ..engine.text import shorten

_FAILED_ROW = (
    '<tr class="asyncmagic-failed" style="color:var(--jp-error-color1,#c33);'
    'background:var(--jp-rendermime-error-background,#fdd)">'
)
"""A failed row: JupyterLab's own error colours where they exist."""

_LEFT = ' style="text-align:left"'
"""For the command column; numbers keep the frontend's alignment."""


class Table:
    """Rows of text under column names, with an optional title line; failed rows marked."""

    def __init__(
        self,
        columns: Sequence[str],
        rows: Sequence[tuple[str, ...]],
        *,
        title: str = "",
        empty: str = "",
        failed: Sequence[bool] | None = None,
        tooltips: Sequence[str] | None = None,
        left: int | None = None,
    ) -> None:
        self.columns, self.rows, self.title, self.empty = tuple(columns), list(rows), title, empty
        self._failed = list(failed) if failed is not None else [False] * len(self.rows)
        self._tooltips = list(tooltips) if tooltips is not None else None
        self._left = left
        """The column aligned left in HTML (the command), if any."""

    def __repr__(self) -> str:
        if not self.rows and self.empty:
            return self.empty
        rows = [self.columns, *self.rows]
        widths = [max(len(r[i]) for r in rows) for i in range(len(self.columns))]
        table = "\n".join(
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
        )
        return f"{self.title}\n{table}" if self.title else table

    def _repr_html_(self) -> str:
        if not self.rows and self.empty:
            return f"<p>{html.escape(self.empty)}</p>"
        head = "".join(f"<th{self._align(i)}>{html.escape(c)}</th>" for i, c in enumerate(self.columns))
        body = "".join(
            (_FAILED_ROW if failed else "<tr>")
            + "".join(self._cell(r, i, c) for i, c in enumerate(row))
            + "</tr>"
            for r, (row, failed) in enumerate(zip(self.rows, self._failed, strict=True))
        )
        table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        return f"<p>{html.escape(self.title)}</p>{table}" if self.title else table

    def _align(self, column: int) -> str:
        return _LEFT if column == self._left else ""

    def _cell(self, row: int, column: int, text: str) -> str:
        tip = ""
        if self._tooltips is not None and column == self._left:
            tip = f' title="{html.escape(self._tooltips[row])}"'
        return f"<td{self._align(column)}{tip}>{html.escape(text)}</td>"


def jobs_table(jobs: Iterable[Job]) -> Table:
    """The table ``%ajobs`` shows."""
    rows = [
        (
            str(job.id),
            shorten(job.command, 60),
            "" if job.pid is None else str(job.pid),
            job.state,
            format_seconds(job.elapsed),
            "" if job.returncode is None else str(job.returncode),
            f"{job.bytes_out:,}",
        )
        for job in jobs
    ]
    return Table(("id", "command", "pid", "state", "elapsed", "exit", "bytes out"), rows, empty="no jobs")


def summary_table(
    results: Sequence[Result], labels: Sequence[str] | None = None, what: str = "command"
) -> Table:
    """The table that ends a ``--parallel`` or ``--host`` cell: command (or host), status,
    exit, duration, bytes out; the failed rows marked, each command whole in its tooltip."""
    names = labels if labels is not None else [shorten(r.command, 60) for r in results]
    rows = [
        (
            name,
            "ok" if r.ok else r.describe(),
            str(r.returncode),
            format_seconds(r.duration),
            f"{_bytes_out(r):,}",
        )
        for name, r in zip(names, results, strict=True)
    ]
    failed = [not r.ok for r in results]
    title = f"{len(rows)} {what}{'s' if len(rows) != 1 else ''}, {sum(failed)} failed"
    return Table(
        (what, "status", "exit", "duration", "bytes out"),
        rows,
        title=title,
        failed=failed,
        tooltips=[r.command for r in results],
        left=0,
    )


def _bytes_out(result: Result) -> int:
    """Bytes of output: the log file's size when there is one (the captures may be cut)."""
    if result.log_path is not None and os.path.exists(result.log_path):
        return os.path.getsize(result.log_path)
    return len((result.stdout + result.stderr).encode())


def connections_table(rows: Sequence[dict[str, Any]]) -> Table:
    """``%ajobs hosts``: one row per open SSH connection."""
    now = datetime.now(timezone.utc)
    return Table(
        ("host", "address", "user", "open for", "sessions"),
        [
            (
                row["host"],
                row["peer"],
                row["user"],
                format_seconds((now - row["opened_at"]).total_seconds()),
                str(row["sessions"]),
            )
            for row in rows
        ],
        empty="no open SSH connections",
        left=0,
    )
