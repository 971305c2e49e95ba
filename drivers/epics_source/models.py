"""Defaults of the EPICS X-ray source that configuration may override: the PV names after the prefix
(``[source.options.pvs]``) and the ``State_RBV`` table (``[source.options] states``).

Source of both: microct's default PV scheme (docs/protocols/epics-xray-source.md, "A default scheme"). No
community-standard record set exists for X-ray tubes: a site's soft IOC has names of its own, so every
name here can be overridden; the simulated IOC (``microct.simulators.epics_ioc``) serves these defaults.
"""

from __future__ import annotations

from pydantic import Field

from microct.driverkit import DriverOptions, SourceState


class EpicsPVNames(DriverOptions):
    """PV names after the prefix, by the driver's key (the default scheme); override any to match a site's IOC."""

    voltage: str = Field(default="HV", description="suffix of the kV set-point PV: float; written (put-callback) by "
                                                   "set_voltage_kv, read at connect")
    voltage_rbv: str = Field(default="HV_RBV", description="suffix of the measured-kV PV: float; read from its "
                                                           "monitor (from the IOC on the first read after refresh())")
    current: str = Field(default="Current", description="suffix of the µA set-point PV: float; written (put-callback) "
                                                        "by set_current_ua, read at connect")
    current_rbv: str = Field(default="Current_RBV", description="suffix of the measured-µA PV: float; read from its "
                                                                "monitor (from the IOC on the first read after "
                                                                "refresh())")
    focus: str = Field(default="FocusMode", description="suffix of the focal-spot mode set-point PV: enum, whose "
                                                        "string is the mode's code (default: its name); written by "
                                                        "set_spot_mode, read at connect")
    focus_rbv: str = Field(default="FocusMode_RBV", description="suffix of the focal-spot mode read-back PV: enum; "
                                                                "connected, but not read by the driver")
    xray_on: str = Field(default="XrayOn", description="suffix of the beam-request PV: enum Off/On; beam_on writes 1, "
                                                       "beam_off 0 (put-callback)")
    xray_on_rbv: str = Field(default="XrayOn_RBV", description="suffix of the beam read-back PV: enum Off/On; "
                                                               "connected and monitored, but not read (the state PV "
                                                               "tells whether the beam is on)")
    state: str = Field(default="State_RBV", description="suffix of the state PV: enum, read; its index maps to a "
                                                        "SourceState through the option states")
    interlock: str = Field(default="Interlock_RBV", description="suffix of the interlock PV: enum, read; closed when "
                                                                "its index equals interlock_closed_value")
    power: str = Field(default="Power_RBV", description="suffix of the target-power PV: float in W; connected, but "
                                                        "not read by the driver")
    fault: str = Field(default="Fault_RBV", description="suffix of the fault-text PV: string, read (empty when none) "
                                                        "and quoted in errors and describe()")
    fault_reset: str = Field(default="FaultReset", description="suffix of the fault-reset PV: int; reset() writes 1 "
                                                               "(put-callback)")
    warm_up: str = Field(default="WarmUp", description="suffix of the warm-up PV, a busy record: warm_up() writes 1 "
                                                       "and returns once the state PV shows the warm-up; the put "
                                                       "completes when the warm-up is done")


DEFAULT_STATES: tuple[SourceState, ...] = (SourceState.WARMUP_NEEDED, SourceState.WARMING_UP, SourceState.STANDBY,
                                           SourceState.BEAM_ON, SourceState.FAULT, SourceState.NOT_READY)
"""``State_RBV`` enum index → SourceState: warm-up needed, warming up, standby, on, fault, not ready (the
default scheme's order)."""
