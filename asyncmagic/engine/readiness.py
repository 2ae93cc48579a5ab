"""Readiness: when a started server can be used, not merely when its process exists.

A spec says what "ready" means, in the words a person would check it with:

- ``tcp:PORT`` or ``tcp:HOST:PORT``: a TCP connection is accepted (HOST defaults to
  ``localhost``, so a server bound to 127.0.0.1, ::1 or every address is found);
- ``http://…`` or ``https://…``: a GET is answered with a status below 500 (a 404 still
  means the server is up; certificates are not checked: nothing is sent but the GET);
- ``/REGEX/``: a line of the job's output (stdout or stderr) matches.

Probes are plain asyncio connections with short timeouts, retried with a growing pause
(50 ms up to 500 ms): the loop is never blocked while a job gets ready.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

PROBE_TIMEOUT = 2.0
"""Seconds one connection attempt (and an HTTP answer's status line) may take."""

FIRST_PAUSE, LAST_PAUSE = 0.05, 0.5
"""Seconds between two probes: the first pause, doubled up to the last."""


@dataclass(frozen=True)
class Readiness:
    """A checked readiness spec; build it with :func:`parse_readiness`."""

    text: str
    """The spec as given, for messages."""
    kind: Literal["tcp", "http", "line"]
    host: str = ""
    port: int = 0
    path: str = "/"
    tls: bool = False
    pattern: re.Pattern[str] | None = None

    def __str__(self) -> str:
        return self.text

    async def probe(self) -> bool:
        """One attempt: True if the server answers now (``line`` specs are matched elsewhere)."""
        if self.kind == "tcp":
            return await _connects(self.host, self.port)
        if self.kind == "http":
            return await _http_answers(self.host, self.port, self.path, self.tls)
        raise ValueError(f"{self.text} is matched against output lines, not probed")


def parse_readiness(text: str) -> Readiness:
    """Check a spec (``tcp:8000``, ``tcp:host:8000``, ``http://…``, ``/REGEX/``); ValueError
    names what is wrong with it."""
    spec = text.strip()
    if spec.startswith("tcp:"):
        host, _, port = spec[4:].rpartition(":")
        host = host.strip("[]") or "localhost"  # [::1]:8000
        return Readiness(spec, "tcp", host=host, port=_port(port, spec))
    if spec.startswith(("http://", "https://")):
        parts = urlsplit(spec)
        if not parts.hostname:
            raise ValueError(f"no host in {spec!r}")
        tls = parts.scheme == "https"
        try:
            port = parts.port or (443 if tls else 80)
        except ValueError:
            raise ValueError(f"port out of range (1-65535) in {spec!r}") from None
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return Readiness(spec, "http", host=parts.hostname, port=port, path=path, tls=tls)
    if len(spec) >= 3 and spec.startswith("/") and spec.endswith("/"):
        try:
            pattern = re.compile(spec[1:-1])
        except re.error as exc:
            raise ValueError(f"bad regular expression in {spec!r}: {exc}") from None
        return Readiness(spec, "line", pattern=pattern)
    raise ValueError(
        f"not a readiness spec: {text!r}; give tcp:[HOST:]PORT, http://HOST:PORT/PATH or /REGEX/"
    )


def _port(text: str, spec: str) -> int:
    if not text.isdigit():
        raise ValueError(f"not a port number in {spec!r}")
    port = int(text)
    if not 1 <= port <= 65535:
        raise ValueError(f"port out of range (1-65535) in {spec!r}")
    return port


async def _connects(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), PROBE_TIMEOUT)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return True


_STATUS = re.compile(rb"HTTP/\d(?:\.\d)? (\d{3})")


async def _http_answers(host: str, port: int, path: str, tls: bool) -> bool:
    context = None
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context), PROBE_TIMEOUT
        )
    except (OSError, asyncio.TimeoutError):
        return False
    try:
        name = f"[{host}]" if ":" in host else host
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {name}:{port}\r\nConnection: close\r\n\r\n".encode())
        line = await asyncio.wait_for(reader.readline(), PROBE_TIMEOUT)
    except (OSError, asyncio.TimeoutError):
        return False
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (OSError, ssl.SSLError):
            pass
    match = _STATUS.match(line)
    return match is not None and int(match.group(1)) < 500
