"""Fixtures of the fault tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.faults.load import PrivateRedis


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A redis-server of the test's own (the broker and the state store), to kill at will."""
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()
