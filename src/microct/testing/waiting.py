"""Waiting in tests for what another thread (a simulator's server, an IOC, a CA callback) does."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], object], timeout_s: float = 2.0, what: str = "condition",
               poll_s: float = 0.005) -> None:
    """Return once ``predicate()`` is true; AssertionError naming ``what`` if it is not within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout_s} s"
        time.sleep(poll_s)
