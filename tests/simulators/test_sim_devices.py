"""Behaviour of the in-process simulators beyond the device contracts.

These use the simulators' own test hooks (interlock, overload) and their
models (ramps, move profiles, detector physics and noise), all in simulated
time, so that what a scan of simulators produces can be trusted.
"""

import math
from dataclasses import dataclass

import numpy as np
import pytest

from microct.clock import SimulatedClock
from microct.devices.axis import move_duration_s
from microct.devices.source import SourceState
from microct.errors import DeviceStateError, InterlockError
from microct.geometry import Geometry
from microct.simulators.axis import SimulatedAxis, SimulatedAxisOptions
from microct.simulators.bench import Bench
from microct.simulators.detector import SimulatedDetector, SimulatedDetectorOptions
from microct.simulators.source import SimulatedSource, SimulatedSourceOptions


@pytest.fixture
def clock():
    return SimulatedClock(start_time=1_700_000_000.0)


# -- source --------------------------------------------------------------------------------------------------
def make_source(clock, **options) -> SimulatedSource:
    source = SimulatedSource("tube", SimulatedSourceOptions(**options), clock=clock, seed=11)
    source.connect()
    return source


@pytest.fixture
def cold_source(clock):
    source = make_source(clock)
    yield source
    source.close()


@pytest.fixture
def warm_source(clock):
    source = make_source(clock, warmed_up=True)
    source.configure(voltage_kv=100.0, current_ua=50.0, spot_mode="small")
    yield source
    source.close()


def refused_without_interlock_error(call):
    with pytest.raises(DeviceStateError) as info:
        call()
    assert not isinstance(info.value, InterlockError), f"not an interlock problem: {info.value}"
    return str(info.value)


def test_new_tube_needs_warm_up_and_refuses_beam(cold_source):
    assert cold_source.read_state() is SourceState.WARMUP_NEEDED
    message = refused_without_interlock_error(cold_source.beam_on)
    assert SourceState.WARMUP_NEEDED.value in message
    assert cold_source.read_voltage_kv() == 0.0


def test_warm_up_takes_warmup_s_of_simulated_time(cold_source, clock):
    warmup_s = cold_source.options.warmup_s
    cold_source.warm_up()
    assert cold_source.read_state() is SourceState.WARMING_UP
    refused_without_interlock_error(cold_source.beam_on)
    clock.sleep(warmup_s - 1.0)
    assert cold_source.read_state() is SourceState.WARMING_UP
    clock.sleep(1.0)
    assert cold_source.read_state() is SourceState.STANDBY
    cold_source.beam_on()
    assert cold_source.read_state() is SourceState.BEAM_ON


def test_opening_interlock_drops_beam_and_blocks_beam_on(warm_source, clock):
    warm_source.beam_on()
    clock.sleep(20.0)
    assert warm_source.read_voltage_kv() > 90.0
    warm_source.set_interlock(False)
    assert warm_source.read_state() is SourceState.NOT_READY
    assert not warm_source.read_interlock_closed()
    assert warm_source.read_voltage_kv() == 0.0 and warm_source.read_current_ua() == 0.0
    with pytest.raises(InterlockError):
        warm_source.beam_on()
    with pytest.raises(InterlockError):
        warm_source.warm_up()
    warm_source.set_interlock(True)
    assert warm_source.read_state() is SourceState.STANDBY, "closing the interlock must not bring the beam back"
    warm_source.beam_on()
    assert warm_source.read_state() is SourceState.BEAM_ON


def test_opening_interlock_during_warm_up_abandons_it(cold_source, clock):
    cold_source.warm_up()
    clock.sleep(cold_source.options.warmup_s / 2)
    cold_source.set_interlock(False)
    cold_source.set_interlock(True)
    clock.sleep(cold_source.options.warmup_s)
    assert cold_source.read_state() is SourceState.WARMUP_NEEDED


def test_readbacks_fall_to_zero_when_warm_up_ends(cold_source, clock):
    cold_source.warm_up()
    clock.sleep(cold_source.options.warmup_s + 1.0)
    assert cold_source.read_voltage_kv() == 0.0, "after warm-up the tube waits in standby, X-rays off"
    assert cold_source.read_state() is SourceState.STANDBY


def test_overload_latches_fault_until_reset(warm_source, clock):
    warm_source.beam_on()
    clock.sleep(20.0)
    warm_source.trigger_overload()
    assert warm_source.read_state() is SourceState.FAULT
    assert warm_source.read_voltage_kv() == 0.0
    message = refused_without_interlock_error(warm_source.beam_on)
    assert SourceState.FAULT.value in message
    clock.sleep(60.0)
    assert warm_source.read_state() is SourceState.FAULT, "a fault stays latched until reset()"
    warm_source.reset()
    assert warm_source.read_state() is SourceState.STANDBY
    warm_source.beam_on()
    assert warm_source.read_state() is SourceState.BEAM_ON


def test_kv_and_current_ramp_at_their_rates(warm_source, clock):
    kv_rate, ua_rate = warm_source.options.ramp_kv_per_s, warm_source.options.ramp_ua_per_s
    kv_ramp_s, ua_ramp_s = 100.0 / kv_rate, 50.0 / ua_rate
    warm_source.beam_on()
    clock.sleep(ua_ramp_s / 2)
    assert warm_source.read_current_ua() == pytest.approx(25.0, abs=0.3)
    clock.sleep(kv_ramp_s / 2 - ua_ramp_s / 2)
    assert warm_source.read_voltage_kv() == pytest.approx(50.0, abs=0.2)
    assert warm_source.read_current_ua() == pytest.approx(50.0, abs=0.3)
    clock.sleep(kv_ramp_s / 2)
    assert warm_source.read_voltage_kv() == pytest.approx(100.0, abs=0.2)
    clock.sleep(kv_ramp_s)
    assert warm_source.read_voltage_kv() == pytest.approx(100.0, abs=0.2), "the ramp stops at the set-point"


def test_setpoint_change_with_beam_on_ramps_from_present_value(warm_source, clock):
    warm_source.beam_on()
    clock.sleep(20.0)
    warm_source.set_voltage_kv(60.0)
    clock.sleep(20.0 / warm_source.options.ramp_kv_per_s)
    assert warm_source.read_voltage_kv() == pytest.approx(80.0, abs=0.2)
    clock.sleep(20.0 / warm_source.options.ramp_kv_per_s)
    assert warm_source.read_voltage_kv() == pytest.approx(60.0, abs=0.2)


def test_beam_off_drops_readbacks_at_once(warm_source, clock):
    warm_source.beam_on()
    clock.sleep(20.0)
    warm_source.beam_off()
    assert warm_source.read_voltage_kv() == 0.0
    assert warm_source.read_current_ua() == 0.0
    assert warm_source.read_state() is SourceState.STANDBY


# -- axis ------------------------------------------------------------------------------------------------------
def make_axis(clock, **options) -> SimulatedAxis:
    options = {"unit": "deg", "max_velocity": 90.0, "acceleration": 360.0, "low_limit": -400.0,
               "high_limit": 400.0, **options}
    axis = SimulatedAxis("rotation", SimulatedAxisOptions(**options), clock=clock)
    axis.connect()
    return axis


@pytest.fixture
def axis(clock):
    axis = make_axis(clock)
    yield axis
    axis.close()


def test_start_move_returns_at_once(axis, clock):
    t0 = clock.monotonic()
    status = axis.start_move_to(180.0)
    assert clock.monotonic() == t0
    assert not status.done
    assert axis.read_position() == 0.0


# distance (deg), velocity (deg/s), expected duration (s) at 360 deg/s²: trapezoid d/v + v/a, triangle 2·sqrt(d/a)
@pytest.mark.parametrize("distance, velocity, expected_s", [
    (180.0, 90.0, 180.0 / 90.0 + 90.0 / 360.0),
    (-270.0, 90.0, 270.0 / 90.0 + 90.0 / 360.0),
    (180.0, 45.0, 180.0 / 45.0 + 45.0 / 360.0),
    (10.0, 90.0, 2.0 * math.sqrt(10.0 / 360.0)),  # too short to reach 90 deg/s
])
def test_move_duration_follows_trapezoidal_profile(axis, clock, distance, velocity, expected_s):
    assert move_duration_s(distance, velocity, 360.0) == pytest.approx(expected_s)
    axis.set_velocity(velocity)
    status = axis.start_move_to(distance)
    clock.sleep(expected_s - 1e-6)
    assert not status.done
    assert abs(axis.read_position() - distance) > 0
    clock.sleep(2e-6)
    assert status.done
    assert axis.read_position() == pytest.approx(distance)
    t0 = clock.monotonic()
    axis.move_to(0.0)
    assert clock.monotonic() - t0 == pytest.approx(expected_s)


def test_position_follows_profile_during_move(axis, clock):
    axis.start_move_to(180.0)  # accelerates for 0.25 s, cruises at 90 deg/s, 2.25 s in all
    clock.sleep(0.25)
    assert axis.read_position() == pytest.approx(0.5 * 360.0 * 0.25 ** 2)
    clock.sleep(0.75)
    assert axis.read_position() == pytest.approx(11.25 + 90.0 * 0.75)
    clock.sleep(0.125)
    assert axis.read_position() == pytest.approx(90.0), "halfway in distance at half the duration"


def test_stop_mid_move_halts_and_the_waiter_learns_it(axis, clock):
    status = axis.start_move_to(180.0)
    clock.sleep(1.0)
    axis.stop()
    here = axis.read_position()
    assert here == pytest.approx(78.75)
    clock.sleep(5.0)
    assert axis.read_position() == here
    assert status.done
    with pytest.raises(DeviceStateError, match="stopped"):
        status.wait()


def test_new_move_takes_over_a_running_one(axis, clock):
    first = axis.start_move_to(180.0)
    clock.sleep(1.0)
    second = axis.start_move_to(0.0)
    with pytest.raises(DeviceStateError):
        first.wait()
    second.wait()
    assert axis.read_position() == pytest.approx(0.0)


def test_home_moves_to_home_position_in_profile_time(clock):
    axis = make_axis(clock, initial_position=100.0, home_position=10.0)
    t0 = clock.monotonic()
    axis.home()
    assert axis.read_position() == pytest.approx(10.0)
    assert clock.monotonic() - t0 == pytest.approx(move_duration_s(90.0, 90.0, 360.0))
    axis.close()


# -- detector ---------------------------------------------------------------------------------------------------
@dataclass
class Rig:
    clock: SimulatedClock
    source: SimulatedSource
    rotation: SimulatedAxis
    sample_out: SimulatedAxis
    detector: SimulatedDetector

    def beam_on(self, current_ua: float, voltage_kv: float = 100.0) -> None:
        self.source.configure(voltage_kv=voltage_kv, current_ua=current_ua)
        self.source.beam_on()
        self.clock.sleep(20.0)  # kV and µA ramps are over

    def mean_frame(self, n: int) -> np.ndarray:
        return np.mean([frame.data for frame in self.detector.acquire(n)], axis=0, dtype=np.float64)

    def open_beam_mean(self, current_ua: float, voltage_kv: float = 100.0) -> float:
        """Documented model: counts_per_ua_s × (kV/100)² × µA × exposure."""
        opts = self.detector.options
        return opts.counts_per_ua_s * (voltage_kv / 100.0) ** 2 * current_ua * self.detector.exposure_s


SAMPLE_OUT_MM = 100.0  # far beyond the 6 mm test object and the ±6.4 mm field of view at the axis


@pytest.fixture
def rig(clock):
    source = SimulatedSource("source", SimulatedSourceOptions(warmed_up=True), clock=clock, seed=21)
    rotation = SimulatedAxis("rotation", SimulatedAxisOptions(unit="deg", low_limit=-400.0, high_limit=400.0),
                             clock=clock)
    sample_out = SimulatedAxis("sample_out", SimulatedAxisOptions(unit="mm", max_velocity=50.0, acceleration=200.0,
                                                                  low_limit=0.0, high_limit=150.0), clock=clock)
    context = Bench(clock=clock, geometry=Geometry(100.0, 500.0), seed=22,
                            devices={"source": source, "rotation": rotation, "sample_out": sample_out})
    # 64 × 1 mm pixels at M = 5: the whole 12 mm test object is in view
    detector = SimulatedDetector("detector", SimulatedDetectorOptions(rows=64, columns=64, pixel_pitch_um=1000.0,
                                                                      readout_s=0.05), context)
    rig = Rig(clock, source, rotation, sample_out, detector)
    for device in (source, rotation, sample_out, detector):
        device.connect()
    source.configure(spot_mode="small")
    yield rig
    for device in (detector, sample_out, rotation, source):
        device.close()


def test_beam_off_frames_are_darks(rig):
    opts = rig.detector.options
    means = {}
    for exposure_s in (0.1, 10.0):
        rig.detector.set_exposure_s(exposure_s)
        means[exposure_s] = rig.mean_frame(4).mean()
        assert means[exposure_s] == pytest.approx(opts.dark_offset + opts.dark_current_per_s * exposure_s, abs=1.0)
    assert means[10.0] - means[0.1] == pytest.approx(opts.dark_current_per_s * 9.9, abs=0.5)


def test_detector_without_source_gives_darks(clock):
    detector = SimulatedDetector("detector", SimulatedDetectorOptions(rows=32, columns=32),
                                 Bench(clock=clock, seed=3))
    with detector:
        detector.set_exposure_s(1.0)
        mean = detector.acquire(2)[0].data.mean()
    assert mean == pytest.approx(detector.options.dark_offset + detector.options.dark_current_per_s, abs=2.0)


@pytest.mark.parametrize("current_ua, exposure_s, voltage_kv", [
    (20.0, 0.1, 100.0), (40.0, 0.1, 100.0), (20.0, 0.2, 100.0), (40.0, 0.1, 50.0)])
def test_open_beam_counts_scale_linearly_with_current_and_exposure(rig, current_ua, exposure_s, voltage_kv):
    rig.sample_out.move_to(SAMPLE_OUT_MM)
    rig.detector.set_exposure_s(exposure_s)
    dark = rig.mean_frame(4).mean()
    rig.beam_on(current_ua, voltage_kv)
    signal = rig.mean_frame(4).mean() - dark
    assert signal == pytest.approx(rig.open_beam_mean(current_ua, voltage_kv), rel=0.02)


def column_profile(frame: np.ndarray, dark: np.ndarray) -> np.ndarray:
    return (frame - dark).mean(axis=0)


def test_sample_out_far_gives_flat_field(rig):
    rig.detector.set_exposure_s(1.0)
    dark = rig.mean_frame(4)
    rig.beam_on(20.0)
    sample_in = column_profile(rig.mean_frame(2), dark)
    rig.sample_out.move_to(SAMPLE_OUT_MM)
    sample_out = column_profile(rig.mean_frame(2), dark)
    expected = rig.open_beam_mean(20.0)
    assert sample_out.mean() == pytest.approx(expected, rel=0.02)
    assert (sample_out.max() - sample_out.min()) / sample_out.mean() < 0.03, "no object in a flat field"
    assert sample_in.min() < 0.7 * expected, "with the sample in, the object absorbs"


def line_integrals(frame, flat, dark):
    return -np.log((frame - dark) / (flat - dark))


def test_projection_changes_with_rotation(rig):
    rig.detector.set_exposure_s(1.0)
    dark = rig.mean_frame(4)
    rig.beam_on(50.0)
    rig.sample_out.move_to(SAMPLE_OUT_MM)
    flat = rig.mean_frame(4)
    rig.sample_out.move_to(0.0)
    projections = {}
    for label, angle in (("0a", 0.0), ("0b", 0.0), ("90", 90.0), ("360", 360.0)):
        rig.rotation.move_to(angle)
        projections[label] = line_integrals(rig.mean_frame(1), flat, dark)
    assert projections["0a"].max() > 0.5, "the object attenuates"
    assert np.abs(projections["0a"] - projections["0b"]).max() < 0.1, "same angle: only noise differs"
    assert np.abs(projections["0a"] - projections["90"]).max() > 0.5, "the off-centre inclusions move"
    assert np.abs(projections["0a"] - projections["360"]).max() < 0.1, "a full turn gives the same projection"


def test_flat_field_noise_is_poisson(rig):
    """Photon transfer: with the fixed patterns removed, the variance of the counts equals their mean.

    The dark map and the gain map are measured (many frames, so that their own
    noise adds < 1 %), then each test frame is corrected as (frame − dark) / gain.
    """
    rig.sample_out.move_to(SAMPLE_OUT_MM)
    rig.detector.set_exposure_s(0.1)
    dark = rig.mean_frame(50)
    rig.beam_on(20.0)  # about 1200 counts per pixel
    open_beam = rig.mean_frame(200) - dark
    gain = open_beam / open_beam.mean()
    ratios = []
    for frame in rig.detector.acquire(10):
        corrected = (frame.data - dark) / gain
        ratios.append(corrected.var() / corrected.mean())
    # read noise (3 counts) adds about 9 / 1200 to the ratio
    assert np.mean(ratios) == pytest.approx(1.0, rel=0.10), ratios


def test_bright_frames_clip_at_bit_depth(rig):
    rig.detector.set_exposure_s(60.0)
    rig.beam_on(50.0)
    (frame,) = rig.detector.acquire(1)
    assert int(frame.data.max()) == rig.detector.saturation_value
    assert frame.data.dtype == np.uint16


def test_frames_are_numbered_and_spaced_by_exposure_and_readout(rig):
    rig.detector.set_exposure_s(0.5)
    frames = rig.detector.acquire(3) + rig.detector.acquire(2)
    assert [frame.frame_number for frame in frames] == list(range(frames[0].frame_number,
                                                                  frames[0].frame_number + 5))
    spacing = np.diff([frame.timestamp for frame in frames])
    assert spacing == pytest.approx(0.5 + rig.detector.options.readout_s)
