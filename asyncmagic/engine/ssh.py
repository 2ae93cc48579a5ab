"""Connections to other machines over SSH (asyncssh, on this event loop): one per host, reused.

A host is named as ``ssh`` names it: an alias of the ssh_config (HostName, User, Port,
IdentityFile and ProxyJump are honoured, as asyncssh reads them), ``user@host`` or
``host:port``. The first command to a host opens its connection; the next ones open a
session on it (no new handshake). A connection holds at most 10 sessions at once (OpenSSH's
default ``MaxSessions``; fewer if the server refuses sooner): an eleventh opens a second
connection to that host. A connection that closed (the host dropped it, a keepalive went
unanswered) is opened again by the next command. Every failure to reach a host is a
:class:`ConnectError`: one line naming the host and the cause.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # imported where it is used: it costs a quarter second to import
    import asyncssh

from .running import now


@dataclass(frozen=True)
class SSHSettings:
    """Where the client's configuration comes from; every field has OpenSSH's default."""

    config: str = ""
    """An ssh_config file; empty: ``~/.ssh/config``."""
    known_hosts: str = ""
    """The known_hosts file host keys are checked against; empty: ``~/.ssh/known_hosts``;
    ``none``: no check at all (trust any host key: only for throwaway machines)."""
    client_keys: tuple[str, ...] = ()
    """Private key files to log in with; empty: the ssh_config's, the agent's, ``~/.ssh/id_*``."""
    connect_timeout: float = 10.0
    """Seconds a host has to answer and let us in."""
    keepalive: float = 15.0
    """Seconds between keepalives on an idle connection (three unanswered end it)."""

    def __post_init__(self) -> None:
        if self.connect_timeout <= 0:
            raise ValueError(f"connect_timeout must be positive, not {self.connect_timeout}")
        if self.keepalive < 0:
            raise ValueError(f"keepalive must be zero (off) or more, not {self.keepalive}")


class ConnectError(OSError):
    """A host could not be reached, or would not let us in."""

    def __init__(self, host: str, cause: str) -> None:
        super().__init__(f"{host}: {cause}")
        self.host = host
        self.cause = cause

    def __str__(self) -> str:
        return str(self.args[0])


def split_host(name: str) -> tuple[str, int | None, str | None]:
    """``user@host:port`` -> (host, port, user); an IPv6 address goes in brackets: ``[::1]:22``."""
    user, _, rest = name.rpartition("@")
    host, port = rest, None
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port_text = tail[1:] if tail.startswith(":") else ""
    elif rest.count(":") == 1:
        host, port_text = rest.split(":")
    else:
        port_text = ""
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"not a port in host {name!r}: {port_text!r}")
        port = int(port_text)
    if not host or any(c.isspace() for c in name):
        raise ValueError(f"not a host name: {name!r}")
    return host, port, user or None


def config_aliases(path: str = "") -> list[str]:
    """The host aliases an ssh_config names (``Host web1 web2``; patterns left out), for
    completion; ``path`` empty: ``~/.ssh/config``."""
    try:
        with open(os.path.expanduser(path or "~/.ssh/config")) as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    aliases = []
    for line in lines:
        words = line.strip().replace("=", " ", 1).split()
        if len(words) > 1 and words[0].lower() == "host":
            aliases += [w for w in words[1:] if not any(c in w for c in "*?!")]
    return aliases


T = TypeVar("T")

SESSIONS_PER_CONNECTION = 10
"""Sessions open at once on one connection: OpenSSH's default ``MaxSessions``."""


@dataclass
class _Open:
    connection: asyncssh.SSHClientConnection
    opened_at: datetime
    loop: asyncio.AbstractEventLoop
    channels: list[asyncssh.SSHClientChannel] = field(default_factory=list)
    opening: int = 0
    """Sessions asked for and not open yet: their places are taken."""
    limit: int = SESSIONS_PER_CONNECTION
    """Sessions the server lets this connection hold (lowered when it refuses one)."""

    def sessions(self) -> int:
        """How many of its sessions are open now (a session whose input ended is still open)."""
        return len(self.channels)

    def hold(self, channel: asyncssh.SSHClientChannel) -> None:
        """Count ``channel`` among the open sessions until it is closed."""
        self.channels.append(channel)
        closed = asyncio.ensure_future(channel.wait_closed())
        closed.add_done_callback(lambda _: self.channels.remove(channel))

    def has_room(self, loop: asyncio.AbstractEventLoop) -> bool:
        return (
            self.loop is loop
            and not self.connection.is_closed()
            and self.sessions() + self.opening < self.limit
        )


class Connections:
    """The open connections, one per (host, settings) and ten sessions; see :mod:`asyncmagic.engine.ssh`."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, SSHSettings], list[_Open]] = {}
        self._opening: dict[tuple[str, SSHSettings], asyncio.Future[_Open]] = {}
        self.opened = 0
        """How many connections were opened (a handshake each), for tests and the table."""

    async def session(
        self,
        host: str,
        settings: SSHSettings,
        factory: Callable[[], asyncssh.SSHClientSession],
        command: str,
        **options: Any,
    ) -> tuple[asyncssh.SSHClientChannel, asyncssh.SSHClientSession]:
        """Open a session running ``command`` on ``host``, on a connection with room (opened
        if need be); the caller owns it once it is returned."""

        async def open_on(held: _Open) -> tuple[asyncssh.SSHClientChannel, asyncssh.SSHClientSession]:
            channel, session = await held.connection.create_session(factory, command, **options)
            held.hold(channel)
            return channel, session

        return await self._on_a_connection(host, settings, open_on)

    async def run(self, host: str, settings: SSHSettings, command: str, timeout: float = 10.0) -> int | None:
        """Run a short ``command`` of our own on ``host`` (a session, no output); its exit status."""

        async def run_on(held: _Open) -> int | None:
            result = await asyncio.wait_for(held.connection.run(command, check=False), timeout)
            return result.exit_status

        return await self._on_a_connection(host, settings, run_on)

    async def _on_a_connection(
        self, host: str, settings: SSHSettings, use: Callable[[_Open], Awaitable[T]]
    ) -> T:
        """``use`` a session's place on a connection to ``host``. A connection found closed
        is opened again, and one whose server refuses the session is full (its MaxSessions
        is lower than ours): the next try goes to another; three tries in all."""
        import asyncssh

        for attempt in (1, 2, 3):
            held = await self._place(host, settings)
            try:
                return await use(held)
            except (asyncssh.Error, OSError) as exc:
                if attempt < 3 and held.connection.is_closed():
                    self._forget(host, settings, held)
                    continue
                if attempt < 3 and isinstance(exc, asyncssh.ChannelOpenError):
                    held.limit = max(1, held.sessions())
                    continue
                raise ConnectError(host, f"cannot start a session: {_why(exc, settings)}") from None
            finally:
                held.opening -= 1
        raise AssertionError("unreachable")

    def table(self) -> list[dict[str, Any]]:
        """One row per open connection: host, peer address, user, when opened, open sessions."""
        rows = []
        for (host, _), conns in self._open.items():
            for held in conns:
                if held.connection.is_closed():
                    continue
                peer = held.connection.get_extra_info("peername") or ("?", 0)
                rows.append(
                    {
                        "host": host,
                        "peer": f"{peer[0]}:{peer[1]}",
                        "user": held.connection.get_extra_info("username") or "",
                        "opened_at": held.opened_at,
                        "sessions": held.sessions(),
                    }
                )
        return rows

    def close_now(self) -> None:
        """Close every connection without waiting (the loop may not run again): each
        remote command then ends itself (see :mod:`asyncmagic.engine.remote`)."""
        for conns in self._open.values():
            for held in conns:
                if not held.loop.is_closed():
                    held.connection.close()
        self._open.clear()
        for opening in self._opening.values():
            if not opening.get_loop().is_closed():
                opening.cancel()

    async def aclose(self) -> None:
        """Close every connection and wait until they are closed."""
        held = [h for conns in self._open.values() for h in conns]
        self.close_now()
        for h in held:
            await h.connection.wait_closed()

    async def _place(self, host: str, settings: SSHSettings) -> _Open:
        """A connection to ``host`` with room for one more session, that place taken."""
        key = (host, settings)
        loop = asyncio.get_running_loop()
        while True:
            # drop what closed, or was opened on a loop that is gone (asyncio.run() each time)
            conns = self._open[key] = [
                h for h in self._open.get(key, []) if h.loop is loop and not h.connection.is_closed()
            ]
            for held in conns:
                if held.has_room(loop):
                    held.opening += 1
                    return held
            opening = self._opening.get(key)
            if opening is None or opening.get_loop() is not loop:
                # concurrent calls share one handshake; if it fills at once, another follows
                opening = self._opening[key] = asyncio.ensure_future(self._connect(host, settings))
                opening.add_done_callback(partial(self._opened, key))
            await asyncio.shield(opening)

    def _opened(self, key: tuple[str, SSHSettings], opening: asyncio.Future[_Open]) -> None:
        if self._opening.get(key) is opening:
            del self._opening[key]

    async def _connect(self, host: str, settings: SSHSettings) -> _Open:
        import asyncssh

        try:
            name, port, user = split_host(host)
        except ValueError as exc:
            raise ConnectError(host, str(exc)) from None
        options: dict[str, Any] = {
            "connect_timeout": settings.connect_timeout,
            "login_timeout": settings.connect_timeout,
            "keepalive_interval": settings.keepalive,
            "keepalive_count_max": 3,
        }
        if port is not None:
            options["port"] = port
        if user is not None:
            options["username"] = user
        if settings.config:
            options["config"] = [settings.config]
        if settings.known_hosts == "none":
            options["known_hosts"] = None
        elif settings.known_hosts:
            options["known_hosts"] = settings.known_hosts
        if settings.client_keys:
            options["client_keys"] = list(settings.client_keys)
        try:
            connection = await asyncio.wait_for(
                asyncssh.connect(name, **options), settings.connect_timeout + 1.0
            )
        except (asyncssh.Error, OSError, asyncio.TimeoutError, ValueError) as exc:
            raise ConnectError(host, _why(exc, settings, host)) from None
        self.opened += 1
        held = _Open(connection, now(), asyncio.get_running_loop())
        self._open.setdefault((host, settings), []).append(held)
        return held

    def _forget(self, host: str, settings: SSHSettings, held: _Open) -> None:
        conns = self._open.get((host, settings), [])
        if held in conns:
            conns.remove(held)


def _why(exc: BaseException, settings: SSHSettings, host: str = "") -> str:
    """The cause of a failure to connect, in a few words a person can act on."""
    import asyncssh

    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        where = settings.known_hosts or "~/.ssh/known_hosts"
        return (
            f"host key not trusted (not in {where}, or changed): check it, then add it "
            f"(ssh-keyscan HOST >> {where}, or connect once with ssh); "
            "%config AsyncMagics.known_hosts = 'none' trusts any key"
        )
    if isinstance(exc, asyncssh.PermissionDenied):
        return "authentication failed: no key or password was accepted"
    if isinstance(exc, asyncio.TimeoutError):
        return f"no answer within {settings.connect_timeout:g} s (AsyncMagics.connect_timeout)"
    if isinstance(exc, socket.gaierror):
        return f"unknown host name ({exc.strerror or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is sshd running there, on that port?)"
    if isinstance(exc, asyncssh.ConnectionLost):
        return "the connection was lost"
    if isinstance(exc, asyncssh.DisconnectError):
        return f"disconnected: {exc.reason}"
    if isinstance(exc, asyncssh.ChannelOpenError):
        return f"the host refused a session: {exc.reason}"
    if isinstance(exc, OSError):
        return (exc.strerror or str(exc) or type(exc).__name__).lower()
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


CONNECTIONS = Connections()
"""The connections this interpreter shares: what ``run(cmd, host=...)`` uses by default."""
