"""The positioning-axis interface, one shape for rotary (degrees) and linear (millimetres) axes."""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import Any, Literal

from microct.clock import Clock
from microct.devices.base import Device, Status
from microct.errors import ConfigurationError, LimitError

AxisUnit = Literal["deg", "mm"]


def move_duration_s(distance: float, velocity: float, acceleration: float | None) -> float:
    """Time (s) of a move from rest to rest: trapezoidal, or triangular if too short to reach
    ``velocity``; ``acceleration`` None means instant acceleration."""
    distance = abs(distance)
    if acceleration is None:
        return distance / velocity
    if distance >= velocity ** 2 / acceleration:
        return distance / velocity + velocity / acceleration
    return 2.0 * math.sqrt(distance / acceleration)


@dataclass(frozen=True)
class AxisCapabilities:
    """Unit, top speed (unit/s), soft limits (None: unbounded, as a continuous rotary stage) and
    acceleration (unit/s², None if the driver does not know it; used to estimate move times)."""

    unit: AxisUnit
    max_velocity: float
    low_limit: float | None = None
    high_limit: float | None = None
    acceleration: float | None = None

    def __post_init__(self) -> None:
        if self.unit not in ("deg", "mm"):
            raise ConfigurationError(f"unit={self.unit!r}: allowed 'deg' or 'mm'")
        if not self.max_velocity > 0:
            raise ConfigurationError(f"max_velocity={self.max_velocity}: must be > 0")
        if None not in (self.low_limit, self.high_limit) and self.low_limit >= self.high_limit:
            raise ConfigurationError(f"soft limits ({self.low_limit}, {self.high_limit}): low must be < high")

    def check_position(self, position: float, who: str = "axis") -> None:
        """Raise LimitError unless ``position`` lies within the soft limits."""
        if not math.isfinite(position):
            raise LimitError(f"{who}: position={position} is not a finite number")
        low = -math.inf if self.low_limit is None else self.low_limit
        high = math.inf if self.high_limit is None else self.high_limit
        if not low <= position <= high:
            raise LimitError(f"{who}: position={position:g} {self.unit} is outside the soft limits "
                             f"{low:g} to {high:g} {self.unit}")


class Axis(Device):
    """A motorised axis. Positions and velocities are in ``unit`` ("deg" or "mm", per second).

    Every move is checked against the soft limits before the driver is asked.
    ``start_move_to`` returns a Status at once, so a caller can overlap a move
    with other work; ``move_to`` blocks until the move ends.
    """

    kind = "axis"

    def __init__(self, name: str, capabilities: AxisCapabilities, clock: Clock | None = None) -> None:
        super().__init__(name, clock)
        self.capabilities = capabilities
        self._velocity = capabilities.max_velocity

    @property
    def unit(self) -> AxisUnit:
        return self.capabilities.unit

    @property
    def velocity(self) -> float:
        """Velocity set-point (unit/s)."""
        return self._velocity

    def set_velocity(self, velocity: float) -> None:
        """Set the move speed (unit/s); LimitError outside (0, max_velocity]."""
        if not 0 < velocity <= self.capabilities.max_velocity:
            raise self._error(LimitError, f"velocity={velocity:g} {self.unit}/s is outside the allowed range "
                                          f"(0, {self.capabilities.max_velocity:g}] {self.unit}/s")
        self._require_connected()
        self._do_set_velocity(velocity)
        self._velocity = velocity

    def start_move_to(self, position: float) -> Status:
        """Start an absolute move; LimitError before anything moves if outside the soft limits."""
        self.capabilities.check_position(position, who=f"axis {self.name!r}")
        self._require_connected()
        return self._do_start_move(float(position))

    def move_to(self, position: float, timeout_s: float | None = None) -> None:
        """Move to ``position`` and wait; DeviceTimeoutError after ``timeout_s``."""
        self.start_move_to(position).wait(timeout_s)

    def start_move_by(self, delta: float) -> Status:
        """Start a move by ``delta`` from the current read-back position; LimitError before anything moves
        if it would end outside the soft limits."""
        target = self.read_position() + delta
        self.capabilities.check_position(target, who=f"axis {self.name!r}")
        return self._do_start_move_by(float(delta), target)

    def move_by(self, delta: float, timeout_s: float | None = None) -> None:
        self.start_move_by(delta).wait(timeout_s)

    def home(self, timeout_s: float | None = None) -> None:
        """Run the homing (reference) move and wait for it."""
        self._require_connected()
        self._do_start_home().wait(timeout_s)

    def stop(self) -> None:
        """Stop any motion at once. Safe when idle or not connected."""
        if self._connected:
            self._do_stop()

    def read_position(self) -> float:
        """Measured position (unit)."""
        self._require_connected()
        return self._do_read_position()

    def _after_connect(self) -> None:
        """Send the velocity set-point."""
        self._do_set_velocity(self._velocity)

    def close(self) -> None:
        """Stop, then release the link."""
        if self._connected:
            try:
                self.stop()
            finally:
                super().close()

    def _do_describe(self) -> dict[str, Any]:
        return {"position": self.read_position(), "unit": self.unit, "velocity": self.velocity}

    @abc.abstractmethod
    def _do_start_move(self, position: float) -> Status: ...

    def _do_start_move_by(self, delta: float, target: float) -> Status:
        """Start a move by ``delta`` that ends at ``target`` (within the soft limits). By default an absolute
        move to ``target``; a driver whose device has a relative move command sends that instead."""
        return self._do_start_move(target)

    @abc.abstractmethod
    def _do_start_home(self) -> Status: ...

    @abc.abstractmethod
    def _do_stop(self) -> None: ...

    @abc.abstractmethod
    def _do_read_position(self) -> float: ...

    @abc.abstractmethod
    def _do_set_velocity(self, velocity: float) -> None: ...
