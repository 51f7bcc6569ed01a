"""Fixtures shared by the pytest-benchmark suites in bench/."""

from __future__ import annotations

import socket
from typing import Iterator

import pytest


@pytest.fixture(scope="module")
def idle_socket() -> Iterator[socket.socket]:
    """An unconnected TCP socket: picows reads its descriptor and options from
    its transport's socket, so its stand-in transports hand out this one."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    yield s
    s.close()
