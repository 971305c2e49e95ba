"""The positioning-axis interface, one shape for rotary (degrees) and linear (millimetres) axes."""

from __future__ import annotations

import abc
import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

from microct.clock import Clock
from microct.devices.base import Device, Finding, Status
from microct.errors import ConfigurationError, LimitError

AxisUnit = Literal["deg", "mm"]
"""An axis's unit: degrees (a rotation stage) or millimetres (a linear stage)."""

log = logging.getLogger("microct.devices.axis")


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
        if self.low_limit is not None and self.high_limit is not None and self.low_limit >= self.high_limit:
            raise ConfigurationError(f"soft limits ({self.low_limit}, {self.high_limit}): low must be < high")

    @property
    def bounded(self) -> bool:
        """False for an axis without soft limits (a continuous rotation stage)."""
        return self.low_limit is not None or self.high_limit is not None

    def narrowed(self, low: float | None, high: float | None, who: str = "axis",
                 source: str = "the controller's") -> AxisCapabilities:
        """These capabilities with the soft limits narrowed to ``low``..``high`` (a controller's or a
        record's own limits; None: that side unbounded): the intersection, never wider than configured.
        ConfigurationError naming both ranges if they do not overlap. A driver calls it at connect and
        assigns the result to ``Axis.capabilities``; ``who`` and ``source`` word the error and the log."""
        new_low = low if self.low_limit is None else self.low_limit if low is None else max(self.low_limit, low)
        new_high = high if self.high_limit is None else self.high_limit if high is None else min(self.high_limit, high)
        if new_low is not None and new_high is not None and new_low >= new_high:
            raise ConfigurationError(f"{who}: the configured soft limits {_limit(self.low_limit)} to "
                                     f"{_limit(self.high_limit)} {self.unit} do not overlap {source} "
                                     f"{_limit(low)} to {_limit(high)} {self.unit}")
        narrowed = dataclasses.replace(self, low_limit=new_low, high_limit=new_high)
        if narrowed != self:
            log.info("%s: %s soft limits %s to %s %s narrow the configured %s to %s: now %s to %s %s", who, source,
                     _limit(low), _limit(high), self.unit, _limit(self.low_limit), _limit(self.high_limit),
                     _limit(new_low), _limit(new_high), self.unit)
        return narrowed

    def check_position(self, position: float, who: str = "axis") -> None:
        """Raise LimitError unless ``position`` lies within the soft limits."""
        if not math.isfinite(position):
            raise LimitError(f"{who}: position={position} is not a finite number")
        low = -math.inf if self.low_limit is None else self.low_limit
        high = math.inf if self.high_limit is None else self.high_limit
        if not low <= position <= high:
            raise LimitError(f"{who}: position={position:g} {self.unit} is outside the soft limits "
                             f"{low:g} to {high:g} {self.unit}")


def _limit(value: float | None) -> str:
    return "unbounded" if value is None else f"{value:g}"


class Axis(Device):
    """A motorised axis. Positions and velocities are in ``unit`` ("deg" or "mm", per second).

    Every move is checked against the soft limits before the driver is asked.
    ``start_move_to`` returns a Status at once, so a caller can overlap a move
    with other work; ``move_to`` blocks until the move ends.

    ``connect()`` writes nothing to the device: before the first move or homing after it, the driver's
    ``_do_prepare_motion`` (e.g. servo on) runs and the held velocity set-point is sent, unless
    ``set_velocity`` has sent one since (one place, ``_ready_to_move``).
    """

    kind = "axis"

    def __init__(self, name: str, capabilities: AxisCapabilities, clock: Clock | None = None) -> None:
        super().__init__(name, clock)
        self.capabilities = capabilities
        self._velocity = capabilities.max_velocity
        self._last_motion: Status | None = None
        self._motion_prepared = False
        self._velocity_sent = False

    @property
    def moving(self) -> bool:
        """True while the last move or homing started through this object has not ended (its Status)."""
        return self._last_motion is not None and not self._last_motion.done

    def _started(self, status: Status) -> Status:
        self._last_motion = status
        return status

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
        self._velocity_sent = True

    def start_move_to(self, position: float) -> Status:
        """Start an absolute move; LimitError before anything moves if outside the soft limits."""
        self.capabilities.check_position(position, who=f"axis {self.name!r}")
        self._require_connected()
        self._ready_to_move()
        return self._started(self._do_start_move(float(position)))

    def move_to(self, position: float, timeout_s: float | None = None) -> None:
        """Move to ``position`` and wait; DeviceTimeoutError after ``timeout_s``."""
        self.start_move_to(position).wait(timeout_s)

    def start_move_by(self, delta: float) -> Status:
        """Start a move by ``delta`` from the current read-back position; LimitError before anything moves
        if it would end outside the soft limits."""
        target = self.read_position() + delta
        self.capabilities.check_position(target, who=f"axis {self.name!r}")
        self._ready_to_move()
        return self._started(self._do_start_move_by(float(delta), target))

    def move_by(self, delta: float, timeout_s: float | None = None) -> None:
        self.start_move_by(delta).wait(timeout_s)

    def home(self, timeout_s: float | None = None) -> None:
        """Run the homing (reference) move and wait for it."""
        self._require_connected()
        self._ready_to_move()
        self._started(self._do_start_home()).wait(timeout_s)

    def stop(self) -> None:
        """Stop any motion at once. Safe when idle or not connected."""
        if self._connected:
            self._do_stop()

    def read_position(self) -> float:
        """Measured position (unit)."""
        self._require_connected()
        return self._do_read_position()

    def read_referenced(self) -> bool | None:
        """Whether the device has a position reference (it has been homed since it was powered up): True,
        False, or None when the device cannot tell. A query: nothing moves. DeviceStateError if not
        connected; the driver's errors for a failed exchange."""
        self._require_connected()
        return self._do_read_referenced()

    def _ready_to_move(self) -> None:
        """Before the first move or homing since connect: ``_do_prepare_motion``, then the held velocity
        set-point unless ``set_velocity`` has sent it since (connect sends neither)."""
        if not self._motion_prepared:
            self._do_prepare_motion()
            self._motion_prepared = True
        if not self._velocity_sent:
            self._do_set_velocity(self._velocity)
            self._velocity_sent = True

    def _after_connect(self) -> None:
        """Nothing is sent at connect (``microct check`` is read-only): the velocity set-point goes out
        before the first move or homing. A driver that overrides this calls it."""
        self._motion_prepared = self._velocity_sent = False

    def _do_check(self) -> list[Finding]:
        """Whether the axis has a position reference (``read_referenced``)."""
        referenced = self.read_referenced()
        if referenced is None:
            return [Finding("ok", "referenced", "unknown: the device cannot tell")]
        if referenced:
            return [Finding("ok", "referenced", "yes")]
        return [Finding("warning", "referenced", "no: positions are relative to an arbitrary zero; microct "
                                                 "home homes it, and a scan does first unless home = \"never\"")]

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

    def _do_prepare_motion(self) -> None:  # noqa: B027 - a hook with nothing to do by default, not abstract
        """What the device needs before its first move since connect, besides the velocity (PI: servo on).
        Runs once per connection, before the first move or homing."""

    def _do_read_referenced(self) -> bool | None:
        """Whether the device reports a position reference; the default, None, says the device cannot
        tell. A driver whose protocol has a query for it overrides this (one exchange, no move)."""
        return None

    @abc.abstractmethod
    def _do_stop(self) -> None: ...

    @abc.abstractmethod
    def _do_read_position(self) -> float: ...

    @abc.abstractmethod
    def _do_set_velocity(self, velocity: float) -> None: ...
