"""In-process motorised axis (rotary or linear): trapezoidal moves, soft limits, position noise."""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from microct.clock import Clock
from microct.devices.axis import Axis, AxisCapabilities, AxisUnit, move_duration_s
from microct.devices.base import Status
from microct.errors import DeviceStateError
from microct.registry import DriverContext


class SimulatedAxisOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    unit: AxisUnit = "deg"
    max_velocity: float = Field(default=90.0, gt=0, description="unit/s")
    acceleration: float = Field(default=360.0, gt=0, description="unit/s²")
    low_limit: float | None = None
    high_limit: float | None = None
    initial_position: float = 0.0
    home_position: float = 0.0
    position_noise: float = Field(default=0.0, ge=0, description="read-back noise, 1 sigma (unit)")

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


class SimulatedAxis(Axis):
    """A stage axis in software. The position follows the move profile in the clock's time."""

    backend = "in-process"
    Options = SimulatedAxisOptions

    def __init__(self, name: str = "axis", options: SimulatedAxisOptions | None = None,
                 clock: Clock | None = None, seed: int | None = None) -> None:
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

    @classmethod
    def from_config(cls, name: str, options: SimulatedAxisOptions, connection: str | None,
                    context: DriverContext) -> SimulatedAxis:
        return cls(name, options, context.clock, context.seed)

    def _true_position(self) -> float:
        elapsed = self.clock.monotonic() - self._t0
        distance = self._target - self._start
        covered = _profile_fraction(elapsed, self._duration, self._move_velocity, self.options.acceleration,
                                    abs(distance))
        return self._start + math.copysign(covered, distance)

    def _begin(self, target: float, what: str) -> Status:
        if self._status is not None and not self._status.done:
            self._halt()
        self._start = self._true_position()
        self._target = target
        self._t0 = self.clock.monotonic()
        self._move_velocity = self.velocity
        self._duration = move_duration_s(target - self._start, self.velocity, self.options.acceleration)
        status = Status(self.clock, f"axis {self.name!r}: {what}")
        self._status = status
        self.clock.call_later(self._duration, lambda: self._finish(status))
        return status

    def _finish(self, status: Status) -> None:
        if status is self._status:
            status.set_done()

    def _halt(self) -> None:
        here = self._true_position()
        self._start = self._target = here
        self._duration = 0.0
        if self._status is not None:
            self._status.set_done(self._error(DeviceStateError, f"move stopped at {here:g} {self.unit}"))

    def _do_connect(self) -> None:
        pass  # nothing to open: the stage lives in this process

    def _do_close(self) -> None:
        pass

    def _do_start_move(self, position: float) -> Status:
        return self._begin(position, f"move to {position:g} {self.unit}")

    def _do_start_home(self) -> Status:
        return self._begin(self.options.home_position, "home")

    def _do_stop(self) -> None:
        self._halt()

    def _do_read_position(self) -> float:
        noise = self._rng.normal(0.0, self.options.position_noise) if self.options.position_noise else 0.0
        return self._true_position() + noise

    def _do_set_velocity(self, velocity: float) -> None:
        pass  # the base class holds the set-point; the next move profile uses it
