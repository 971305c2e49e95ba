"""In-process X-ray source: kV/µA ramps, warm-up, interlock, per-mode power limits, overload.

Read-backs are computed from the clock, so simulated time gives instant scans
and real time gives a tube that ramps as a real one does. Scheduled faults
(``microct.simulators.faults``): arc, interlock_open and request faults.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from microct.clock import Clock
from microct.devices.base import DriverContext
from microct.devices.source import SourceCapabilities, SourceState, SpotMode, XRaySource
from microct.errors import DeviceStateError, DeviceTimeoutError
from microct.simulators.bench import bench_of
from microct.simulators.faults import BEAM_KINDS, Fault, FaultSchedule, InjectsFaults, attach


def _default_spot_modes() -> dict[str, SpotMode]:
    # A 150 kV / 500 µA / 75 W class microfocus tube (the L12161-07 class of the
    # Hamamatsu sheet's family): three focus modes, spot growing with power.
    return {"small": SpotMode(power_limit_w=10, spot_size_um=5, growth_um_per_w=0.8),
            "middle": SpotMode(power_limit_w=30, spot_size_um=15, growth_um_per_w=0.8),
            "large": SpotMode(power_limit_w=75, spot_size_um=40, growth_um_per_w=0.8)}


class SimulatedSourceOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    voltage_range_kv: tuple[float, float] = Field(default=(20.0, 150.0), description="allowed kV set-points, low "
                                                  "to high; the warm-up ramps to the high end")
    current_range_ua: tuple[float, float] = Field(default=(0.0, 500.0), description="allowed µA set-points, low to "
                                                  "high")
    spot_modes: dict[str, SpotMode] = Field(default_factory=_default_spot_modes, description="focal-spot modes by "
                                            "name; default: small, middle and large of a 150 kV / 500 µA / 75 W "
                                            "class microfocus tube, the spot growing with power (illustrative "
                                            "figures)")
    ramp_kv_per_s: float = Field(default=10.0, gt=0, description="how fast the kV read-back follows its set-point "
                                 "while X-rays are on (it drops to 0 at once when they go off)")
    ramp_ua_per_s: float = Field(default=50.0, gt=0, description="how fast the µA read-back follows its set-point "
                                 "while X-rays are on (it drops to 0 at once when they go off)")
    warmup_s: float = Field(default=600.0, ge=0, description="how long warm_up() runs (s); X-rays are off "
                                                            "afterwards")
    warmed_up: bool = Field(default=False, description="start warm, in standby; false: the tube starts as warm-up "
                                                       "needed, and beam_on is refused until a warm-up has run")
    interlock_closed: bool = Field(default=True, description="the enclosure interlock starts closed; false: the "
                                                             "tube is not ready, beam_on and warm_up are refused")
    readback_noise_kv: float = Field(default=0.02, ge=0, description="kV read-back noise, 1 sigma, while the "
                                                                    "high voltage is up")
    readback_noise_ua: float = Field(default=0.05, ge=0, description="µA read-back noise, 1 sigma, while the "
                                                                    "current is up")
    emits_xrays: bool = Field(default=True, description="false: a tube whose kV and µA read back as set but from "
                                                        "which no X-rays reach the detector (a burnt-through target, "
                                                        "a closed shutter): the scan's reference check must stop it")


class _Ramp:
    """A value ramping linearly at ``rate`` per second from where it was towards a target."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.start_value = 0.0
        self.start_t = 0.0
        self.target = 0.0

    def value(self, t: float) -> float:
        step = self.rate * (t - self.start_t)
        if self.target >= self.start_value:
            return min(self.target, self.start_value + step)
        return max(self.target, self.start_value - step)

    def retarget(self, target: float, t: float) -> None:
        self.start_value, self.start_t, self.target = self.value(t), t, target

    def drop(self, t: float) -> None:
        """High voltage off: the value falls to zero at once."""
        self.start_value, self.start_t, self.target = 0.0, t, 0.0


class SimulatedSource(InjectsFaults, XRaySource):
    """A microfocus tube in software. Test hooks: ``set_interlock``, ``trigger_overload``; ``faults``
    schedules them (and request faults) by time, or by frame through the detector simulator."""

    backend = "in-process"
    environment = "simulation"
    Options = SimulatedSourceOptions

    def __init__(self, name: str = "source", options: SimulatedSourceOptions | None = None,
                 clock: Clock | None = None, seed: int | None = None, faults: FaultSchedule | None = None) -> None:
        self.options = options or SimulatedSourceOptions()
        caps = SourceCapabilities(
            voltage_range_kv=self.options.voltage_range_kv, current_range_ua=self.options.current_range_ua,
            spot_modes=self.options.spot_modes)
        super().__init__(name, caps, clock)
        self._rng = np.random.default_rng(seed)
        self._kv = _Ramp(self.options.ramp_kv_per_s)
        self._ua = _Ramp(self.options.ramp_ua_per_s)
        self._setpoints = {"voltage_kv": caps.voltage_range_kv[0], "current_ua": 0.0,
                           "spot_mode": next(iter(caps.spot_modes))}
        self._interlock_closed = self.options.interlock_closed
        self._warmed_up = self.options.warmed_up
        self._warmup_end_t: float | None = None
        self._beam = False
        self._fault = False
        self._faults = attach(faults, name, self._apply_fault)

    @classmethod
    def from_config(cls, name: str, options: SimulatedSourceOptions, connection: str | None,
                    context: DriverContext) -> SimulatedSource:
        bench = bench_of(context)
        return cls(name, options, bench.clock, bench.seed, bench.faults)

    def fault_hook(self, mute=None) -> SimulatedSourceHook:
        """The hook of the source fault contract for this tube; ``mute(bool)`` silences the link in front
        of it (a WireServer's ``muted``), default: the tube itself."""
        return SimulatedSourceHook(self, mute)

    # -- test hooks (what a real tube does to its controller) -------------------------------
    def set_interlock(self, closed: bool) -> None:
        """Open or close the enclosure interlock; opening it drops the beam at once."""
        self._interlock_closed = closed
        if not closed:
            self._switch_off()

    def stop_xrays(self) -> None:
        """X-rays off as the controller itself switches them off (an automatic stop when its host falls
        silent): back to standby, a warm-up under way abandoned; no fault latched."""
        self._switch_off()

    def trigger_overload(self) -> None:
        """A tube arc / overload: the protection drops the beam and latches a fault until ``reset()``."""
        self._fault = True
        self._switch_off()

    def _apply_fault(self, fault: Fault) -> None:
        """Carry out a scheduled arc or interlock opening (closed again after ``duration_s``, if given)."""
        if fault.kind == "arc":
            self.trigger_overload()
        else:
            self.set_interlock(False)
            if fault.duration_s is not None:
                self.clock.call_later(fault.duration_s, lambda: self.set_interlock(True))

    # -- hooks ------------------------------------------------------------------------------
    def _now(self) -> float:
        return self.clock.monotonic()

    def _switch_off(self) -> None:
        """High voltage off; a warm-up in progress is abandoned and has to be run again."""
        self._beam = False
        self._warmup_end_t = None
        self._kv.drop(self._now())
        self._ua.drop(self._now())

    def _warming(self) -> bool:
        return self._warmup_end_t is not None and self._now() < self._warmup_end_t

    def _do_read_warmup_remaining_s(self) -> float | None:
        return self._warmup_end_t - self._now() if self._warming() and self._warmup_end_t is not None else None

    def _do_connect(self) -> None:
        self._faults.start(self.clock, self._apply_fault, BEAM_KINDS)  # nothing to open: the tube is here

    def _do_close(self) -> None:
        pass

    def _do_read_setpoints(self) -> tuple[float, float, str]:
        return self._setpoints["voltage_kv"], self._setpoints["current_ua"], self._setpoints["spot_mode"]

    def _do_set_voltage_kv(self, voltage_kv: float) -> None:
        self._setpoints["voltage_kv"] = voltage_kv
        if self._beam:
            self._kv.retarget(voltage_kv, self._now())

    def _do_set_current_ua(self, current_ua: float) -> None:
        self._setpoints["current_ua"] = current_ua
        if self._beam:
            self._ua.retarget(current_ua, self._now())

    def _do_set_spot_mode(self, spot_mode: str) -> None:
        self._setpoints["spot_mode"] = spot_mode

    def _do_beam_on(self) -> None:
        self._beam = True
        self._kv.retarget(self._setpoints["voltage_kv"], self._now())
        self._ua.retarget(self._setpoints["current_ua"], self._now())

    def _do_beam_off(self) -> None:
        if self.muted:  # a silent controller does not hear it (beam_off needs no connection check of its own)
            raise self._error(DeviceTimeoutError, "no reply to beam off (the simulated tube is silent)")
        self._switch_off()

    def _do_warm_up(self) -> None:
        self._warmup_end_t = self._now() + self.options.warmup_s
        self._kv.retarget(self.capabilities.voltage_range_kv[1], self._now())
        self._ua.retarget(0.0, self._now())

    def _finish_warm_up(self) -> None:
        """End the warm-up once its time is over: the tube is then warm, X-rays off."""
        if self._warmup_end_t is not None and self._now() >= self._warmup_end_t:
            self._warmed_up = True
            self._switch_off()

    def _do_reset(self) -> None:
        if self._beam:
            raise self._error(DeviceStateError, "reset is refused while X-rays are on")
        self._fault = False

    def _do_read_state(self) -> SourceState:
        self._finish_warm_up()
        if self._fault:
            return SourceState.FAULT
        if not self._interlock_closed:
            return SourceState.NOT_READY
        if self._warming():
            return SourceState.WARMING_UP
        if not self._warmed_up:
            return SourceState.WARMUP_NEEDED
        return SourceState.BEAM_ON if self._beam else SourceState.STANDBY

    def _do_read_voltage_kv(self) -> float:
        self._finish_warm_up()
        value = self._kv.value(self._now())
        return max(0.0, value + self._rng.normal(0, self.options.readback_noise_kv)) if value else 0.0

    def _do_read_current_ua(self) -> float:
        self._finish_warm_up()
        value = self._ua.value(self._now())
        return max(0.0, value + self._rng.normal(0, self.options.readback_noise_ua)) if value else 0.0

    def _do_read_interlock_closed(self) -> bool:
        return self._interlock_closed


class SimulatedSourceHook:
    """The source fault contract's hook on a SimulatedSource (in process, or behind a wire simulator whose
    ``mute`` is given): silence the controller, read the tube's true high-voltage state, strike an arc,
    open or close the interlock."""

    def __init__(self, source: SimulatedSource, mute=None) -> None:
        self.source = source
        self._mute = mute or (lambda muted: setattr(source, "muted", muted))

    def mute(self, muted: bool = True) -> None:
        self._mute(muted)

    def beam_on(self) -> bool:
        """True while the tube's high voltage is on (its own flag, not a read through the driver)."""
        return self.source._beam

    def arc(self) -> None:
        self.source.trigger_overload()

    def open_interlock(self, open_: bool = True) -> None:
        self.source.set_interlock(not open_)
