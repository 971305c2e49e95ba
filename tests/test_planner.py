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


def sim_data() -> dict:
    return tomllib.loads(files("microct.configs").joinpath("sim.toml").read_text())


def plan_of(data: dict):
    config = parse_config(data)
    return plan_scan(config, build_instruments(config))


def test_hand_calculated_example():
    """SOD 50, SDD 1000 (M = 20), 100 µm pixels, 'middle' mode (15 µm floor, 0.8 µm/W) at 100 kV × 250 µA,
    a sample 2 mm across."""
    data = sim_data()
    data["geometry"].update(source_object_distance_mm=50.0, source_detector_distance_mm=1000.0)
    data["detector"]["options"]["pixel_pitch_um"] = 100.0
    data["scan"].update(voltage_kv=100.0, current_ua=250.0, spot_mode="middle", binning=1, sample_diameter_mm=2.0)
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
    assert plan.optimum_field_of_view_mm == pytest.approx(51.2 / 101)
    # the 2 mm sample fills the 51.2 mm wide detector at SOD = 1 × √(1 + (2000 / 51.2)²) = 39.0753 mm:
    # M = 1000 / 39.0753 = 25.5916, where R = √((20 × 24.5916)² + 200²) / 25.5916 = 20.7467 µm
    assert plan.largest_magnification_in_view == pytest.approx(25.5916, abs=1e-4)
    assert plan.best_magnification == pytest.approx(25.5916, abs=1e-4)
    assert plan.best_resolution_um == pytest.approx(20.7467, abs=1e-4)
    # no smaller spot takes 25 W; R is within 4 % of the best for the sample; U_g < 2·U_d
    assert plan.warnings == ()


def test_the_sample_bounds_the_magnification_advice():
    """sim.toml: M = 10, 256 columns of 400 µm (102.4 mm), 6.4 µm spot; M_opt = 1 + (800 / 6.4)² = 15 626."""
    data = sim_data()
    data["scan"].pop("sample_diameter_mm", None)
    unbounded = plan_of(data)
    assert unbounded.largest_magnification_in_view is None
    assert unbounded.best_magnification == pytest.approx(15626.0)
    assert unbounded.optimum_field_of_view_mm == pytest.approx(102.4 / 15626)  # 6.55 µm: out of reach
    (warning,) = unbounded.warnings
    assert "detector-limited" in warning and "set scan.sample_diameter_mm" in warning

    # 8.5 mm across: SOD = 4.25 × √(1 + (1000 / 102.4)²) = 41.7209 mm, M = 500 / 41.7209 = 11.9844, where
    # R = √((6.4 × 10.9844)² + 800²) / 11.9844 = 67.0107 µm; 80.21 µm at M = 10 is within 25 %: no warning
    data["scan"]["sample_diameter_mm"] = 8.5
    bounded = plan_of(data)
    assert bounded.largest_magnification_in_view == pytest.approx(11.9844, abs=1e-4)
    assert bounded.best_magnification == pytest.approx(11.9844, abs=1e-4)
    assert bounded.best_resolution_um == pytest.approx(67.0107, abs=1e-4)
    assert bounded.warnings == ()

    # 5 mm across at M = 5 (SOD 100): M_view = 500 / (2.5 × √(1 + 95.367)) = 20.3733, where
    # R = √((6.4 × 19.3733)² + 800²) / 20.3733 = 39.74 µm, against √((6.4 × 4)² + 800²) / 5 = 160.08 µm now
    data["geometry"]["source_object_distance_mm"] = 100.0
    data["scan"]["sample_diameter_mm"] = 5.0
    closer = plan_of(data)
    (warning,) = closer.warnings
    assert "M = 20.4 (the largest that keeps the 5 mm sample in view) gives R = 39.7 µm" in warning

    # 12 mm across at M = 10: M_view = 500 / (6 × 9.8167) = 8.4889, so the sample is cut off
    data["geometry"]["source_object_distance_mm"] = 50.0
    data["scan"]["sample_diameter_mm"] = 12.0
    (warning,) = plan_of(data).warnings
    assert "12 mm sample does not fit" in warning and "M ≤ 8.49 keeps it in view" in warning


def test_wasteful_spot_mode_and_magnification_are_warned():
    data = sim_data()
    data["scan"].pop("sample_diameter_mm", None)
    data["geometry"].update(source_object_distance_mm=5.0, source_detector_distance_mm=1000.0)  # M = 200
    data["scan"].update(voltage_kv=80.0, current_ua=100.0, spot_mode="large")  # 8 W fits 'small' too
    config = parse_config(data)
    plan = plan_scan(config, build_instruments(config))
    assert plan.focal_spot_um == pytest.approx(40.0)
    assert any("'small' allows this power with a 6.4 µm spot" in w for w in plan.warnings)
    # U_g = 40 × 199 = 7960 µm against U_d = 800 µm; U_g = U_d at M = 1 + 800/40 = 21
    assert any("focal-spot-limited" in w and "M = 21 gives" in w for w in plan.warnings)


# Worked by hand from each file and its drivers' tables: M = SDD/SOD; p = pitch × binning (µm);
# f = max(floor, growth × kV × µA / 1000) (µm); R = √((f(M−1))² + (2p)²) / M; M_opt = 1 + (2p/f)²;
# limited by the larger of f(M−1) and 2p; time = n × (move(360°/n) + settle + (skipped + averaged) × exposure)
# + stable_hold + rounds × darks × averaged × exposure + rounds × (2 × move(sample out) + settle + (skipped
# + flats × averaged) × exposure) + move(360° − step) back; moves trapezoidal (distance / v without an
# acceleration)
BY_HAND = {  # name: (M, p, f, R, M_opt, limited by, scan time s)
    # Spellman XRV160 'small' filament 400 µm fixed, 80 W; PILATUS 172 µm; U-651 720 °/s, L-509 20 mm/s
    "lab-camserver.example.toml": (10, 172, 400, 361.6398, 1.7396, "focal spot", 773.820),
    # Hamamatsu L10711 'middle' max(1, 0.5 × 8) = 4 µm; Dexela 74.8 µm; X-RSW60A 115 °/s, X-LSM100A 26 mm/s
    "lab-dexela.example.toml": (10, 74.8, 4, 15.3871, 1399.76, "detector", 1790.813),
    # max(5, 0.8 × 8) = 6.4 µm; 74.8 µm panel; SOD 60 / SDD 600; 90 °/s, 20 mm/s; 1 frame skipped, 20 darks/flats
    "lab-epics.example.toml": (10, 74.8, 6.4, 16.0306, 547.390625, "detector", 1554.547),
    "lab-serial.example.toml": (10, 100, 4, 20.3214, 2501, "detector", 1790.813),
    "lab-visa.example.toml": (10, 100, 400, 360.5551, 1.25, "focal spot", 773.820),
    "sim-camserver.toml": (10, 172, 6.4, 34.8789, 2890.0625, "detector", 9.907),
    "sim-dexela.toml": (5, 74.8, 6.4, 30.3549, 547.390625, "detector", 15.251),
    "sim-epics.toml": (10, 800, 6.4, 160.1036, 62501, "detector", 5.826),
    "sim-realtime.toml": (10, 800, 6.4, 160.1036, 62501, "detector", 15.715),
    "sim-serial.toml": (10, 800, 4, 160.0405, 160001, "detector", 13.291),  # Hamamatsu L10711 'middle'
    "sim-visa.toml": (10, 800, 400, 393.9543, 17, "focal spot", 9.026),  # Spellman XRV160 'small'
    # 180 × (2√(2/360) + 0.1 + 0.5) + 2 + 10 × 0.5 + (2 × 2.2 + 0.1 + 10 × 0.5) + (358/90 + 90/360) = 155.561 s
    "sim.toml": (10, 400, 6.4, 80.2071, 15626, "detector", 155.561),
}


def test_every_shipped_config_is_worked_by_hand():
    assert sorted(BY_HAND) == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_match_hand_calculations(name):
    m, pitch, spot, resolution, m_opt, limited_by, scan_time_s = BY_HAND[name]
    config = shipped(name)
    plan = plan_scan(config, build_instruments(config))
    assert plan.magnification == pytest.approx(m)
    assert plan.pixel_pitch_um == pytest.approx(pitch)
    assert plan.voxel_size_um == pytest.approx(pitch / m)
    assert plan.power_w == pytest.approx(config.scan.voltage_kv * config.scan.current_ua / 1000)
    assert plan.focal_spot_um == pytest.approx(spot)
    assert plan.geometric_unsharpness_um == pytest.approx(spot * (m - 1))
    assert plan.detector_unsharpness_um == pytest.approx(2 * pitch)
    assert plan.detector_limited_resolution_um == pytest.approx(2 * pitch / m)
    assert plan.effective_resolution_um == pytest.approx(resolution, abs=1e-4)
    assert plan.optimum_magnification == pytest.approx(m_opt, rel=1e-9)
    assert plan.limited_by == limited_by
    assert plan.scan_time_s == pytest.approx(scan_time_s, abs=1e-3)


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


def test_total_scan_time_estimate_matches_a_simulated_scan(tmp_path):
    """References at both ends, skipped and averaged frames; a warm tube whose ramps take no time (the
    estimate leaves out the warm-up and the ramp to the set-points)."""
    data = sim_data()
    data["source"]["options"].update(warmed_up=True, ramp_kv_per_s=1e6, ramp_ua_per_s=1e6)
    data["scan"].update(n_projections=30, references_at="both", frames_skipped=1, frames_averaged=2)
    config = parse_config(data)
    instruments = build_instruments(config)
    estimate_s = plan_scan(config, instruments).scan_time_s
    clock = instruments.source.clock
    start_s = clock.monotonic()
    run_scan(config, instruments, tmp_path / "t.nxs")
    assert clock.monotonic() - start_s == pytest.approx(estimate_s, rel=0.01)


@pytest.mark.parametrize("name", SHIPPED)
def test_plan_command_prints_the_formula_and_the_numbers(name, capsys):
    assert main(["plan", str(files("microct.configs").joinpath(name))]) == 0
    out = capsys.readouterr().out
    m, _, spot, resolution, m_opt, limited_by, scan_time_s = BY_HAND[name]
    for fragment in ("magnification M = SDD/SOD", "effective resolution R", "optimum magnification",
                     "estimated scan time", "formula: R = sqrt((f·(M−1))² + (2·p)²) / M",
                     f"{spot:.4g} µm", f"{resolution:.4g} µm", f"{m_opt:.4g} (R = ", limited_by,
                     f"{scan_time_s:.0f} s"):
        assert fragment in out, fragment
