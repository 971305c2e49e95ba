"""The timer that keeps a device's communication watchdog fed (used by ``XRaySource``).

A generator with a communication watchdog switches its high voltage off when the host has sent nothing
for the watchdog time, so that a crashed or killed control computer cannot leave the beam on. The host
must then speak often enough while the beam is on, also during an exposure, a move or a pause, when the
sequencer itself sends the source nothing. ``Feeder`` calls a tick function on the device clock
(``Clock.call_later``: a daemon timer thread in real time, inside ``sleep`` on a ``SimulatedClock``)
until ``stop()``; the tick returns the delay to the next call.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from functools import partial

from microct.clock import Clock


class Feeder:
    """Calls ``tick()`` after ``start(delay_s)``'s delay, then after each delay ``tick`` returns (s), until
    ``stop()`` or until ``tick`` returns None.

    ``tick`` must be a bound method: the feeder holds it weakly, so that a device dropped without
    ``close()`` ends its feeder. ``tick`` must not raise (it runs in a timer thread; log there). ``stop()``
    returns once a tick in progress has ended, and no tick of an earlier start runs after it.
    """

    def __init__(self, clock: Clock, tick: Callable[[], float | None]) -> None:
        self._clock = clock
        self._tick = weakref.WeakMethod(tick)
        self._lock = threading.Lock()  # held by a tick for its whole run
        self._run = 0  # the running feeder's number; a tick of an older one ends it
        self._running = False

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()`` (or a tick returning None)."""
        return self._running

    def start(self, delay_s: float) -> None:
        """Start (again): the first tick after ``delay_s`` seconds of the device clock."""
        with self._lock:
            self._run += 1
            self._running = True
            run = self._run
        self._clock.call_later(delay_s, partial(self._fire, run))

    def stop(self) -> None:
        """Stop; returns once a tick in progress has ended. Safe to call when stopped."""
        with self._lock:
            self._run += 1
            self._running = False

    def _fire(self, run: int) -> None:
        tick = self._tick()
        with self._lock:
            if tick is None or run != self._run:
                return
            delay_s = tick()
            if delay_s is None:
                self._run += 1
                self._running = False
                return
        self._clock.call_later(delay_s, partial(self._fire, run))
