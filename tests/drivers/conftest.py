"""Shared by the wire-level driver tests."""

import pytest

from microct.testing.rigs import fast_socket_close


@pytest.fixture(autouse=True)
def no_pause_after_closing_a_socket(monkeypatch):
    """pyserial sleeps 0.3 s after closing a socket:// port; the local WireServer accepts at once."""
    fast_socket_close(monkeypatch)
