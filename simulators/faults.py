"""Fault injection: the simulators play the fault descriptions of ``microct.faults`` (kinds, devices,
triggers and effects are documented there).

``FaultSchedule`` holds the runtime state (what fired, the shared frame and projection counters, a
``hits`` log with the device-clock time of each hit). Simulators attach to it by device name; the
wire simulators reuse ``DeviceFaults.request()`` to decide when to stay silent, garble or drop.

``fireable_triggers`` / ``require_fireable``: which faults a set of simulators can fire at all (the
devices and kinds it plays; without a detector making frames, frame and projection numbers never
advance), so that ``microct sim serve`` refuses, each named, the faults it would never fire.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, get_args

import numpy as np

from microct.clock import Clock
from microct.errors import CommunicationError, ConfigurationError, DeviceTimeoutError, ProtocolError
from microct.faults import (
    BEAM_KINDS,
    DEVICES_OF,
    DURATION_KINDS,
    FRAME_KINDS,
    REQUEST_KINDS,
    STAGE_KINDS,
    TRIGGERS,
    WRITER_KINDS,
    Fault,
    FaultDevice,
    FaultKind,
    FaultPlan,
)

__all__ = ["BEAM_KINDS", "DEVICES_OF", "DURATION_KINDS", "FRAME_KINDS", "REQUEST_KINDS", "STAGE_KINDS", "TRIGGERS",
           "WRITER_KINDS", "DeviceFaults", "Fault", "FaultDevice", "FaultKind", "FaultPlan", "FaultSchedule", "Hit",
           "InjectsFaults", "REQUEST_ERRORS", "WRITER_ERRNO", "WriterFaults", "attach", "fireable_triggers", "kinds_of",
           "never_fires", "require_fireable", "what_fires"]

REQUEST_ERRORS = {"reply_timeout": (DeviceTimeoutError, "no reply"),
                  "garbled_reply": (ProtocolError, "garbled reply"),
                  "disconnect": (CommunicationError, "connection lost")}
"""What an in-process device raises for a request fault: (error class, what happened)."""

WRITER_ERRNO = {"disk_full": errno.ENOSPC, "write_error": errno.EIO}


@dataclass(frozen=True)
class Hit:
    """One opportunity a fault hit: when (s, the device's clock), which fault, and what was hit."""

    time_s: float | None
    """None for the writer, which has no device clock."""
    index: int
    """The fault's place in the schedule."""
    fault: Fault
    what: str


@dataclass(frozen=True)
class Opportunity:
    """A moment a fault may hit: ``elapsed_s`` since the device connected (None: unknown), the frame
    number and projection number it concerns (None: not a frame / not a projection), and ``timed``
    for the instant an ``at_s`` timer fires (only that fault is offered it)."""

    elapsed_s: float | None
    frame: int | None
    projection: int | None
    timed: bool = False


class _Armed:
    """A fault's runtime state: its generator, how often it fired, the hits it still owes."""

    def __init__(self, index: int, fault: Fault, rng: np.random.Generator | None) -> None:
        self.index, self.fault, self.rng = index, fault, rng
        self.firings = 0
        self.hits_left = 0
        self.down_until_s: float | None = None

    @property
    def pending(self) -> bool:
        """Could still hit: it owes hits, or may (still) fire."""
        repeat = self.fault.repeat
        return bool(self.hits_left) or self.down_until_s is not None or repeat == 0 or self.firings < repeat

    def _triggered(self, opp: Opportunity) -> bool:
        f = self.fault
        if f.probability is not None:
            return not opp.timed and bool(self.rng.random() < f.probability)
        if f.at_s is not None:
            return opp.elapsed_s is not None and opp.elapsed_s >= f.at_s
        if f.at_frame is not None:
            return opp.frame is not None and opp.frame >= f.at_frame
        return opp.projection is not None and opp.projection >= f.at_projection

    def hits(self, opp: Opportunity, now_s: float | None) -> bool:
        if opp.timed and self.firings:  # the at_s instant only fires it; owed hits go to real opportunities
            return False
        if self.down_until_s is not None:
            if now_s < self.down_until_s:
                return True
            self.down_until_s = None
        if self.hits_left:
            self.hits_left -= 1
            return True
        if not self.pending or not self._triggered(opp):
            return False
        self.firings += 1
        if self.fault.kind == "disconnect" and self.fault.duration_s is not None:
            self.down_until_s = now_s + self.fault.duration_s
        else:
            self.hits_left = self.fault.count - 1
        return True


class FaultSchedule:
    """The faults of one run and their state, shared by the simulators of one set of instruments.

    ``faults`` are ``Fault`` models or mappings (validated here: pydantic ValidationError naming the
    field); ``seed`` seeds random faults without a seed of their own. ``hits`` logs every hit.
    """

    def __init__(self, faults: Iterable[Fault | Mapping[str, Any]] = (), seed: int | None = None) -> None:
        self.faults = tuple(f if isinstance(f, Fault) else Fault.model_validate(f) for f in faults)
        self._armed = [_Armed(i, f, None if f.probability is None else
                              np.random.default_rng(f.seed if f.seed is not None else
                                                    None if seed is None else [seed, i]))
                       for i, f in enumerate(self.faults)]
        self._devices: dict[str, DeviceFaults] = {}
        self._lock = threading.RLock()
        self._quiet = threading.local()
        self.hits: list[Hit] = []
        self.frames_made = 0
        """Frames the detector simulator has made."""
        self.projections_made = 0
        """Projections the detector simulator has acquired (see the module docstring)."""

    @property
    def uses_projections(self) -> bool:
        """True if some fault triggers on a projection number (then the detector counts them)."""
        return any(f.at_projection is not None for f in self.faults)

    def attach(self, device: str, apply: Callable[[Fault], None] | None = None) -> DeviceFaults:
        """The faults of ``device``, for the simulator that plays it; ``apply`` carries out a fault that
        another simulator offers (the detector offers the source's exposures)."""
        view = self.device(device)
        view.attached, view.apply = True, apply
        return view

    def device(self, device: str) -> DeviceFaults:
        """The faults of ``device`` (attached by a simulator or not)."""
        with self._lock:
            if device not in self._devices:
                self._devices[device] = DeviceFaults(self, device,
                                                     [a for a in self._armed if a.fault.device == device])
            return self._devices[device]

    def attached(self) -> list[str]:
        """The devices a simulator has attached to (plays), sorted."""
        with self._lock:
            return sorted(device for device, view in self._devices.items() if view.attached)

    def unattached(self) -> list[tuple[int, Fault]]:
        """Faults of instruments no simulator attached to (writer faults excepted: see ``WriterFaults``)."""
        played = self.attached()
        return [(i, f) for i, f in enumerate(self.faults) if f.device != "writer" and f.device not in played]

    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        """Calls made inside (in this thread) are physics, not requests: no request fault hits them."""
        depth = getattr(self._quiet, "depth", 0)
        self._quiet.depth = depth + 1
        try:
            yield
        finally:
            self._quiet.depth = depth

    @property
    def is_quiet(self) -> bool:
        return getattr(self._quiet, "depth", 0) > 0

    def beam_cut_at(self, after_s: float, until_s: float) -> float | None:
        """Time (s, device clock) of the first source fault that cut the beam in (after_s, until_s]."""
        times = [h.time_s for h in self.hits if h.fault.device == "source" and h.fault.kind in BEAM_KINDS
                 and h.time_s is not None and after_s < h.time_s <= until_s]
        return min(times, default=None)

    def _take(self, armed: Iterable[_Armed], opp: Opportunity, now_s: float | None, what: str) -> Fault | None:
        """The first of ``armed`` (in schedule order) that hits ``opp``, logged; those after it are not
        offered this opportunity (they stay pending for the next)."""
        with self._lock:
            hit = next((a for a in armed if a.hits(opp, now_s)), None)
            if hit is None:
                return None
            self.hits.append(Hit(now_s, hit.index, hit.fault, what))
            return hit.fault


class DeviceFaults:
    """The faults of one device. ``start`` at connect; then offer it opportunities with ``take``,
    ``take_now``, ``offer`` or ``request``."""

    def __init__(self, schedule: FaultSchedule, device: str, armed: list[_Armed]) -> None:
        self.schedule, self.device, self._armed = schedule, device, armed
        self._has_request_faults = any(a.fault.kind in REQUEST_KINDS for a in armed)
        self.attached = False
        self.apply: Callable[[Fault], None] | None = None
        self._clock: Clock | None = None
        self._t0: float | None = None

    def pending(self, kinds: Iterable[str]) -> bool:
        """True if a fault of one of ``kinds`` may still hit this device."""
        kinds = frozenset(kinds)
        return any(a.pending and a.fault.kind in kinds for a in self._armed)

    def start(self, clock: Clock, on_time: Callable[[Fault], None] | None = None,
              timed_kinds: Iterable[str] = (), when: Callable[[], bool] | None = None) -> None:
        """At the first connect: start the device's ``at_s`` clock. When an ``at_s`` fault of
        ``timed_kinds`` falls due (from the clock: in simulated time inside a sleep, else in a timer
        thread), it hits at that instant if ``when()`` (default: always) and is passed to ``on_time``,
        which carries it out; otherwise it stays pending for the device's next opportunity."""
        if self._t0 is not None:
            return
        self._clock, self._t0 = clock, clock.monotonic()
        timed_kinds = frozenset(timed_kinds)
        for armed in self._armed:
            if armed.fault.at_s is not None and armed.fault.kind in timed_kinds and on_time is not None:
                clock.call_later(armed.fault.at_s, lambda a=armed: self._timer(a, on_time, when))

    def _timer(self, armed: _Armed, on_time: Callable[[Fault], None], when: Callable[[], bool] | None) -> None:
        if when is not None and not when():
            return
        fault = self.schedule._take([armed], self._opportunity(None, None, timed=True), self._now(),
                                    f"at {armed.fault.at_s:g} s")
        if fault is not None:
            on_time(fault)

    def _now(self) -> float | None:
        return self._clock.monotonic() if self._clock is not None else None

    def _opportunity(self, frame: int | None, projection: int | None, timed: bool = False) -> Opportunity:
        elapsed = None if self._t0 is None else self._now() - self._t0
        return Opportunity(elapsed, frame, projection, timed)

    def take(self, kinds: Iterable[str], what: str, frame: int | None, projection: int | None) -> Fault | None:
        """Offer an opportunity concerning ``frame`` / ``projection`` (None: none) to the faults of
        ``kinds``; the fault that hits it, or None."""
        kinds = frozenset(kinds)
        armed = [a for a in self._armed if a.fault.kind in kinds]
        if not armed:
            return None
        return self.schedule._take(armed, self._opportunity(frame, projection), self._now(), what)

    def take_now(self, kinds: Iterable[str], what: str) -> Fault | None:
        """``take`` for an opportunity that is not a frame (a move, a request): it compares the frames
        and projections made so far."""
        return self.take(kinds, what, self.schedule.frames_made, self.schedule.projections_made)

    def offer(self, kinds: Iterable[str], what: str, frame: int | None, projection: int | None) -> Fault | None:
        """``take``, and carry out the fault that hits through the attached device's ``apply``."""
        fault = self.take(kinds, what, frame, projection)
        if fault is not None and self.apply is not None:
            self.apply(fault)
        return fault

    def request(self) -> Fault | None:
        """A request to the device: the request fault that hits it (not inside ``quiet``), or None."""
        if not self._has_request_faults or self.schedule.is_quiet:  # the common case first: no work
            return None
        return self.take_now(REQUEST_KINDS, "request")


class InjectsFaults:
    """Mixin for in-process simulators (before the device base class): every request meets the
    device's request faults. The simulator sets ``_faults`` (``FaultSchedule.attach``). ``muted``
    (a fault contract's hook): every request gets no reply, as a device gone silent."""

    _faults: DeviceFaults
    muted: bool = False

    def _require_connected(self) -> None:
        super()._require_connected()  # type: ignore[misc]
        if self.muted:
            raise self._error(DeviceTimeoutError, "no reply (the simulated device is silent)")  # type: ignore[attr-defined]
        fault = self._faults.request()
        if fault is not None:
            cls, what = REQUEST_ERRORS[fault.kind]
            raise self._error(cls, f"{what} (simulated fault: {fault.kind})")


def attach(schedule: FaultSchedule | None, device: str, apply: Callable[[Fault], None] | None = None
           ) -> DeviceFaults:
    """``schedule.attach(device, apply)``, or the view of an empty schedule if ``schedule`` is None."""
    return (schedule if schedule is not None else FaultSchedule()).attach(device, apply)


# -- which faults a set of simulators can fire ------------------------------------------------------------------
def kinds_of(device: str) -> frozenset[str]:
    """The kinds of fault that can hit ``device`` (``DEVICES_OF`` read the other way)."""
    return frozenset(kind for kind, devices in DEVICES_OF.items() if device in devices)


def fireable_triggers(kind: str, device: str, plays: Mapping[str, Iterable[str]], frames: bool) -> tuple[str, ...]:
    """The triggers with which a fault of ``kind`` on ``device`` fires on a set of simulators; empty: never.
    ``plays`` maps each device they simulate to the kinds of fault it plays; ``frames``: a detector among
    them makes frames. Its frames and projections advance the at_frame and at_projection counters, and it
    offers the tube its exposures; without one those numbers stay 0, and a tube meets arcs and interlock
    openings only at their at_s time (its own timer), never at random."""
    if kind not in plays.get(device, ()):
        return ()
    if frames:
        return TRIGGERS
    return ("at_s",) if kind in BEAM_KINDS else ("at_s", "probability")


def _trigger(fault: Fault) -> str:
    name = next(name for name in TRIGGERS if getattr(fault, name) is not None)
    return f"{name}={getattr(fault, name)}"


def never_fires(faults: Iterable[Fault], plays: Mapping[str, Iterable[str]], frames: bool) -> list[str]:
    """One line for each of ``faults`` that would never fire (``fireable_triggers``): its place in the list,
    kind, device and trigger, and why."""
    lines = []
    for index, fault in enumerate(faults):
        trigger = _trigger(fault)
        if trigger.split("=")[0] in fireable_triggers(fault.kind, fault.device, plays, frames):
            continue
        if fault.device not in plays:
            why = f"this simulator does not simulate {fault.device!r}"
        elif fault.kind not in plays[fault.device]:
            why = f"this simulator does not play {fault.kind} on {fault.device!r}"
        elif fault.kind in BEAM_KINDS and not trigger.startswith(("at_frame", "at_projection")):
            why = "no detector here offers the tube its exposures: arcs and interlock openings come at at_s only"
        else:
            why = "no detector here makes frames: frame and projection numbers never advance"
        lines.append(f"faults.{index} ({fault.kind} on {fault.device!r}, {trigger}): {why}")
    return lines


def what_fires(plays: Mapping[str, Iterable[str]], frames: bool) -> list[str]:
    """What a set of simulators fires (``fireable_triggers``), a line per device: ``'source': arc,
    interlock_open with at_s; reply_timeout, garbled_reply, disconnect with at_s or probability``."""
    order = list(get_args(FaultKind))
    lines = []
    for device in sorted(plays):
        groups: dict[tuple[str, ...], list[str]] = {}
        for kind in sorted(plays[device], key=order.index):
            groups.setdefault(fireable_triggers(kind, device, plays, frames), []).append(kind)
        lines.append(f"{device!r}: " + "; ".join(f"{', '.join(kinds)} with {_either(triggers)}"
                                                 for triggers, kinds in groups.items()))
    return lines


def _either(words: tuple[str, ...]) -> str:
    return " or ".join(words) if len(words) < 3 else f"{', '.join(words[:-1])} or {words[-1]}"


def require_fireable(faults: Iterable[Fault], plays: Mapping[str, Iterable[str]], frames: bool,
                     origin: str = "--faults") -> None:
    """ConfigurationError naming every fault of ``faults`` (from ``origin``) that a set of simulators (``plays``,
    ``frames``: see ``fireable_triggers``) would never fire, and what they do fire."""
    refused = never_fires(faults, plays, frames)
    if refused:
        fires = what_fires(plays, frames) or ["nothing: it simulates no device of the fault schedule"]
        raise ConfigurationError(f"{origin}: {'this fault' if len(refused) == 1 else 'these faults'} would never "
                                 f"fire here:\n" + "\n".join(f"  {line}" for line in refused) +
                                 "\nthis simulator fires:\n" + "\n".join(f"  {line}" for line in fires))


# -- the writer -----------------------------------------------------------------------------------------------
class WriterFaults:
    """The schedule's writer faults, as the NXtomo writer's ``pixel_check``: called with each frame's index
    and image key before its pixels are written, it raises OSError (ENOSPC for disk_full, EIO for
    write_error) when a fault fires, which the writer reports as MicroCTError naming the frame and file,
    as on a full or failing disk. Frames a detector writes to its own files are not affected."""

    def __init__(self, schedule: FaultSchedule, file_name: str) -> None:
        self._view = schedule.attach("writer")
        self._file_name = file_name
        self._projections = 0

    def __call__(self, index: int, image_key: int) -> None:
        projection = self._projections if image_key == 0 else None
        fault = self._view.take(WRITER_KINDS, f"frame {index} of {self._file_name}", index, projection)
        if fault is not None:
            code = WRITER_ERRNO[fault.kind]
            raise OSError(code, f"{os.strerror(code)} (simulated fault: {fault.kind})")
        if projection is not None:
            self._projections += 1
