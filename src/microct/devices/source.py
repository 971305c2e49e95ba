"""The X-ray source interface: tube voltage (kV), current (µA), focal-spot mode, beam, warm-up, interlock."""

from __future__ import annotations

import abc
import contextlib
import enum
import itertools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from microct.clock import Clock
from microct.devices.base import Device, Finding, FindingLevel
from microct.devices.watchdog import Feeder
from microct.errors import ConfigurationError, DeviceStateError, InterlockError, LimitError


class SourceState(enum.Enum):
    """What an X-ray source reports it is doing; each value is the word a person reads."""

    WARMUP_NEEDED = "warm-up needed"
    WARMING_UP = "warming up"
    STANDBY = "standby"
    BEAM_ON = "beam on"
    FAULT = "fault / overload"
    NOT_READY = "not ready / interlock open"


STATE_FINDINGS: dict[SourceState, tuple[FindingLevel, str]] = {
    SourceState.STANDBY: ("ok", "ready; X-rays off"),
    SourceState.WARMUP_NEEDED: ("warning", "the tube needs its warm-up; a scan runs it first (X-rays on)"),
    SourceState.WARMING_UP: ("warning", "the warm-up runs (X-rays on)"),
    SourceState.BEAM_ON: ("warning", "X-rays are on, switched on before this check (another client, "
                                     "the front panel)"),
    SourceState.FAULT: ("error", "the source reports a fault or overload: clear it (reset) before a scan"),
    SourceState.NOT_READY: ("warning", "the source is not ready (interlock, preheat, local mode ...)"),
}
"""How ``check()`` judges each source state: the Finding level and the words after the state."""


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

    Communication watchdog (a device that switches its beam off when the host falls silent): with
    ``watchdog_s`` set, ``beam_on()`` and ``warm_up()`` arm it first (``_do_arm_watchdog``), a timer on
    the device clock feeds it (``_do_feed_watchdog``) every ``watchdog_feed_s`` without another exchange
    until ``beam_off()`` or ``close()``, and a beam off that succeeded disarms it (``_do_disarm_watchdog``).
    ``beam_off()`` stops feeding before it speaks, so a beam off lost on a dead link still ends in the
    device's watchdog switching the beam off.
    """

    kind = "source"
    watchdog_feed_name: ClassVar[str] = "watchdog feed"
    """How logs name the feed ("keepalive" where the device's manual calls it so)."""
    feeds_watchdog_while_connected: ClassVar[bool] = False
    """True for a device whose watchdog runs whenever it is powered and is never disarmed (Hamamatsu's
    automatic X-ray stop): the feed runs from connect to close, not only while armed."""

    def __init__(self, name: str, capabilities: SourceCapabilities, clock: Clock | None = None,
                 watchdog_s: float | None = None) -> None:
        super().__init__(name, clock)
        self.capabilities = capabilities
        self._voltage_kv = 0.0
        self._current_ua = 0.0
        self._spot_mode = next(iter(capabilities.spot_modes))
        if watchdog_s is not None and not (math.isfinite(watchdog_s) and watchdog_s >= 0):
            raise ConfigurationError(f"{name}.options.watchdog_s={watchdog_s:g}: a time in s > 0, or 0 / unset "
                                     f"for no watchdog")
        self._watchdog_s = watchdog_s or None
        self._watchdog_armed = False
        self._watchdog_failing = False
        self._last_exchange_t = -math.inf  # device clock, when the last exchange with the device started
        self._feeder = Feeder(self.clock, self._watchdog_tick)

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
        """Switch X-rays on, the watchdog armed first (if any). InterlockError if the interlock is open,
        DeviceStateError unless in standby; an arming the device refuses raises and the beam stays off."""
        self._require_connected()
        state = self.read_state()
        if state is SourceState.BEAM_ON:
            self._start_feeding()  # on already (before this session): feed whatever watchdog the device runs
            return
        if not self.read_interlock_closed():
            raise self._error(InterlockError, "interlock is open; close the enclosure before switching the beam on")
        if state is not SourceState.STANDBY:
            raise self._error(DeviceStateError, f"cannot switch the beam on in state {state.value!r} (needs standby)")
        self._with_watchdog(self._do_beam_on)

    def beam_off(self) -> None:
        """Switch X-rays off, then disarm the watchdog. Idempotent; does nothing when not connected. The
        feed stops first: if the beam off fails, an armed watchdog switches the beam off by itself."""
        if not self._connected:
            return
        if not self.feeds_watchdog_while_connected:
            self._feeder.stop()
        self._do_beam_off()
        if self._watchdog_armed:
            self._watchdog_armed = False
            try:
                self._do_disarm_watchdog()
            except Exception as error:  # the beam is off, as asked: a watchdog left armed only trips later
                self._watchdog_log.warning("%s: the beam is off, but disarming its watchdog failed (%s: %s); "
                                           "it may trip and latch a fault", self.who, type(error).__name__, error)

    def warm_up(self) -> None:
        """Start the tube's warm-up programme (returns at once; poll ``read_state()``); X-rays are on during
        it, so the watchdog is armed first and fed until ``beam_off()`` or ``close()``."""
        self._require_connected()
        if not self.read_interlock_closed():
            raise self._error(InterlockError, "interlock is open; warm-up runs with X-rays on")
        state = self.read_state()
        if state not in (SourceState.WARMUP_NEEDED, SourceState.STANDBY):
            raise self._error(DeviceStateError, f"cannot start warm-up in state {state.value!r}")
        self._with_watchdog(self._do_warm_up)

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

    def read_warmup_remaining_s(self) -> float | None:
        """Time (s) the warm-up under way still needs, as the device tells it; None if it cannot tell (or
        no warm-up runs). The scan's progress shows it."""
        self._require_connected()
        return self._do_read_warmup_remaining_s()

    def _do_read_warmup_remaining_s(self) -> float | None:
        """The warm-up's remaining time (s) if the protocol reports it; by default None (it does not)."""
        return None

    def _after_connect(self) -> None:
        """Adopt the device's own set-points."""
        self._voltage_kv, self._current_ua, self._spot_mode = self._do_read_setpoints()

    def connect(self) -> None:
        """As ``Device.connect``; then, for a device whose watchdog always runs, the feed starts."""
        super().connect()
        if self.feeds_watchdog_while_connected:
            self._start_feeding()

    def close(self) -> None:
        """Beam off (the watchdog disarmed), stop feeding it, then release the link."""
        if self._connected:
            try:
                self.beam_off()
            finally:
                self._feeder.stop()
                super().close()

    def _do_check(self) -> list[Finding]:
        """The state and the interlock, judged: a fault is an error; warm-up needed, not ready, X-rays on
        and an open interlock are warnings (drivers add the device's own reasons)."""
        state = self.read_state()
        level, meaning = STATE_FINDINGS[state]
        findings = [Finding(level, "state", f"{state.value}: {meaning}")]
        if not self.read_interlock_closed():
            findings.append(Finding("warning", "interlock_closed", "no: the interlock is open; close the "
                                                                   "enclosure before a scan"))
        return findings

    def _do_describe(self) -> dict[str, Any]:
        return {"state": self.read_state().value, "interlock_closed": self.read_interlock_closed(),
                "voltage_kv": self.read_voltage_kv(), "current_ua": self.read_current_ua(),
                "spot_mode": self.spot_mode}

    # -- the communication watchdog -----------------------------------------------------------------
    @property
    def watchdog_s(self) -> float | None:
        """The communication-watchdog time (s) armed at beam on and warm-up: the device switches the beam
        off after this long without a message. None: none armed (the protocol has none, or it is off)."""
        return self._watchdog_s

    @property
    def watchdog_feed_s(self) -> float:
        """How long the link may stay silent before the feed speaks (s): ``watchdog_s / 3``; 0: no feed."""
        return self.watchdog_s / 3 if self.watchdog_s else 0.0

    @property
    def watchdog_armed(self) -> bool:
        """True from an arming (beam on, warm-up) until a beam off that succeeded."""
        return self._watchdog_armed

    @property
    def _watchdog_log(self) -> logging.Logger:
        return logging.getLogger(type(self).__module__)

    def _with_watchdog(self, switch_on: Callable[[], None]) -> None:
        """Arm the watchdog and start feeding it, then ``switch_on()``. An arming that fails raises before
        anything is switched on. If ``switch_on`` fails, the watchdog stays armed and fed (the beam may be on,
        its reply lost) until ``beam_off()`` or ``close()``."""
        timeout_s = self.watchdog_s
        if timeout_s:
            self._do_arm_watchdog(timeout_s)
            self._watchdog_armed = True
        self._start_feeding()
        switch_on()

    def _start_feeding(self) -> None:
        """Start the feed unless it runs already or ``watchdog_feed_s`` is 0."""
        if self.watchdog_feed_s > 0 and not self._feeder.running:
            self._watchdog_failing = False
            self._feeder.start(self.watchdog_feed_s)

    def _stop_feeding(self) -> None:
        """Stop the feed; returns once a feed in progress has ended (a driver calls it first in ``_do_close``)."""
        self._feeder.stop()

    def _exchange_started(self) -> None:
        """A driver calls this as each exchange with the device starts: the feed only speaks after
        ``watchdog_feed_s`` of silence (a driver that never calls it gets a feed every period)."""
        self._last_exchange_t = self.clock.monotonic()

    def _watchdog_tick(self) -> float | None:
        """One run of the feed (the Feeder's timer thread): feed unless an exchange started within
        ``watchdog_feed_s``. Returns the delay to the next run (s); None ends the feed. Never raises: a
        failure is logged at WARNING once until a feed succeeds again (then INFO), and tried again."""
        period_s = self.watchdog_feed_s
        if not self._connected or period_s <= 0:
            return None
        try:
            idle_s = self.clock.monotonic() - self._last_exchange_t
            if idle_s < period_s:
                return period_s - idle_s
            with self._watchdog_link():
                idle_s = self.clock.monotonic() - self._last_exchange_t
                if idle_s < period_s:  # an exchange started while this run waited for the link
                    return period_s - idle_s
                self._do_feed_watchdog()
        except Exception as error:  # a timer thread: nothing may escape, the next run tries again
            if not self._watchdog_failing:
                self._watchdog_log.warning("%s: %s failed (%s: %s); %s; trying again every %g s", self.who,
                                           self.watchdog_feed_name, type(error).__name__, error,
                                           self._watchdog_at_risk(), period_s)
            self._watchdog_failing = True
        else:
            if self._watchdog_failing:
                self._watchdog_log.info("%s: the %s is answered again", self.who, self.watchdog_feed_name)
            self._watchdog_failing = False
        return period_s

    def _do_arm_watchdog(self, timeout_s: float) -> None:  # noqa: B027 - a hook with nothing to do by default
        """Arm the device's watchdog to switch the beam off after ``timeout_s`` (s) without a message; called
        before X-rays go on. Default: nothing to send (a watchdog set in the device's own configuration)."""

    def _do_feed_watchdog(self) -> None:
        """Reset the watchdog's time: one cheap exchange (a status query, where any valid command resets it).
        Runs in the feed's timer thread, under ``_watchdog_link()``; may raise (the feed logs it)."""
        raise NotImplementedError(f"{type(self).__name__} has a watchdog_s but no _do_feed_watchdog")

    def _do_disarm_watchdog(self) -> None:  # noqa: B027 - a hook with nothing to do by default
        """Disarm the watchdog once the beam is off. Default: nothing to send."""

    def _watchdog_link(self) -> contextlib.AbstractContextManager[Any]:
        """Held around a feed's idle check and exchange: the driver's ``Transport.transaction``, so that no
        exchange of its own gets between them. Default: nothing held."""
        return contextlib.nullcontext()

    def _watchdog_at_risk(self) -> str:
        """What a failing feed risks, in words, for its log line."""
        return f"the device switches the beam off after {self.watchdog_s or 0:g} s without a message"

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
