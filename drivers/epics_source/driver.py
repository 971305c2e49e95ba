"""The EPICS X-ray source driver: a tube behind a soft IOC, over Channel Access.

PV names are ``prefix`` (the ``connection`` string, e.g. ``CT:XRAY:``) plus a name from ``pvs``
(``models.EpicsPVNames``: the default scheme of docs/protocols/epics-xray-source.md, any of which
configuration can override). The IOC cannot tell the tube's ranges, spot modes and power limits:
they come from configuration too. A PV that does not connect is a CommunicationError naming it; a
lost IOC is a CommunicationError naming the PV read or written.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import Field

from microct.driverkit import (
    ChannelAccess,
    Clock,
    ConfigurationError,
    DeviceFaultError,
    DriverOptions,
    Finding,
    FindingLevel,
    SourceCapabilities,
    SourceState,
    SpotMode,
    XRaySource,
    configure_environment,
)
from microct.drivers.epics_source.codec import (
    BEAM_OFF,
    BEAM_ON,
    FAULT_RESET,
    INTERLOCK_CLOSED,
    WARM_UP_START,
    focus_value,
    spot_modes_by_value,
    state_at,
)
from microct.drivers.epics_source.models import DEFAULT_STATES, EpicsPVNames

log = logging.getLogger("microct.drivers.epics_source")

MONITORED = ("voltage_rbv", "current_rbv", "state", "interlock", "xray_on_rbv")
"""PV keys read from their monitors (the others are read from the IOC when needed)."""


class EpicsSourceOptions(DriverOptions):
    """``[source.options]`` of the ``epics-source`` driver."""

    voltage_range_kv: tuple[float, float] = Field(description="allowed kV set-points, low to high: the tube's, which "
                                                              "the IOC cannot report")
    current_range_ua: tuple[float, float] = Field(description="allowed µA set-points, low to high: the tube's, which "
                                                              "the IOC cannot report")
    spot_modes: dict[str, SpotMode] = Field(
        min_length=1, description="spot modes by name; code: the FocusMode enum string (default: the name)")
    pvs: EpicsPVNames = Field(default_factory=EpicsPVNames, description="PV names after the prefix (the connection), "
                              "by key; a key left out keeps microct's default scheme. Every one must exist: all are "
                              "connected at connect")
    states: tuple[str, ...] = Field(default=tuple(state.name for state in DEFAULT_STATES),
                                    description="SourceState names by State_RBV enum index")
    interlock_closed_value: int = Field(default=INTERLOCK_CLOSED, description="Interlock_RBV index meaning closed")
    addr_list: str | None = Field(default=None, description="EPICS_CA_ADDR_LIST; default: the environment's")
    connect_timeout_s: float = Field(default=2.0, gt=0, description="for every PV to connect at connect, and for "
                                     "each read's reply (s)")
    put_timeout_s: float = Field(default=5.0, gt=0, description="for a put-callback to complete (s)")
    warm_up_start_timeout_s: float = Field(default=2.0, gt=0, description="for State_RBV to show the warm-up (s)")

    def capabilities(self) -> SourceCapabilities:
        return SourceCapabilities(self.voltage_range_kv, self.current_range_ua, self.spot_modes)


class EpicsSource(XRaySource):
    """An X-ray source mapped onto EPICS PVs. Read-backs, state and interlock are monitored;
    set-points and actions are put-callback writes; ``warm_up`` starts the ``WarmUp`` busy put
    and returns once ``State_RBV`` shows the warm-up (its completion is logged). State and interlock
    are read from the IOC; the kV and µA read-backs from their monitors, except for the first read of
    each after ``refresh()``, which asks the IOC (a silent IOC sends no monitor update: its last one
    must not pass for a fresh reading; a silent IOC is then a DeviceTimeoutError)."""

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
        self._mode_of_value = spot_modes_by_value(options.spot_modes)
        self._ca = ChannelAccess({key: self.prefix + pv for key, pv in options.pvs.model_dump().items()},
                                 who=self.who, timeout_s=options.connect_timeout_s,
                                 put_timeout_s=options.put_timeout_s, monitored=MONITORED)
        self._ask_ioc: set[str] = set()  # read-backs whose next read asks the IOC (refresh())

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
        self._ca.put("focus", focus_value(spot_mode, self.options.spot_modes[spot_mode]))

    def _do_beam_on(self) -> None:
        self._ca.put("xray_on", BEAM_ON)
        state = self._read_state(fresh=True)
        if state is not SourceState.BEAM_ON:
            raise self._error(DeviceFaultError, f"X-rays did not come on: the IOC reports {state.value!r}"
                                                f"{self._fault_detail(state)}")

    def _do_beam_off(self) -> None:
        self._ca.put("xray_on", BEAM_OFF)

    def _do_warm_up(self) -> None:
        done: list[bool] = []
        self._ca.put("warm_up", WARM_UP_START, wait=False, callback=lambda: (done.append(True), log.info(
            "source %r: warm-up finished (WarmUp put completed)", self.name)))
        states = {self._states.index(SourceState.WARMING_UP)} if SourceState.WARMING_UP in self._states else set()
        self._ca.wait_until("state", lambda index: done or int(index) in states,
                            self.options.warm_up_start_timeout_s)

    def _do_reset(self) -> None:
        self._ca.put("fault_reset", FAULT_RESET)

    def _read_state(self, fresh: bool = False) -> SourceState:
        index = int(self._ca.get("state", fresh=fresh))
        state = state_at(index, self._states)
        if state is None:
            raise self._error(ConfigurationError, f"PV {self._ca.names['state']} = {index}: no SourceState "
                                                  f"configured for it (options.states)")
        return state

    def _fault_detail(self, state: SourceState) -> str:
        return f" ({self._ca.get('fault', as_string=True, fresh=True)})" if state is SourceState.FAULT else ""

    def _do_read_state(self) -> SourceState:
        return self._read_state(fresh=True)

    def _do_refresh(self) -> None:
        self._ask_ioc = {"voltage_rbv", "current_rbv"}

    def _readback(self, key: str) -> float:
        """A monitored read-back: its monitor, or the IOC for the first read after ``refresh()``."""
        value = float(self._ca.get(key, fresh=key in self._ask_ioc))
        self._ask_ioc.discard(key)
        return value

    def _do_read_voltage_kv(self) -> float:
        return self._readback("voltage_rbv")

    def _do_read_current_ua(self) -> float:
        return self._readback("current_rbv")

    def _do_read_interlock_closed(self) -> bool:
        return int(self._ca.get("interlock", fresh=True)) == self.options.interlock_closed_value

    def _do_check(self) -> list[Finding]:
        """The IOC's fault text (the ``fault`` PV), if any: an error while the state is FAULT, else a warning
        (a text left from an earlier fault)."""
        findings = super()._do_check()
        fault = self._ca.get("fault", as_string=True, fresh=True)
        if fault:
            level: FindingLevel = "error" if self._read_state(fresh=True) is SourceState.FAULT else "warning"
            findings.append(Finding(level, "fault", str(fault)))
        return findings

    def _do_describe(self) -> dict[str, Any]:
        description = {"prefix": self.prefix, **super()._do_describe()}
        fault = self._ca.get("fault", as_string=True)
        if fault:
            description["fault"] = fault
        return description
