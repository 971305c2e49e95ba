"""The X-ray source's PV vocabulary (``epics_source.codec`` / ``models``) and the simulated IOC built from it:
the IOC serves every default PV name with the enum strings the driver reads (no Channel Access traffic)."""

from __future__ import annotations

from microct.devices.source import SourceState, SpotMode
from microct.drivers.epics_source import codec
from microct.drivers.epics_source.models import DEFAULT_STATES, EpicsPVNames
from microct.simulators.epics_ioc import build
from microct.simulators.source import SimulatedSourceOptions

PREFIX = "CODEC:XRAY:"


def test_the_ioc_serves_every_default_pv_name_and_the_drivers_enums():
    source, ioc = build(PREFIX, SimulatedSourceOptions())
    try:
        names = {PREFIX + name for name in EpicsPVNames().model_dump().values()}
        assert names <= set(ioc.pvdb)
        states = ioc.pvdb[PREFIX + EpicsPVNames().state]
        assert tuple(states.enum_strings) == codec.state_strings(DEFAULT_STATES)
        assert tuple(ioc.pvdb[PREFIX + EpicsPVNames().xray_on].enum_strings) == codec.OFF_ON
        interlock = ioc.pvdb[PREFIX + EpicsPVNames().interlock]
        assert interlock.enum_strings[codec.INTERLOCK_CLOSED] == "Closed"
        assert tuple(ioc.pvdb[PREFIX + EpicsPVNames().focus].enum_strings) == tuple(source.capabilities.spot_modes)
    finally:
        source.close()


def test_every_source_state_has_a_state_rbv_string_and_the_default_table_covers_them():
    assert set(codec.STATE_STRINGS) == set(SourceState) == set(DEFAULT_STATES)
    assert codec.state_at(3, DEFAULT_STATES) is SourceState.BEAM_ON
    assert codec.state_at(len(DEFAULT_STATES), DEFAULT_STATES) is None and codec.state_at(-1, DEFAULT_STATES) is None


def test_focus_values_are_codes_where_given_and_names_otherwise():
    modes = {"small": SpotMode(power_limit_w=10, spot_size_um=5, code="Micro"),
             "large": SpotMode(power_limit_w=50, spot_size_um=40)}
    assert codec.focus_value("small", modes["small"]) == "Micro"
    assert codec.spot_modes_by_value(modes) == {"Micro": "small", "large": "large"}
