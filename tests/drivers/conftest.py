"""Shared by the wire-level driver tests."""

from types import SimpleNamespace

import pytest
from serial.urlhandler import protocol_socket


@pytest.fixture(autouse=True)
def no_pause_after_closing_a_socket(monkeypatch):
    """pyserial sleeps 0.3 s after closing a socket:// port, "in case of quick reconnects"; the local
    WireServer accepts at once, so these tests skip that pause (its only use of ``time``)."""
    monkeypatch.setattr(protocol_socket, "time", SimpleNamespace(sleep=lambda seconds: None))
