"""The resolution planner against hand calculations, and its time estimate against a simulated scan."""

from __future__ import annotations

import math
import tomllib
from importlib.resources import files

import h5py
import pytest

from microct.cli import main
from microct.config import load_config, parse_config
from microct.instruments import build_instruments
from microct.planner import plan_scan
from microct.sequencer import run_scan

SHIPPED = sorted(p.name for p in files("microct.configs").iterdir() if p.name.endswith(".toml"))


def shipped(name: str):
    return load_config(str(files("microct.configs").joinpath(name)))[0]


def test_hand_calculated_example():
    """SOD 50, SDD 1000 (M = 20), 100 µm pixels, 'middle' mode (15 µm floor, 0.8 µm/W) at 100 kV × 250 µA."""
    data = tomllib.loads(files("microct.configs").joinpath("sim.toml").read_text())
    data["geometry"].update(source_object_distance_mm=50.0, source_detector_distance_mm=1000.0)
    data["detector"]["options"]["pixel_pitch_um"] = 100.0
    data["scan"].update(voltage_kv=100.0, current_ua=250.0, spot_mode="middle", binning=1)
    config = parse_config(data)
    plan = plan_scan(config, build_instruments(config))
    # by hand: P = 25 W; f = max(15, 0.8 × 25 = 20) = 20 µm; U_g = 20 × 19 = 380 µm; U_d = 200 µm
    # R = sqrt(380² + 200²) / 20 = 429.42 / 20 = 21.47 µm; M_opt = 1 + (200/20)² = 101
    assert plan.magnification == pytest.approx(20.0)
    assert plan.voxel_size_um == pytest.approx(5.0)
    assert plan.power_w == pytest.approx(25.0)
    assert plan.focal_spot_um == pytest.approx(20.0)
    assert plan.geometric_unsharpness_um == pytest.approx(380.0)
    assert plan.detector_limited_resolution_um == pytest.approx(10.0)
    assert plan.effective_resolution_um == pytest.approx(21.471, abs=1e-3)
    assert plan.optimum_magnification == pytest.approx(101.0)
    assert plan.optimum_resolution_um == pytest.approx(200 * 20 / math.hypot(200, 20), abs=1e-6)
    assert plan.limited_by == "focal spot"
    assert plan.field_of_view_mm == pytest.approx((512 * 0.1 / 20, 512 * 0.1 / 20))
    # no smaller spot takes 25 W; R is within 8 % of the best (19.9 µm at M = 101); U_g < 2·U_d
    assert plan.warnings == ()


def test_wasteful_spot_mode_and_magnification_are_warned():
    data = tomllib.loads(files("microct.configs").joinpath("sim.toml").read_text())
    data["geometry"].update(source_object_distance_mm=5.0, source_detector_distance_mm=1000.0)  # M = 200
    data["scan"].update(voltage_kv=80.0, current_ua=100.0, spot_mode="large")  # 8 W fits 'small' too
    config = parse_config(data)
    plan = plan_scan(config, build_instruments(config))
    assert plan.focal_spot_um == pytest.approx(40.0)
    assert any("'small' allows this power with a 6.4 µm spot" in w for w in plan.warnings)
    # U_g = 40 × 199 = 7960 µm against U_d = 800 µm; U_g = U_d at M = 1 + 800/40 = 21
    assert any("focal-spot-limited" in w and "M = 21 gives" in w for w in plan.warnings)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_match_the_formulas(name):
    config = shipped(name)
    instruments = build_instruments(config)
    plan = plan_scan(config, instruments)
    scan, g = config.scan, config.geometry
    m = g.source_detector_distance_mm / g.source_object_distance_mm
    pitch = instruments.detector.capabilities.pixel_pitch_um * scan.binning  # the driver's own figure
    mode = instruments.source.capabilities.spot_modes[scan.spot_mode]  # the driver's model table
    power = scan.voltage_kv * scan.current_ua / 1000
    spot = max(mode.spot_size_um, mode.growth_um_per_w * power)
    assert plan.focal_spot_um == pytest.approx(spot)
    assert plan.voxel_size_um == pytest.approx(pitch / m)
    assert plan.effective_resolution_um == pytest.approx(math.sqrt((spot * (m - 1)) ** 2 + (2 * pitch) ** 2) / m)
    assert plan.optimum_magnification == pytest.approx(1 + (2 * pitch / spot) ** 2)


def test_scan_time_estimate_matches_a_simulated_scan(tmp_path):
    config = shipped("sim.toml")
    instruments = build_instruments(config)
    plan = plan_scan(config, instruments)
    out = tmp_path / "t.nxs"
    run_scan(config, instruments, out)
    with h5py.File(out, "r") as f:
        start = f["entry/instrument/detector/start_time"][()]
        keys = f["entry/instrument/detector/image_key"][()]
    projections = start[keys == 0]
    measured = (projections[-1] - projections[0]) / (len(projections) - 1)
    # by hand: a 2° step at 90 °/s and 360 °/s² is triangular, 2·sqrt(2/360) s; then 0.1 s settle, 0.5 s frame
    assert plan.projection_interval_s == pytest.approx(2 * math.sqrt(2 / 360) + 0.1 + 0.5)
    assert measured == pytest.approx(plan.projection_interval_s, rel=0.01)


def test_plan_command_prints_the_formula_and_the_numbers(capsys):
    assert main(["plan"]) == 0
    out = capsys.readouterr().out
    for fragment in ("magnification M = SDD/SOD", "effective resolution R", "optimum magnification",
                     "estimated scan time", "formula: R = sqrt((f·(M−1))² + (2·p)²) / M"):
        assert fragment in out
