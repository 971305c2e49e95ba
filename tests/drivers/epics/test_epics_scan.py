"""A whole CT scan over Channel Access (configs/sim-epics.toml): the PV-mapped source and two motor
records, each served by its own simulated IOC."""

from __future__ import annotations

import os
import tomllib
from importlib.resources import files

import h5py
import pytest

from microct.config import parse_config
from microct.devices import SourceState
from microct.instruments import build_instruments
from microct.sequencer import run_scan
from microct.simulators.axis import SimulatedAxisOptions
from microct.simulators.epics_ioc import start_ioc
from microct.simulators.epics_motor_ioc import start_motor_ioc
from microct.simulators.source import SimulatedSourceOptions

PORTS = {role: int(port) for role, port in (item.split("=") for item in os.environ["MICROCT_TEST_IOC_PORTS"].split())}


@pytest.fixture
def iocs():
    tube_ioc, tube = start_ioc("SCAN:XRAY:", PORTS["scan_source"], SimulatedSourceOptions(
        warmed_up=True, ramp_kv_per_s=1e4, ramp_ua_per_s=1e5))
    rotation_ioc, _ = start_motor_ioc("SCAN:ROT:m1", PORTS["scan_rotation"], SimulatedAxisOptions(
        unit="deg", max_velocity=720.0, acceleration=1e5))
    sample_ioc, _ = start_motor_ioc("SCAN:SMP:m2", PORTS["scan_sample_out"], SimulatedAxisOptions(
        unit="mm", max_velocity=100.0, acceleration=1e4), high_limit=100.0, low_limit=-100.0)
    yield tube
    for handle in (tube_ioc, rotation_ioc, sample_ioc):
        handle.stop()


def test_full_scan_over_channel_access(iocs, tmp_path):
    data = tomllib.loads(files("microct.configs").joinpath("sim-epics.toml").read_text())
    # names no other test's IOC serves: pyepics keeps one channel per PV name for the whole session
    data["source"]["connection"] = "SCAN:XRAY:"
    data["rotation"]["connection"], data["sample_out"]["connection"] = "SCAN:ROT:m1", "SCAN:SMP:m2"
    data["scan"].update(n_projections=12, exposure_s=0.01, n_darks=3, n_flats=3, settle_s=0.0, stable_hold_s=0.1,
                        sample_out_position_mm=5.0)
    config = parse_config(data)
    out = tmp_path / "epics.nxs"
    result = run_scan(config, build_instruments(config), out)
    assert (result.darks, result.flats, result.projections) == (3, 3, 12)
    with h5py.File(out, "r") as f:
        assert f["entry/logs/status"][()].decode() == "complete"
        keys = f["entry/instrument/detector/image_key"][()]
        angles = f["entry/sample/rotation_angle"][()][keys == 0]
        current = f["entry/control/data"][()][keys == 0]
    assert angles == pytest.approx([30.0 * i for i in range(12)], abs=0.01)
    assert current == pytest.approx(100.0, abs=1.0)
    assert iocs.read_state() is SourceState.STANDBY  # the beam went off at the end
