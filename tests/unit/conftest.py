"""Unit tests are pure: no network, no Redis, no database. A test that opens an internet
socket fails here and belongs in tests/integration/."""

from collections.abc import Iterator

import pytest
from pytest_socket import disable_socket, enable_socket


@pytest.fixture(autouse=True)
def _no_network() -> Iterator[None]:
    disable_socket(allow_unix_socket=True)  # asyncio's self-pipe is a Unix socket pair
    yield
    enable_socket()
