from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kernelclient import Kernel


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
