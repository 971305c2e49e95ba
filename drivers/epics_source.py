"""An X-ray source behind an EPICS soft IOC, over Channel Access (shared/protocols/epics-xray-source.md).

PV names are ``prefix`` (the ``connection`` string, e.g. ``CT:XRAY:``) plus a name from ``pvs``,
the sheet's default scheme, any of which configuration can override. The IOC cannot tell the
tube's ranges, spot modes and power limits: they come from configuration too.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from microct.clock import Clock
from microct.devices.source import SourceCapabilities, SourceState, SpotMode, XRaySource
from microct.errors import ConfigurationError, DeviceFaultError
from microct.devices.base import DriverContext
from microct.transport.epics import ChannelAccess, configure_environment

log = logging.getLogger("microct.drivers.epics_source")


class EpicsPVNames(BaseModel):
    """PV names after the prefix (the sheet's default scheme); override any to match a site's IOC."""

    model_config = ConfigDict(extra="forbid")
    voltage: str = "HV"
    voltage_rbv: str = "HV_RBV"
    current: str = "Current"
    current_rbv: str = "Current_RBV"
    focus: str = "FocusMode"
    focus_rbv: str = "FocusMode_RBV"
    xray_on: str = "XrayOn"
    xray_on_rbv: str = "XrayOn_RBV"
    state: str = "State_RBV"
    interlock: str = "Interlock_RBV"
    power: str = "Power_RBV"
    fault: str = "Fault_RBV"
    fault_reset: str = "FaultReset"
    warm_up: str = "WarmUp"


class EpicsSourceOptions(BaseModel):
    """``[source.options]`` of the ``epics-source`` driver."""

    model_config = ConfigDict(extra="forbid")
    voltage_range_kv: tuple[float, float]
    current_range_ua: tuple[float, float]
    spot_modes: dict[str, SpotMode] = Field(
        min_length=1, description="spot modes by name; code: the FocusMode enum string (default: the name)")
    pvs: EpicsPVNames = Field(default_factory=EpicsPVNames)
    states: tuple[str, ...] = Field(
        default=tuple(state.name for state in (SourceState.WARMUP_NEEDED, SourceState.WARMING_UP, SourceState.STANDBY,
                                               SourceState.BEAM_ON, SourceState.FAULT, SourceState.NOT_READY)),
        description="SourceState names by State_RBV enum index")
    interlock_closed_value: int = Field(default=0, description="Interlock_RBV index meaning closed")
    addr_list: str | None = Field(default=None, description="EPICS_CA_ADDR_LIST; default: the environment's")
    connect_timeout_s: float = Field(default=2.0, gt=0)
    put_timeout_s: float = Field(default=5.0, gt=0, description="for a put-callback to complete (s)")
    warm_up_start_timeout_s: float = Field(default=2.0, gt=0, description="for State_RBV to show the warm-up (s)")

    def capabilities(self) -> SourceCapabilities:
        return SourceCapabilities(self.voltage_range_kv, self.current_range_ua, self.spot_modes)


class EpicsSource(XRaySource):
    """An X-ray source mapped onto EPICS PVs. Read-backs, state and interlock are monitored;
    set-points and actions are put-callback writes; ``warm_up`` starts the ``WarmUp`` busy put
    and returns once ``State_RBV`` shows the warm-up (its completion is logged)."""

    backend = "EPICS"
    Options = EpicsSourceOptions

    def __init__(self, name: str, options: EpicsSourceOptions, connection: str | None = None, *,
                 clock: Clock | None = None) -> None:
        self.options = options
        try:
            states = [SourceState[state] for state in options.states]
        except KeyError as error:
            raise ConfigurationError(f"{name}.options.states: {error} is not one of "
                                     f"{[s.name for s in SourceState]}") from None
        super().__init__(name, options.capabilities(), clock)
        self.prefix = connection or ""
        self._states = states
        self._mode_of_value = {str(m.code or key): key for key, m in options.spot_modes.items()}
        self._ca = ChannelAccess({key: self.prefix + pv for key, pv in options.pvs.model_dump().items()},
                                 who=f"source {name!r}", timeout_s=options.connect_timeout_s,
                                 put_timeout_s=options.put_timeout_s,
                                 monitored=("voltage_rbv", "current_rbv", "state", "interlock", "xray_on_rbv"))

    @classmethod
    def from_config(cls, name: str, options: EpicsSourceOptions, connection: str | None,
                    context: DriverContext) -> EpicsSource:
        return cls(name, options, connection, clock=context.clock)

    # -- hooks -----------------------------------------------------------------------------------
    def _do_connect(self) -> None:
        configure_environment(self.options.addr_list, False if self.options.addr_list else None)
        self._ca.connect()

    def _do_close(self) -> None:
        self._ca.close()

    def _do_read_setpoints(self) -> tuple[float, float, str]:
        value = self._ca.get("focus", as_string=True, fresh=True)
        if value not in self._mode_of_value:
            raise self._error(ConfigurationError, f"PV {self._ca.names['focus']} is {value!r}, not one of the "
                                                  f"configured spot modes {sorted(self._mode_of_value)}")
        return (float(self._ca.get("voltage", fresh=True)), float(self._ca.get("current", fresh=True)),
                self._mode_of_value[value])

    def _do_set_voltage_kv(self, voltage_kv: float) -> None:
        self._ca.put("voltage", voltage_kv)

    def _do_set_current_ua(self, current_ua: float) -> None:
        self._ca.put("current", current_ua)

    def _do_set_spot_mode(self, spot_mode: str) -> None:
        self._ca.put("focus", str(self.options.spot_modes[spot_mode].code or spot_mode))

    def _do_beam_on(self) -> None:
        self._ca.put("xray_on", 1)
        state = self._read_state(fresh=True)
        if state is not SourceState.BEAM_ON:
            raise self._error(DeviceFaultError, f"X-rays did not come on: the IOC reports {state.value!r}"
                                                f"{self._fault_detail(state)}")

    def _do_beam_off(self) -> None:
        self._ca.put("xray_on", 0)

    def _do_warm_up(self) -> None:
        done: list[bool] = []
        self._ca.put("warm_up", 1, wait=False, callback=lambda: (done.append(True), log.info(
            "source %r: warm-up finished (WarmUp put completed)", self.name)))
        states = {self._states.index(SourceState.WARMING_UP)} if SourceState.WARMING_UP in self._states else set()
        self._ca.wait_until("state", lambda index: done or int(index) in states,
                            self.options.warm_up_start_timeout_s)

    def _do_reset(self) -> None:
        self._ca.put("fault_reset", 1)

    def _read_state(self, fresh: bool = False) -> SourceState:
        index = int(self._ca.get("state", fresh=fresh))
        if not 0 <= index < len(self._states):
            raise self._error(ConfigurationError, f"PV {self._ca.names['state']} = {index}: no SourceState "
                                                  f"configured for it (options.states)")
        return self._states[index]

    def _fault_detail(self, state: SourceState) -> str:
        return f" ({self._ca.get('fault', as_string=True, fresh=True)})" if state is SourceState.FAULT else ""

    def _do_read_state(self) -> SourceState:
        return self._read_state(fresh=True)

    def _do_read_voltage_kv(self) -> float:
        return float(self._ca.get("voltage_rbv"))

    def _do_read_current_ua(self) -> float:
        return float(self._ca.get("current_rbv"))

    def _do_read_interlock_closed(self) -> bool:
        return int(self._ca.get("interlock", fresh=True)) == self.options.interlock_closed_value

    def _do_describe(self) -> dict[str, Any]:
        description = {"prefix": self.prefix, **super()._do_describe()}
        fault = self._ca.get("fault", as_string=True)
        if fault:
            description["fault"] = fault
        return description
