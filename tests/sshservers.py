"""Real OpenSSH servers on 127.0.0.1 for the remote tests: several "hosts" on free ports.

Host and client keys are generated into a temporary folder, with a ``known_hosts`` naming
every server's key and an ``ssh_config`` whose aliases (``host0``, ``host1``...) name
them. Nothing listens beyond loopback. Needs Debian's ``openssh-server``
(``scripts/install_sshd.sh`` installs it in ``make test`` when we are root).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def why_not() -> str | None:
    """Why real sshd servers cannot run here, or None when they can."""
    if not os.path.exists(SSHD):
        return f"{SSHD} is missing (Debian's openssh-server; make test installs it when run as root)"
    if shutil.which("ssh-keygen") is None:
        return "ssh-keygen is missing"
    if os.geteuid() != 0:
        return "sshd must run as root to let a client log in as this user"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
        check=True,
        stdout=subprocess.DEVNULL,
    )


@dataclass
class Server:
    """One sshd: its alias in ``ssh_config``, port, and process."""

    alias: str
    port: int
    host_key: Path
    config: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.config.with_suffix(".log"), "ab"),
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"sshd for {self.alias} exited with {self.process.returncode}"
                    ) from None
                time.sleep(0.05)
        raise RuntimeError(f"sshd for {self.alias} did not listen on {self.port}")

    def stop(self) -> None:
        """Stop the server as a crashed host would: the listener and each connection's sshd
        die at once (the commands they started are left to end by themselves)."""
        if self.process is not None and self.process.poll() is None:
            for pid in [self.process.pid, *self.sessions()]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.process.wait()

    def sessions(self) -> list[int]:
        """The pids of this server's per-connection children (``sshd: root@notty`` and the like)."""
        if self.process is None:
            return []
        out = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(self.process.pid)], capture_output=True, text=True
        )
        return [int(p) for p in out.stdout.split()]


@dataclass
class SSHServers:
    """``count`` servers; ``ssh_config``, ``known_hosts`` and ``client_key`` name them."""

    count: int
    user: str = ""
    """Who logs in: empty for this user; else that user, created (a plain login) if missing."""
    max_sessions: int = 50
    """Each server's ``MaxSessions``: sessions one connection may hold."""
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="asyncmagic-sshd-")))
    servers: list[Server] = field(default_factory=list)

    def __post_init__(self) -> None:
        os.makedirs("/run/sshd", exist_ok=True)
        self.client_key = self.root / "id_client"
        keygen(self.client_key)
        authorized = self.root / "authorized_keys"
        authorized.write_text((self.root / "id_client.pub").read_text())
        if self.user:  # sshd reads the keys as the user who logs in
            _plain_user(self.user)
            self.root.chmod(0o755)
            authorized.chmod(0o644)
        self.known_hosts = self.root / "known_hosts"
        self.ssh_config = self.root / "ssh_config"
        known, config = [], []
        for i in range(self.count):
            alias, port = f"host{i}", free_port()
            host_key = self.root / f"host_key{i}"
            keygen(host_key)
            known.append(f"[127.0.0.1]:{port} {(self.root / f'host_key{i}.pub').read_text().strip()}")
            config.append(
                f"Host {alias}\n  HostName 127.0.0.1\n  Port {port}\n  User {self.user or _user()}\n"
                f"  IdentityFile {self.client_key}\n"
            )
            server_config = self.root / f"sshd_config{i}"
            server_config.write_text(
                f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
                f"AuthorizedKeysFile {authorized}\nUsePAM no\nStrictModes no\n"
                f"PidFile {self.root}/sshd{i}.pid\nPasswordAuthentication no\n"
                "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
                f"MaxStartups 100:30:200\nMaxSessions {self.max_sessions}\nLogLevel ERROR\n"
                f"SetEnv ASYNCMAGIC_HOST={alias}\n"
            )
            self.servers.append(Server(alias, port, host_key, server_config))
        self.known_hosts.write_text("\n".join(known) + "\n")
        self.ssh_config.write_text("".join(config))
        for server in self.servers:
            server.start()

    @property
    def aliases(self) -> list[str]:
        return [s.alias for s in self.servers]

    def config_lines(self) -> str:
        """The ``%config`` lines that point asyncmagic at these servers."""
        return (
            f"%config AsyncMagics.ssh_config = {str(self.ssh_config)!r}\n"
            f"%config AsyncMagics.known_hosts = {str(self.known_hosts)!r}\n"
        )

    def close(self) -> None:
        for server in self.servers:
            server.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def _plain_user(name: str) -> None:
    """Create ``name`` with a home of its own and Debian's default dotfiles, if missing."""
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        # "*": no password, yet not locked ("!"), which sshd without PAM refuses even for keys
        subprocess.run(
            ["useradd", "--create-home", "--shell", "/bin/bash", "--password", "*", name], check=True
        )
