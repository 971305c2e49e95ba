"""Homing before a scan (``microct.homing``) on the in-process simulators: each ``home`` setting, a device
that cannot tell, ``force``, the time-out, a failed homing, and the events a scan file keeps."""

from __future__ import annotations

import logging

import h5py
import pytest

from microct.config import parse_config
from microct.errors import ConfigurationError, DeviceFaultError, DeviceStateError, DeviceTimeoutError, ScanAborted
from microct.homing import home_axes
from microct.instruments import build_instruments
from microct.sequencer import run_scan
from microct.simulators.axis import SimulatedAxis

UNREFERENCED = {"options": {"referenced": False, "initial_position": 7.0, "home_position": 0.0}}
"""A sim-axis just powered up: no reference, 7 units from home."""


@pytest.fixture
def connected(scan_data):
    """connected(overrides) -> (config, instruments): the sequencer tests' small sim.toml scan with
    ``overrides``, both axes connected (closed afterwards)."""
    built = []

    def connect(overrides: dict):
        config = parse_config(scan_data(overrides))
        instruments = build_instruments(config)
        built.append(instruments)
        for axis in (instruments.rotation, instruments.sample_out):
            axis.connect()
        return config, instruments

    yield connect
    for instruments in built:
        instruments.close()


def events():
    """An event recorder: ``recorder(message, level)``, with the calls in ``recorder.calls``."""
    calls: list[tuple[str, int]] = []

    def record(message: str, level: int) -> None:
        calls.append((message, level))

    record.calls = calls  # type: ignore[attr-defined]
    return record


def test_if_needed_homes_only_the_axis_without_a_reference(connected):
    config, inst = connected({"rotation": UNREFERENCED})
    event = events()
    messages = home_axes(inst, config, event)
    assert inst.rotation.read_referenced() is True
    assert inst.rotation.read_position() == pytest.approx(0.0)
    assert [m for m, _ in event.calls] == messages
    assert messages[0].startswith("rotation: homing (the stage reports no position reference)")
    assert messages[1].startswith("rotation: homed in ") and messages[1].endswith("now at 0 deg")
    assert messages[2] == "sample_out: not homed: the stage reports a position reference"
    assert all(level == logging.INFO for _, level in event.calls)


def test_always_homes_a_referenced_axis_and_never_leaves_an_unreferenced_one_with_a_warning(connected):
    config, inst = connected({"rotation": {"home": "always", "options": {"initial_position": 5.0}},
                              "sample_out": {"home": "never", **UNREFERENCED}})
    event = events()
    home_axes(inst, config, event)
    assert inst.rotation.read_position() == pytest.approx(0.0)  # homed although it was referenced
    assert inst.sample_out.read_position() == pytest.approx(7.0)  # not moved
    assert inst.sample_out.read_referenced() is False
    (warning, level), = [call for call in event.calls if call[0].startswith("sample_out")]
    assert level == logging.WARNING
    assert "home = \"never\"" in warning and "relative to an arbitrary zero" in warning


def test_a_device_that_cannot_tell_is_not_homed_and_the_event_says_so(connected, monkeypatch):
    monkeypatch.setattr(SimulatedAxis, "_do_read_referenced", lambda axis: None)
    config, inst = connected({"rotation": UNREFERENCED})
    event = events()
    home_axes(inst, config, event)
    assert inst.rotation.read_position() == pytest.approx(7.0)
    assert event.calls[0] == ("rotation: not homed: the stage cannot tell whether it has a position reference "
                              "(home = \"always\" in [rotation] homes it at every scan)", logging.INFO)


def test_force_homes_every_axis_but_the_never_ones_and_roles_choose_the_axes(connected):
    config, inst = connected({"rotation": {"options": {"initial_position": 5.0}},
                              "sample_out": {"home": "never", "options": {"initial_position": 3.0}}})
    messages = home_axes(inst, config, events(), force=True)
    assert messages[0] == "rotation: homing (on request), for up to 120 s"
    assert inst.rotation.read_position() == pytest.approx(0.0)
    assert inst.sample_out.read_position() == pytest.approx(3.0)
    assert messages[-1] == "sample_out: not homed (home = \"never\"); the stage reports a position reference"
    inst.rotation.move_to(4.0)
    assert home_axes(inst, config, events(), force=True, roles=["sample_out"]) == messages[-1:]
    assert inst.rotation.read_position() == pytest.approx(4.0)


def test_a_homing_past_home_timeout_s_stops_the_axis_and_raises(connected):
    config, inst = connected({"rotation": {"home": "always", "home_timeout_s": 0.5,
                                           "options": {"initial_position": 300.0, "max_velocity": 1.0}}})
    with pytest.raises(DeviceTimeoutError, match=r"axis 'rotation': homing not finished within home_timeout_s "
                                                  r"= 0.5 s; the axis was stopped"):
        home_axes(inst, config, events())
    assert not inst.rotation.moving
    assert inst.rotation.read_referenced() is False  # a stopped homing leaves no reference


def test_a_failed_homing_raises_the_drivers_error(connected):
    config, inst = connected({"rotation": UNREFERENCED})
    inst.rotation.refuse_moves = True
    with pytest.raises(DeviceStateError, match="home refused: the stage is parked"):
        home_axes(inst, config, events())


def test_a_homing_that_leaves_no_reference_is_a_fault(connected, monkeypatch):
    config, inst = connected({"rotation": UNREFERENCED})
    monkeypatch.setattr(SimulatedAxis, "_do_read_referenced", lambda axis: False)
    with pytest.raises(DeviceFaultError, match="homing move ended but the stage still reports no position"):
        home_axes(inst, config, events())


def test_a_failed_homing_aborts_the_scan_before_the_beam_comes_on(make_scan, mocker):
    config, inst, out = make_scan({"rotation": UNREFERENCED})
    inst.rotation.refuse_moves = True
    beam_on = mocker.spy(type(inst.source), "_do_beam_on")
    with pytest.raises(ScanAborted) as aborted:
        run_scan(config, inst, out)
    assert isinstance(aborted.value.__cause__, DeviceStateError)
    assert not beam_on.called
    with h5py.File(out, "r") as f:
        assert f["entry/logs/status"][()].decode() == "aborted"
        assert f["entry/instrument/detector/data"].shape[0] == 0


def test_a_scans_events_record_the_homing(make_scan):
    config, inst, out = make_scan({"rotation": UNREFERENCED})
    run_scan(config, inst, out)
    with h5py.File(out, "r") as f:
        messages = [m.decode() for m in f["entry/logs/events/message"][()]]
    homing = [m for m in messages if m.startswith(("rotation:", "sample_out:"))]
    assert homing[0] == "rotation: homing (the stage reports no position reference), for up to 120 s"
    assert homing[1].startswith("rotation: homed in ")
    assert homing[2] == "sample_out: not homed: the stage reports a position reference"
    assert messages.index(homing[0]) < next(i for i, m in enumerate(messages) if m.startswith("beam on"))


def test_a_rotation_in_millimetres_is_refused_before_anything_connects(scan_data, mocker):
    connect = mocker.spy(SimulatedAxis, "connect")
    with pytest.raises(ConfigurationError, match=r"rotation.driver='sim-axis' is an axis in 'mm': the rotation "
                                                 r"must be in degrees"):
        build_instruments(parse_config(scan_data({"rotation": {"options": {"unit": "mm"}}})))
    assert not connect.called


@pytest.mark.parametrize("setting", ["sometimes", ""])
def test_an_unknown_home_setting_is_refused_naming_the_key(scan_data, setting):
    with pytest.raises(ConfigurationError, match=r"rotation.home="):
        parse_config(scan_data({"rotation": {"home": setting}}))
