"""Defaults of the EPICS X-ray source that configuration may override: the PV names after the prefix
(``[source.options.pvs]``) and the ``State_RBV`` table (``[source.options] states``).

Source of both: microct's default PV scheme (docs/protocols/epics-xray-source.md, "A default scheme"). No
community-standard record set exists for X-ray tubes: a site's soft IOC has names of its own, so every
name here can be overridden; the simulated IOC (``microct.simulators.epics_ioc``) serves these defaults.
"""

from __future__ import annotations

from microct.driverkit import DriverOptions, SourceState


class EpicsPVNames(DriverOptions):
    """PV names after the prefix, by the driver's key (the default scheme); override any to match a site's IOC."""

    voltage: str = "HV"
    """kV set-point (float)."""
    voltage_rbv: str = "HV_RBV"
    """kV measured (float, monitored)."""
    current: str = "Current"
    """µA set-point (float)."""
    current_rbv: str = "Current_RBV"
    """µA measured (float, monitored)."""
    focus: str = "FocusMode"
    """Focal-spot mode set-point (enum: ``codec.focus_value`` of each mode)."""
    focus_rbv: str = "FocusMode_RBV"
    xray_on: str = "XrayOn"
    """Beam request (enum ``codec.OFF_ON``)."""
    xray_on_rbv: str = "XrayOn_RBV"
    state: str = "State_RBV"
    """The tube's state (enum, by ``DEFAULT_STATES`` index)."""
    interlock: str = "Interlock_RBV"
    """Door / interlock (enum ``codec.INTERLOCK_STRINGS``)."""
    power: str = "Power_RBV"
    """Target power (W)."""
    fault: str = "Fault_RBV"
    """The last fault (string; empty when none)."""
    fault_reset: str = "FaultReset"
    """Put ``codec.FAULT_RESET`` to clear a fault."""
    warm_up: str = "WarmUp"
    """Busy record: put ``codec.WARM_UP_START`` starts the warm-up; the put completes when it is done."""


DEFAULT_STATES: tuple[SourceState, ...] = (SourceState.WARMUP_NEEDED, SourceState.WARMING_UP, SourceState.STANDBY,
                                           SourceState.BEAM_ON, SourceState.FAULT, SourceState.NOT_READY)
"""``State_RBV`` enum index → SourceState: warm-up needed, warming up, standby, on, fault, not ready (the
default scheme's order)."""
