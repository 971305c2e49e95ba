"""In-process motorised axis (rotary or linear): trapezoidal moves, soft limits, position noise.

Scheduled faults (``microct.simulators.faults``): stage_stall and limit_switch strike a move half-way
through it (or at their ``at_s`` instant if a move is under way then), and request faults. A fault
contract (``microct.testing.contracts``) drives the stage through ``fault_hook()``: strike now, refuse
moves, go silent, read the true position.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from microct.clock import Clock
from microct.devices.axis import Axis, AxisCapabilities, AxisUnit, move_duration_s
from microct.devices.base import DriverContext, Status
from microct.errors import DeviceFaultError, DeviceStateError, DeviceTimeoutError
from microct.simulators.bench import bench_of
from microct.simulators.faults import STAGE_KINDS, Fault, FaultSchedule, InjectsFaults, attach

SILENT_MOVE_TIMEOUT_S = 1.0
"""How long after the stage goes silent (``set_muted``) its running move's Status fails with a time-out:
what a driver polling a silent controller sees once its reply time-out runs out."""


class SimulatedAxisOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    unit: AxisUnit = Field(default="deg", description="'deg' (a rotation stage) or 'mm' (a linear stage): "
                                                    "positions, limits and speeds are in it")
    max_velocity: float = Field(default=90.0, gt=0, description="unit/s")
    acceleration: float = Field(default=360.0, gt=0, description="unit/s²")
    low_limit: float | None = Field(default=None, description="soft limit (unit); unset: unbounded below")
    high_limit: float | None = Field(default=None, description="soft limit (unit); unset: unbounded above")
    initial_position: float = Field(default=0.0, description="where the stage starts (unit); not checked against "
                                                             "the soft limits")
    home_position: float = Field(default=0.0, description="where home() moves the stage, at the set velocity "
                                                          "(unit)")
    position_noise: float = Field(default=0.0, ge=0, description="read-back noise, 1 sigma (unit)")
    referenced: bool = Field(default=True, description="whether the stage starts with a position reference "
                                                       "(false: as a stage just powered up); home() gives it one, "
                                                       "a homing stopped or failed takes it away")

    @model_validator(mode="after")
    def _limits_ordered(self):
        AxisCapabilities(self.unit, self.max_velocity, self.low_limit, self.high_limit)
        return self


def _profile_fraction(elapsed: float, duration: float, velocity: float, acceleration: float,
                      distance: float) -> float:
    """Distance covered after ``elapsed`` s of a move of ``distance`` (≥ 0) lasting ``duration`` s."""
    if elapsed >= duration:
        return distance
    peak = min(velocity, math.sqrt(distance * acceleration))
    ramp = peak / acceleration
    if elapsed < ramp:
        return 0.5 * acceleration * elapsed ** 2
    if elapsed < duration - ramp:
        return 0.5 * acceleration * ramp ** 2 + peak * (elapsed - ramp)
    remaining = duration - elapsed
    return distance - 0.5 * acceleration * remaining ** 2


class SimulatedAxis(InjectsFaults, Axis):
    """A stage axis in software. The position follows the move profile in the clock's time.

    A move is planned as one profile; each plan has a generation number, so that the end of a plan
    that a stall, a limit switch or a stop replaced does not complete the move."""

    backend = "in-process"
    environment = "simulation"
    Options = SimulatedAxisOptions

    def __init__(self, name: str = "axis", options: SimulatedAxisOptions | None = None,
                 clock: Clock | None = None, seed: int | None = None, faults: FaultSchedule | None = None) -> None:
        self.options = options or SimulatedAxisOptions()
        opts = self.options
        super().__init__(name, AxisCapabilities(opts.unit, opts.max_velocity, opts.low_limit, opts.high_limit,
                                                opts.acceleration),
                         clock)
        self._rng = np.random.default_rng(seed)
        self._start = opts.initial_position
        self._target = opts.initial_position
        self._t0 = 0.0
        self._duration = 0.0
        self._move_velocity = opts.max_velocity
        self._status: Status | None = None
        self._plan_number = 0
        self._faults = attach(faults, name)
        self._referenced = opts.referenced
        self.refuse_moves = False
        """True: the controller refuses every movement command (as a parked stage or one with its servo off);
        the wire simulators answer with their protocol's refusal."""

    @classmethod
    def from_config(cls, name: str, options: SimulatedAxisOptions, connection: str | None,
                    context: DriverContext) -> SimulatedAxis:
        bench = bench_of(context)
        return cls(name, options, bench.clock, bench.seed, bench.faults)

    def true_position(self) -> float:
        """Where the stage is now (unit), without read-back noise and without a request."""
        return self._true_position()

    def strike(self, kind: str, duration_s: float | None = None) -> None:
        """A stage fault on the running move, now: "limit_switch" stops it here and fails its Status with
        DeviceFaultError; "stage_stall" holds it here and it never completes (until ``stop()``, another
        move, or ``duration_s``, after which it goes on). Nothing happens when no move runs."""
        if kind not in STAGE_KINDS:
            raise ValueError(f"kind={kind!r}: allowed {sorted(STAGE_KINDS)}")
        if self._moving():
            self._strike(kind, duration_s, self._status, self._plan_number)

    def set_muted(self, muted: bool = True) -> None:
        """The controller goes silent (or answers again): requests get no reply, and a move under way
        fails ``SILENT_MOVE_TIMEOUT_S`` later with DeviceTimeoutError, as a polled driver would see it."""
        self.muted = muted
        status = self._status
        if muted and status is not None and not status.done:
            def silent() -> None:
                if self.muted and not status.done:
                    status.set_done(self._error(DeviceTimeoutError, "no reply while the move ran (the simulated "
                                                                    "stage is silent)"))
            self.clock.call_later(SILENT_MOVE_TIMEOUT_S, silent)

    def fault_hook(self, mute=None) -> SimulatedAxisHook:
        """The hook of the axis fault contract for this stage; ``mute(bool)`` silences the link in front of
        it (a WireServer's ``muted``), default: the stage itself (``set_muted``)."""
        return SimulatedAxisHook(self, mute)

    def _true_position(self) -> float:
        elapsed = self.clock.monotonic() - self._t0
        distance = self._target - self._start
        covered = _profile_fraction(elapsed, self._duration, self._move_velocity, self.options.acceleration,
                                    abs(distance))
        return self._start + math.copysign(covered, distance)

    def _begin(self, target: float, what: str) -> Status:
        if self._status is not None and not self._status.done:
            self._halt()
        status = Status(self.clock, f"axis {self.name!r}: {what}")
        self._status = status
        fault = self._faults.take_now(STAGE_KINDS, what)
        self._plan(target, status)
        if fault is not None:  # it strikes half-way
            plan = self._plan_number
            if self._duration > 0:
                self.clock.call_later(self._duration / 2,
                                      lambda: self._strike(fault.kind, fault.duration_s, status, plan))
            else:
                self._strike(fault.kind, fault.duration_s, status, plan)
        return status

    def _plan(self, target: float, status: Status) -> None:
        """Move from where the axis is to ``target``; ``status`` completes at the end of this plan."""
        self._start = self._true_position()
        self._target = target
        self._t0 = self.clock.monotonic()
        self._move_velocity = self.velocity
        self._duration = move_duration_s(target - self._start, self.velocity, self.options.acceleration)
        self._plan_number += 1
        plan = self._plan_number
        self.clock.call_later(self._duration, lambda: self._finish(status, plan))

    def _finish(self, status: Status, plan: int) -> None:
        if status is self._status and plan == self._plan_number:
            status.set_done()

    def _hold(self) -> float:
        """Stop the profile where the axis is now (the current plan will not complete); the position."""
        here = self._true_position()
        self._start = self._target = here
        self._duration = 0.0
        self._plan_number += 1
        return here

    def _halt(self) -> None:
        here = self._hold()
        if self._status is not None:
            self._status.set_done(self._error(DeviceStateError, f"move stopped at {here:g} {self.unit}"))

    def _strike(self, kind: str, duration_s: float | None, status: Status | None, plan: int) -> None:
        """Stall or limit switch on the move of ``status`` if it is still on plan ``plan``."""
        if status is None or status is not self._status or status.done or plan != self._plan_number:
            return
        target = self._target
        here = self._hold()
        if kind == "limit_switch":
            status.set_done(self._error(DeviceFaultError, f"limit switch hit at {here:g} {self.unit} on the way "
                                                          f"to {target:g} {self.unit} (simulated fault)"))
        elif duration_s is not None:  # a stall: the move resumes once the jam clears
            stalled = self._plan_number
            self.clock.call_later(duration_s, lambda: self._resume(status, target, stalled))

    def _resume(self, status: Status, target: float, plan: int) -> None:
        if status is self._status and not status.done and plan == self._plan_number:
            self._plan(target, status)

    def _moving(self) -> bool:
        return self._status is not None and not self._status.done

    def _strike_now(self, fault: Fault) -> None:
        """An ``at_s`` fault fell due while a move is under way: it strikes now."""
        self._strike(fault.kind, fault.duration_s, self._status, self._plan_number)

    def _do_connect(self) -> None:
        # nothing to open: the stage lives in this process; an at_s fault when idle waits for the next move
        self._faults.start(self.clock, self._strike_now, STAGE_KINDS, when=self._moving)

    def _do_close(self) -> None:
        pass

    def _do_start_move(self, position: float) -> Status:
        self._refuse_if_parked(f"move to {position:g} {self.unit}")
        return self._begin(position, f"move to {position:g} {self.unit}")

    def _do_start_home(self) -> Status:
        """A move to ``home_position``: the stage has no reference while it runs, and one if it ends well."""
        self._refuse_if_parked("home")
        self._referenced = False
        status = self._begin(self.options.home_position, "home")
        status.add_callback(lambda done: setattr(self, "_referenced", done.error is None))
        return status

    def _do_read_referenced(self) -> bool:
        return self._referenced

    def _refuse_if_parked(self, what: str) -> None:
        if self.refuse_moves:
            raise self._error(DeviceStateError, f"{what} refused: the stage is parked (simulated)")

    def _do_stop(self) -> None:
        self._halt()

    def _do_read_position(self) -> float:
        noise = self._rng.normal(0.0, self.options.position_noise) if self.options.position_noise else 0.0
        return self._true_position() + noise

    def _do_set_velocity(self, velocity: float) -> None:
        pass  # the base class holds the set-point; the next move profile uses it


class SimulatedAxisHook:
    """The axis fault contract's hook on a SimulatedAxis (in process, or behind a wire simulator whose
    ``mute`` is given): silence the controller, strike a fault, refuse moves, read the true position."""

    def __init__(self, axis: SimulatedAxis, mute=None) -> None:
        self.axis = axis
        self._mute = mute or axis.set_muted

    def mute(self, muted: bool = True) -> None:
        self._mute(muted)

    def true_position(self) -> float:
        return self.axis.true_position()

    def strike(self, kind: str) -> None:
        self.axis.strike(kind)

    def refuse_moves(self, refuse: bool = True) -> None:
        self.axis.refuse_moves = refuse
