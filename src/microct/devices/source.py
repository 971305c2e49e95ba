"""The X-ray source interface: tube voltage (kV), current (µA), focal-spot mode, beam, warm-up, interlock."""

from __future__ import annotations

import abc
import enum
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from microct.clock import Clock
from microct.devices.base import Device
from microct.errors import ConfigurationError, DeviceStateError, InterlockError, LimitError


class SourceState(enum.Enum):
    """What an X-ray source reports it is doing; each value is the word a person reads."""

    WARMUP_NEEDED = "warm-up needed"
    WARMING_UP = "warming up"
    STANDBY = "standby"
    BEAM_ON = "beam on"
    FAULT = "fault / overload"
    NOT_READY = "not ready / interlock open"


class SpotMode(BaseModel):
    """One focal-spot mode: its power limit (W), focal-spot size (µm) and how the device selects it.

    The one schema of a spot mode, in model tables, driver options and capabilities alike. The spot
    grows with target power above a floor: size = max(spot_size_um, growth_um_per_w × P);
    ``growth_um_per_w = 0`` means a fixed spot. ``code`` is the device's own word for the mode
    (Hamamatsu's ``CFS`` number, the filament a Spellman generator selects, an EPICS enum string);
    None where the device needs none or takes the mode's name.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    power_limit_w: float = Field(gt=0, description="largest target power in this mode (W)")
    spot_size_um: float = Field(gt=0, description="focal-spot size at low power (µm)")
    growth_um_per_w: float = Field(default=0.0, ge=0, description="spot growth with target power (µm/W)")
    code: int | str | None = Field(default=None, description="the device's own number or name for the mode")

    def spot_size_at_um(self, power_w: float) -> float:
        """Focal-spot size (µm) at target power ``power_w`` (W)."""
        return max(self.spot_size_um, self.growth_um_per_w * power_w)


@dataclass(frozen=True)
class SourceCapabilities:
    """What a tube model allows: voltage and current ranges and its spot modes by name."""

    voltage_range_kv: tuple[float, float]
    current_range_ua: tuple[float, float]
    spot_modes: dict[str, SpotMode] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for label, (low, high) in (("voltage_range_kv", self.voltage_range_kv),
                                   ("current_range_ua", self.current_range_ua)):
            if not 0 <= low <= high:
                raise ConfigurationError(f"{label}=({low}, {high}): need 0 <= low <= high")
        if not self.spot_modes:
            raise ConfigurationError("spot_modes: a source needs at least one focal-spot mode")


def target_power_w(voltage_kv: float, current_ua: float) -> float:
    """Electron-beam power on the target in W: kV × µA / 1000."""
    return voltage_kv * current_ua / 1000.0


def check_operating_point(caps: SourceCapabilities, voltage_kv: float, current_ua: float,
                          spot_mode: str, who: str = "source") -> None:
    """Raise LimitError (naming field, value and allowed range) unless the point is allowed.

    Pure: used by the XRaySource base class before any driver code runs, and by
    the configuration loader before anything connects.
    """
    if spot_mode not in caps.spot_modes:
        raise LimitError(f"{who}: spot_mode={spot_mode!r} is not one of {sorted(caps.spot_modes)}")
    for label, value, (low, high), unit in (("voltage_kv", voltage_kv, caps.voltage_range_kv, "kV"),
                                            ("current_ua", current_ua, caps.current_range_ua, "µA")):
        if not low <= value <= high:
            raise LimitError(f"{who}: {label}={value:g} is outside the allowed range {low:g}-{high:g} {unit}")
    limit_w = caps.spot_modes[spot_mode].power_limit_w
    power = target_power_w(voltage_kv, current_ua)
    if power > limit_w * (1 + 1e-9):
        max_ua = limit_w * 1000.0 / voltage_kv if voltage_kv else caps.current_range_ua[1]
        raise LimitError(
            f"{who}: target power {power:.3g} W ({voltage_kv:g} kV × {current_ua:g} µA) exceeds the "
            f"{spot_mode!r} spot-mode limit of {limit_w:g} W; allowed current_ua at {voltage_kv:g} kV: "
            f"{caps.current_range_ua[0]:g}-{min(max_ua, caps.current_range_ua[1]):.4g} µA")


class XRaySource(Device):
    """A microfocus X-ray tube.

    Set-points (``voltage_kv``, ``current_ua``, ``spot_mode``) are held by the
    base class and checked against ``capabilities`` before any driver code
    runs; ``read_*`` methods return measured read-backs from the device.
    ``beam_off()`` is always safe: idempotent, and ``close()`` calls it first.
    """

    kind = "source"

    def __init__(self, name: str, capabilities: SourceCapabilities, clock: Clock | None = None) -> None:
        super().__init__(name, clock)
        self.capabilities = capabilities
        self._voltage_kv = 0.0
        self._current_ua = 0.0
        self._spot_mode = next(iter(capabilities.spot_modes))

    # -- set-points -------------------------------------------------------------------------
    @property
    def voltage_kv(self) -> float:
        """Voltage set-point (kV)."""
        return self._voltage_kv

    @property
    def current_ua(self) -> float:
        """Current set-point (µA)."""
        return self._current_ua

    @property
    def spot_mode(self) -> str:
        """Focal-spot mode set-point (a key of ``capabilities.spot_modes``)."""
        return self._spot_mode

    @property
    def target_power_w(self) -> float:
        """Target power of the set-points (W)."""
        return target_power_w(self._voltage_kv, self._current_ua)

    @property
    def focal_spot_size_um(self) -> float:
        """Focal-spot size (µm) at the set-point power in the current mode."""
        return self.capabilities.spot_modes[self._spot_mode].spot_size_at_um(self.target_power_w)

    def configure(self, *, voltage_kv: float | None = None, current_ua: float | None = None,
                  spot_mode: str | None = None) -> None:
        """Change any of kV, µA and spot mode together.

        The final point is checked first (LimitError). The changes are sent in
        an order whose every intermediate point respects the power limits, so
        that the tube never sees a forbidden combination on the way.
        """
        self._require_connected()
        final: dict[str, Any] = {"voltage_kv": self._voltage_kv if voltage_kv is None else float(voltage_kv),
                                 "current_ua": self._current_ua if current_ua is None else float(current_ua),
                                 "spot_mode": self._spot_mode if spot_mode is None else spot_mode}
        check_operating_point(self.capabilities, **final, who=f"source {self.name!r}")
        current: dict[str, Any] = {"voltage_kv": self._voltage_kv, "current_ua": self._current_ua,
                                   "spot_mode": self._spot_mode}
        changed = [key for key in final if final[key] != current[key]]
        order: tuple[str, ...] = ()
        for order in itertools.permutations(changed):
            point, safe = dict(current), True
            for key in order:
                point[key] = final[key]
                safe = safe and self._allowed(**point)
            if safe:
                break
        setters: dict[str, Callable[[Any], None]] = {"voltage_kv": self._do_set_voltage_kv,
                                                     "current_ua": self._do_set_current_ua,
                                                     "spot_mode": self._do_set_spot_mode}
        for key in order:
            setters[key](final[key])
            setattr(self, f"_{key}", final[key])

    def set_voltage_kv(self, voltage_kv: float) -> None:
        self.configure(voltage_kv=voltage_kv)

    def set_current_ua(self, current_ua: float) -> None:
        self.configure(current_ua=current_ua)

    def set_spot_mode(self, spot_mode: str) -> None:
        self.configure(spot_mode=spot_mode)

    def _allowed(self, voltage_kv: float, current_ua: float, spot_mode: str) -> bool:
        limit = self.capabilities.spot_modes[spot_mode].power_limit_w
        return target_power_w(voltage_kv, current_ua) <= limit * (1 + 1e-9)

    # -- beam, warm-up, reset -----------------------------------------------------------------
    def beam_on(self) -> None:
        """Switch X-rays on. InterlockError if the interlock is open, DeviceStateError unless in standby."""
        self._require_connected()
        state = self.read_state()
        if state is SourceState.BEAM_ON:
            return
        if not self.read_interlock_closed():
            raise self._error(InterlockError, "interlock is open; close the enclosure before switching the beam on")
        if state is not SourceState.STANDBY:
            raise self._error(DeviceStateError, f"cannot switch the beam on in state {state.value!r} (needs standby)")
        self._do_beam_on()

    def beam_off(self) -> None:
        """Switch X-rays off. Idempotent; does nothing when not connected."""
        if self._connected:
            self._do_beam_off()

    def warm_up(self) -> None:
        """Start the tube's warm-up programme (returns at once; poll ``read_state()``)."""
        self._require_connected()
        if not self.read_interlock_closed():
            raise self._error(InterlockError, "interlock is open; warm-up runs with X-rays on")
        state = self.read_state()
        if state not in (SourceState.WARMUP_NEEDED, SourceState.STANDBY):
            raise self._error(DeviceStateError, f"cannot start warm-up in state {state.value!r}")
        self._do_warm_up()

    def reset(self) -> None:
        """Clear an overload / fault. The beam stays off."""
        self._require_connected()
        self._do_reset()

    # -- read-backs -----------------------------------------------------------------------------
    def read_state(self) -> SourceState:
        self._require_connected()
        return self._do_read_state()

    def refresh(self) -> None:
        """Forget read-backs kept from an earlier exchange: the next reads ask the device (used after
        each frame, so that a fault during it cannot hide behind a reply from before it)."""
        self._require_connected()
        self._do_refresh()

    def _do_refresh(self) -> None:
        """Drop cached read-backs; nothing to do for a driver that keeps none."""

    def read_voltage_kv(self) -> float:
        """Measured tube voltage (kV)."""
        self._require_connected()
        return self._do_read_voltage_kv()

    def read_current_ua(self) -> float:
        """Measured tube current (µA)."""
        self._require_connected()
        return self._do_read_current_ua()

    def read_interlock_closed(self) -> bool:
        self._require_connected()
        return self._do_read_interlock_closed()

    def _after_connect(self) -> None:
        """Adopt the device's own set-points."""
        self._voltage_kv, self._current_ua, self._spot_mode = self._do_read_setpoints()

    def close(self) -> None:
        """Beam off, then release the link."""
        if self._connected:
            try:
                self.beam_off()
            finally:
                super().close()

    def _do_describe(self) -> dict[str, Any]:
        return {"state": self.read_state().value, "interlock_closed": self.read_interlock_closed(),
                "voltage_kv": self.read_voltage_kv(), "current_ua": self.read_current_ua(),
                "spot_mode": self.spot_mode}

    # -- driver hooks -----------------------------------------------------------------------------
    @abc.abstractmethod
    def _do_read_setpoints(self) -> tuple[float, float, str]:
        """(voltage_kv, current_ua, spot_mode) as the device holds them."""

    @abc.abstractmethod
    def _do_set_voltage_kv(self, voltage_kv: float) -> None: ...

    @abc.abstractmethod
    def _do_set_current_ua(self, current_ua: float) -> None: ...

    @abc.abstractmethod
    def _do_set_spot_mode(self, spot_mode: str) -> None: ...

    @abc.abstractmethod
    def _do_beam_on(self) -> None: ...

    @abc.abstractmethod
    def _do_beam_off(self) -> None: ...

    @abc.abstractmethod
    def _do_warm_up(self) -> None: ...

    @abc.abstractmethod
    def _do_reset(self) -> None: ...

    @abc.abstractmethod
    def _do_read_state(self) -> SourceState: ...

    @abc.abstractmethod
    def _do_read_voltage_kv(self) -> float: ...

    @abc.abstractmethod
    def _do_read_current_ua(self) -> float: ...

    @abc.abstractmethod
    def _do_read_interlock_closed(self) -> bool: ...
