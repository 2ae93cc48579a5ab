from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kernelclient import Kernel
from sshservers import SSHServers, why_not


@pytest.fixture(scope="session")
def kernel() -> Iterator[Kernel]:
    """One real kernel with asyncmagic loaded, shared by the tests that only read from it."""
    k = Kernel()
    k.run("%load_ext asyncmagic")
    yield k
    k.shutdown()


@pytest.fixture
def marker() -> str:
    """A unique number of seconds for ``sleep``, so a test can find exactly its processes."""
    return f"1000.{uuid.uuid4().int % 10**12:012d}"


@pytest.fixture(scope="session")
def ssh_servers() -> Iterator[SSHServers]:
    """Three real sshd servers on 127.0.0.1 (``host0``..``host2`` in their ssh_config)."""
    reason = why_not()
    if reason is not None:
        pytest.skip(f"no sshd: {reason}")
    servers = SSHServers(3)
    yield servers
    servers.close()
