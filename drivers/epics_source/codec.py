"""The X-ray source's Channel Access vocabulary, shared by the driver and the simulated IOC
(``microct.simulators.epics_ioc``), so that neither can drift from the other. Pure: no I/O.

The PV names themselves are defaults a site overrides (``models.EpicsPVNames``); what is fixed is the
meaning of the values (docs/protocols/epics-xray-source.md, "A default scheme"):

- ``XrayOn`` / ``XrayOn_RBV``: enum Off, On (a put of 1 requests the beam);
- ``Interlock_RBV``: enum Closed, Open;
- ``State_RBV``: enum, one string per ``SourceState`` (``STATE_STRINGS``), in the order of a states table
  (``models.DEFAULT_STATES`` unless configured);
- ``FocusMode`` / ``FocusMode_RBV``: enum, one string per spot mode: the mode's ``code``, else its name;
- ``FaultReset``, ``WarmUp``: a put of 1 acts (``WarmUp`` is a busy record: its put completes when the
  warm-up has ended).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from microct.driverkit import SourceState, SpotMode

OFF_ON = ("Off", "On")
"""``XrayOn`` / ``XrayOn_RBV`` enum strings, by index."""
BEAM_OFF, BEAM_ON = 0, 1
"""``XrayOn`` values."""
INTERLOCK_STRINGS = ("Closed", "Open")
"""``Interlock_RBV`` enum strings, by index."""
INTERLOCK_CLOSED = INTERLOCK_STRINGS.index("Closed")
"""``Interlock_RBV`` index meaning closed (the driver's default ``interlock_closed_value``)."""
FAULT_RESET = 1
"""Put to ``FaultReset`` to clear a fault."""
WARM_UP_START = 1
"""Put to ``WarmUp`` to start the warm-up."""
STATE_STRINGS: Mapping[SourceState, str] = {
    SourceState.WARMUP_NEEDED: "Warm-up needed", SourceState.WARMING_UP: "Warming up",
    SourceState.STANDBY: "Standby", SourceState.BEAM_ON: "On", SourceState.FAULT: "Fault",
    SourceState.NOT_READY: "Not ready"}
"""The ``State_RBV`` enum string of each state."""


def state_strings(states: Sequence[SourceState]) -> tuple[str, ...]:
    """``State_RBV``'s enum strings for a states table (index → SourceState)."""
    return tuple(STATE_STRINGS[state] for state in states)


def state_at(index: int, states: Sequence[SourceState]) -> SourceState | None:
    """The SourceState a ``State_RBV`` index stands for in ``states``; None if the table has no such index."""
    return states[index] if 0 <= index < len(states) else None


def focus_value(name: str, mode: SpotMode) -> str:
    """The ``FocusMode`` enum string that selects spot mode ``name``: its ``code``, else the name."""
    return str(mode.code or name)


def spot_modes_by_value(spot_modes: Mapping[str, SpotMode]) -> dict[str, str]:
    """``FocusMode`` enum string → spot-mode name, for every mode of ``spot_modes``."""
    return {focus_value(name, mode): name for name, mode in spot_modes.items()}
