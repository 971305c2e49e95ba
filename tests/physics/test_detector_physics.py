"""The virtual scanner obeys the physics of the product brief: focal-spot penumbra, Poisson noise, saturation."""

from __future__ import annotations

import math
import tomllib
from importlib.resources import files

import h5py
import numpy as np
import pytest
from scipy.optimize import curve_fit
from scipy.special import erf

from microct.clock import SimulatedClock
from microct.config import parse_config
from microct.geometry import Geometry
from microct.instruments import build_instruments
from microct.options import deep_merged
from microct.sequencer import run_scan
from microct.simulators.axis import SimulatedAxis, SimulatedAxisOptions
from microct.simulators.bench import Bench
from microct.simulators.detector import SimulatedDetector, SimulatedDetectorOptions
from microct.simulators.source import SimulatedSource, SimulatedSourceOptions

PITCH_UM = 50.0


def bench(magnification: float, psf_fwhm_um: float = 0.0, phantom: str = "edge", seed: int = 7):
    """A connected, warmed-up source, rotation, sample-out axis and detector (SOD 50 mm)."""
    clock = SimulatedClock()
    context = Bench(clock=clock, geometry=Geometry(50.0, 50.0 * magnification), seed=seed)
    source = SimulatedSource("source", SimulatedSourceOptions(warmed_up=True), clock, seed)
    rotation = SimulatedAxis("rotation", SimulatedAxisOptions(), clock)
    sample_out = SimulatedAxis("sample_out", SimulatedAxisOptions(unit="mm", max_velocity=100.0), clock)
    detector = SimulatedDetector("detector", SimulatedDetectorOptions(
        rows=160, columns=160, pixel_pitch_um=PITCH_UM, psf_fwhm_um=psf_fwhm_um, phantom=phantom), context)
    context.devices.update(source=source, rotation=rotation, sample_out=sample_out, detector=detector)
    for device in context.devices.values():
        device.connect()
    detector.set_exposure_s(0.2)
    return source, sample_out, detector


def beam(source, voltage_kv: float, current_ua: float, spot_mode: str) -> None:
    source.beam_off()
    source.configure(voltage_kv=voltage_kv, current_ua=current_ua, spot_mode=spot_mode)
    source.beam_on()
    source.clock.sleep(30.0)  # ramps done


def mean_frame(detector, n: int) -> np.ndarray:
    return np.mean([f.data for f in detector.acquire(n)], axis=0)


def transmission(source, sample_out, detector, n: int = 4) -> np.ndarray:
    """Flat- and dark-corrected image, as a user computes it."""
    image = mean_frame(detector, n)
    sample_out.move_to(40.0)
    flat = mean_frame(detector, n)
    sample_out.move_to(0.0)
    state = source.voltage_kv, source.current_ua, source.spot_mode
    source.beam_off()
    dark = mean_frame(detector, n)
    beam(source, *state)
    return (image - dark) / (flat - dark)


def edge_fwhm_um(image: np.ndarray) -> float:
    """Slanted-edge method: fit the edge line, bin the edge-spread function at 1/4 pixel against the
    distance to it, fit an error function; return the FWHM of the line-spread function (µm)."""
    rows, cols = image.shape
    low, high = np.percentile(image, 2), np.percentile(image, 98)
    centre = []
    for row in image[10:-10]:
        level = (low + high) / 2
        centre.append(np.interp(level, row, np.arange(cols)) if row[0] < row[-1] else
                      np.interp(level, row[::-1], np.arange(cols)[::-1]))
    slope, intercept = np.polyfit(np.arange(10, rows - 10), centre, 1)
    r, c = np.mgrid[0:rows, 0:cols]
    distance = (c - (slope * r + intercept)) / math.hypot(1.0, slope)
    near = np.abs(distance) < 40
    bins = np.round(distance[near] * 4) / 4
    order = np.unique(bins)
    esf = np.array([image[near][bins == b].mean() for b in order])

    def model(d, a, b, d0, sigma):
        return a + b * 0.5 * (1 + erf((d - d0) / (math.sqrt(2) * sigma)))

    (a, b, d0, sigma), _ = curve_fit(model, order, esf, p0=(esf[0], esf[-1] - esf[0], 0.0, 2.0))
    return abs(sigma) * 2 * math.sqrt(2 * math.log(2)) * PITCH_UM


@pytest.mark.parametrize("magnification", [10.0, 20.0, 40.0])
def test_edge_spread_matches_focal_spot_times_m_minus_1(magnification):
    source, sample_out, detector = bench(magnification)
    beam(source, 100.0, 250.0, "middle")  # 25 W: the spot is max(15, 0.8 × 25) = 20 µm
    expected = 20.0 * (magnification - 1)  # 180, 380, 780 µm at the detector
    measured = edge_fwhm_um(transmission(source, sample_out, detector))
    assert measured == pytest.approx(expected, rel=0.10)


def test_larger_spot_or_higher_power_widens_the_edge_as_modelled():
    source, sample_out, detector = bench(20.0, psf_fwhm_um=100.0)

    def width(kv, ua, mode):
        beam(source, kv, ua, mode)
        return edge_fwhm_um(transmission(source, sample_out, detector))

    def model(kv, ua, mode):  # spot penumbra and detector PSF add in quadrature
        spot = source.capabilities.spot_modes[mode].spot_size_at_um(kv * ua / 1000)
        return math.hypot(spot * 19, 100.0)

    small_low = width(100.0, 100.0, "small")  # 10 W: 8 µm spot
    middle_low = width(100.0, 100.0, "middle")  # the floor of 'middle': 15 µm
    middle_high = width(100.0, 300.0, "middle")  # 30 W: 24 µm
    large = width(100.0, 300.0, "large")  # 40 µm
    assert small_low < middle_low < middle_high < large
    for measured, setting in ((small_low, (100.0, 100.0, "small")), (middle_low, (100.0, 100.0, "middle")),
                              (middle_high, (100.0, 300.0, "middle")), (large, (100.0, 300.0, "large"))):
        assert measured == pytest.approx(model(*setting), rel=0.10)


@pytest.mark.parametrize("exposure_s", [0.05, 0.2, 0.8])  # about 1900, 7700 and 31 000 counts per pixel
def test_flat_field_noise_is_poisson_after_gain_correction(exposure_s):
    source, sample_out, detector = bench(10.0, psf_fwhm_um=150.0, phantom="spheres")
    detector.set_exposure_s(exposure_s)
    sample_out.move_to(40.0)  # open beam
    beam(source, 80.0, 100.0, "small")
    flats = np.array([f.data for f in detector.acquire(40)], float)
    source.beam_off()
    dark = mean_frame(detector, 40)
    beam(source, 80.0, 100.0, "small")
    gain = (flats.mean(axis=0) - dark) / (flats.mean() - dark.mean())  # the panel's gain map, as calibrated
    pair = [(f.data - dark) / gain for f in detector.acquire(2)]
    mean = (pair[0] + pair[1]).mean() / 2
    variance = np.var(pair[0] - pair[1]) / 2  # the difference cancels what is left of the fixed pattern
    assert mean == pytest.approx(detector.options.counts_per_ua_s * 0.8 ** 2 * 100.0 * exposure_s, rel=0.02)
    assert variance == pytest.approx(mean, rel=0.05)


@pytest.mark.parametrize("counts_per_ua_s, saturates", [(600.0, False), (2400.0, True)])
def test_saturation_is_reported_when_it_happens(tmp_path, counts_per_ua_s, saturates):
    """The default demo (about 19 000 open-beam counts) stays below 65 535; four times the yield saturates
    the open beam, and the scan's event log names the first saturated frame, once, and counts them all at the
    end."""
    data = deep_merged(tomllib.loads(files("microct.configs").joinpath("sim.toml").read_text()), {
        "detector": {"options": {"counts_per_ua_s": counts_per_ua_s}},
        "scan": {"n_projections": 4, "n_darks": 2, "n_flats": 2}})
    config = parse_config(data)
    out = tmp_path / "scan.nxs"
    run_scan(config, build_instruments(config), out)
    with h5py.File(out, "r") as f:
        saturated = (f["entry/instrument/detector/data"][()] == 65535).any(axis=(1, 2))
        events = [m.decode() for m in f["entry/logs/events/message"][()]]
    reports = [e for e in events if e.startswith("saturated pixels")]
    totals = [e for e in events if e.endswith("frames had saturated pixels")]
    assert saturated.any() == saturates
    assert len(reports) == len(totals) == saturates
    if saturates:
        assert reports[0].startswith(f"saturated pixels in flat frame {np.flatnonzero(saturated)[0]}:")
        assert totals[0] == f"{saturated.sum()} of {len(saturated)} frames had saturated pixels"
