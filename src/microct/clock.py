"""Time sources: real time, or simulated time that advances instantly.

Everything in microct that waits does so through a Clock, so that a scan of
in-process simulators can run a 30-minute acquisition in a fraction of a
second: ``SimulatedClock.sleep`` only moves the clock forward.

A SimulatedClock is single-threaded by design: timers run inside ``sleep`` and
``wait_for`` of the thread that advances time.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable

from microct.errors import DeviceTimeoutError


class Clock:
    """Real time. ``time()`` is wall-clock seconds since the epoch; ``monotonic()`` for durations."""

    simulated = False

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> None:
        """Run ``callback`` after ``delay_s`` seconds (in a timer thread)."""
        timer = threading.Timer(max(delay_s, 0.0), callback)
        timer.daemon = True
        timer.start()

    def wait_for(self, event: threading.Event, timeout_s: float | None, what: str) -> None:
        """Block until ``event`` is set; DeviceTimeoutError naming ``what`` after ``timeout_s``."""
        if not event.wait(timeout_s):
            raise DeviceTimeoutError(f"{what}: not finished within {timeout_s} s")


class SimulatedClock(Clock):
    """Simulated time: sleeping advances the clock at once and fires due timers in order."""

    simulated = True

    def __init__(self, start_time: float | None = None) -> None:
        self._epoch = time.time() if start_time is None else start_time
        self._now = 0.0
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()

    def time(self) -> float:
        return self._epoch + self._now

    def monotonic(self) -> float:
        return self._now

    def sleep(self, seconds: float) -> None:
        self._advance_to(self._now + max(seconds, 0.0))

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (self._now + max(delay_s, 0.0), next(self._order), callback))

    def wait_for(self, event: threading.Event, timeout_s: float | None, what: str) -> None:
        deadline = float("inf") if timeout_s is None else self._now + timeout_s
        while not event.is_set():
            if not self._timers or self._timers[0][0] > deadline:
                if timeout_s is None:
                    raise DeviceTimeoutError(f"{what}: will never finish (nothing scheduled in simulated time)")
                self._advance_to(deadline)
                raise DeviceTimeoutError(f"{what}: not finished within {timeout_s} s")
            self._advance_to(self._timers[0][0])

    def _advance_to(self, t: float) -> None:
        while self._timers and self._timers[0][0] <= t:
            due, _, callback = heapq.heappop(self._timers)
            self._now = max(self._now, due)
            callback()
        self._now = max(self._now, t)
