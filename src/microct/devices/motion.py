"""The move engine: one place where an axis driver's moves start, supersede, stop, complete and fail.

A driver hands the engine what differs per device: how to send the motion command (``send``), and
either how to ask whether the move has ended (``poll``, for controllers that are polled, as Zaber's
status or PI's ``ONT?``) or nothing (the driver calls ``Move.finish`` from a completion callback, as
an EPICS put-callback). The engine gives every move the same behaviour:

- ``start`` returns the move's ``Status`` once the device accepted the command; if ``send`` raises,
  nothing changes (a move already running goes on) and the error propagates;
- a move accepted while another runs supersedes it: the old Status fails with DeviceStateError
  ("move to 10 deg did not complete: superseded by move to 20 deg");
- ``stop()`` and ``close()`` end the running move the same way (its Status fails at once);
- an error while polling fails the Status with the same error class, its message prefixed with the
  move ("move to 10 deg failed: ..."); a poll that returns True completes it;
- polls run on the device's clock (``Clock.call_later``): the first after ``first_poll_s`` (at least
  ``poll_interval_s``), then every ``poll_interval_s``; on a ``SimulatedClock`` they run inside the
  waiting thread's ``Status.wait``, so a polled driver also runs in simulated time;
- ``on_start`` runs once the device has accepted the move, ``on_finish`` when it completes
  successfully and is still the current move (both under the engine's lock);
- ``resting_at`` is where the axis rests when that is known: the target of the last move that
  completed, or a position the driver read while no move ran (``note_rest``); None while a move runs
  and after a stop. A driver may use it to wait the shortest move time before its first poll.

Thread-safety: ``start``, ``stop`` and ``close`` may be called from any thread; ``poll`` runs in a
timer thread (real clock), one poll at a time per move.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from microct.devices.base import Device, Status
from microct.errors import DeviceStateError, MicroCTError, reworded

log = logging.getLogger("microct.devices.motion")


class Move:
    """One move (or homing) run by a MoveEngine. ``status`` completes when it ends; ``stopped`` is True
    if ``stop()`` ended it; ``target`` is where it goes (None for homing)."""

    def __init__(self, engine: MoveEngine, what: str, target: float | None) -> None:
        self.engine = engine
        self.what = what
        self.target = target
        self.status = Status(engine.device.clock, f"{engine.device.who}: {what}")
        self.stopped = False
        self.ended = threading.Event()
        """Set once the move is no longer followed: finished, failed, superseded, stopped or closed."""

    @property
    def current(self) -> bool:
        """True while this is the engine's running move."""
        return self.engine.current is self

    def finish(self, error: BaseException | None = None) -> bool:
        """End the move: completed (``error`` None) or failed. Only the first call counts (True)."""
        return self.engine._end(self, error)


class MoveEngine:
    """Runs the moves of one axis (see the module docstring). ``poll_interval_s``: time between polls."""

    def __init__(self, device: Device, poll_interval_s: float = 0.02) -> None:
        if not poll_interval_s > 0:
            raise ValueError(f"poll_interval_s={poll_interval_s}: must be > 0")
        self.device = device
        self.poll_interval_s = poll_interval_s
        self._lock = threading.RLock()
        self._current: Move | None = None
        self._on_finish: dict[Move, Callable[[Move], None]] = {}
        self._started = 0
        self._resting_at: float | None = None

    @property
    def current(self) -> Move | None:
        """The running move, or None."""
        with self._lock:
            move = self._current
        return move if move is not None and not move.status.done else None

    @property
    def moving(self) -> bool:
        return self.current is not None

    @property
    def started(self) -> int:
        """How many moves the device has accepted so far (to tell whether one started meanwhile)."""
        return self._started

    @property
    def resting_at(self) -> float | None:
        """Where the axis rests (unit), if known; None while a move runs, after a stop, or if never known."""
        with self._lock:
            return None if self.moving else self._resting_at

    def note_rest(self, position: float, started_before: int) -> None:
        """Record ``position``, read by the driver, as where the axis rests, unless a move started since the
        read began (``started_before``, the ``started`` count then) or one runs now."""
        with self._lock:
            if self._started == started_before and not self.moving:
                self._resting_at = position

    def start(self, what: str, send: Callable[[Move], None], *, target: float | None = None,
              poll: Callable[[Move], bool] | None = None, first_poll_s: float = 0.0,
              on_start: Callable[[Move], None] | None = None,
              on_finish: Callable[[Move], None] | None = None, poll_interval_s: float | None = None) -> Status:
        """Start a move named ``what`` (e.g. "move to 10 deg") by calling ``send(move)``; return its Status.

        ``poll(move)`` → True once the move has ended (raises on a failed exchange or a device fault);
        without ``poll`` the driver ends the move itself with ``move.finish(error)``. ``poll_interval_s``
        replaces the engine's for this move (a driver whose options set it).
        """
        move = Move(self, what, target)
        if on_finish is not None:
            self._on_finish[move] = on_finish
        try:
            send(move)  # raises: the device did not accept it; a running move goes on
        except BaseException:
            self._on_finish.pop(move, None)
            move.ended.set()
            raise
        interval = self.poll_interval_s if poll_interval_s is None else poll_interval_s
        with self._lock:
            previous, self._current = self._current, move
            self._started += 1
            self._resting_at = None
            if on_start is not None:
                on_start(move)
        if previous is not None and previous is not move:
            self._cancel(previous, f"superseded by {what}")
        if poll is not None and not move.status.done:
            self.device.clock.call_later(max(first_poll_s, interval), lambda: self._poll(move, poll, interval))
        return move.status

    def stop(self, why: str = "stop() was called") -> Move | None:
        """End the running move (its Status fails with DeviceStateError naming ``why``); the move, or None.
        The driver sends its device's stop command itself."""
        with self._lock:
            move, self._current = self._current, None
            self._resting_at = None
        if move is None or move.status.done:
            return None
        move.stopped = True
        self._cancel(move, why)
        return move

    def close(self, why: str = "the connection was closed") -> None:
        """End the running move, as ``stop`` does, when the link closes."""
        self.stop(why)

    # -- internals ---------------------------------------------------------------------------------------
    def _cancel(self, move: Move, why: str) -> None:
        self._end(move, self.device._error(DeviceStateError, f"{move.what} did not complete: {why}"),
                  run_hook=False)

    def _end(self, move: Move, error: BaseException | None, run_hook: bool = True) -> bool:
        with self._lock:
            hook = self._on_finish.pop(move, None)
            if move.status.done:
                return False
            if error is None and run_hook and hook is not None and self._current is move:
                try:
                    hook(move)
                except Exception as failure:  # the Status must end whatever the hook does
                    error = failure
            if self._current is move:
                self._current = None
                if error is None and move.target is not None:
                    self._resting_at = move.target
        move.ended.set()
        return move.status.set_done(error)

    def _poll(self, move: Move, poll: Callable[[Move], bool], interval: float) -> None:
        if move.ended.is_set() or move.status.done:
            return
        try:
            done = poll(move)
        except MicroCTError as error:
            self._end(move, reworded(error, f"{move.what} failed: {error}"))
            return
        except Exception as error:  # whatever happens, the Status must end
            log.exception("%s: polling %s failed", self.device.who, move.what)
            self._end(move, error)
            return
        if move.ended.is_set() or move.status.done:  # superseded or stopped while the poll ran
            return
        if done:
            self._end(move, None)
            return
        self.device.clock.call_later(interval, lambda: self._poll(move, poll, interval))
