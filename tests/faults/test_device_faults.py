"""Each kind of fault against the in-process simulators: it strikes exactly at its scheduled time, frame,
projection or move, does what the module docstring of microct.simulators.faults says, and nothing
happens otherwise."""

from __future__ import annotations

import errno

import h5py
import numpy as np
import pytest
from fault_helpers import EXPOSURE_S, SAMPLE_OUT_MM

from microct.clock import Clock
from microct.devices.axis import move_duration_s
from microct.devices.source import SourceState
from microct.errors import (
    CommunicationError,
    DeviceFaultError,
    DeviceStateError,
    DeviceTimeoutError,
    FrameLostError,
    InterlockError,
    MicroCTError,
    ProtocolError,
)
from microct.geometry import Geometry
from microct.nexus import FrameInfo, NXtomoWriter, ScanHeader
from microct.simulators.bench import Bench
from microct.simulators.detector import SimulatedDetector, SimulatedDetectorOptions
from microct.simulators.faults import FaultSchedule, WriterFaults
from microct.simulators.source import SimulatedSource, SimulatedSourceOptions

DARK_MEAN = 105.0  # dark offset + 1 s of dark current, counts


def hit_log(rig) -> list[tuple[float, str]]:
    return [(hit.time_s, hit.what) for hit in rig.schedule.hits]


# -- source: arc -------------------------------------------------------------------------------------------
def test_arc_at_frame_cuts_that_exposure_in_half_and_latches_fault_until_reset(make_rig):
    rig = make_rig([{"kind": "arc", "device": "source", "at_frame": 2}])
    rig.beam_on()
    full, full2, arc_frame, after = rig.means(4)
    assert full == pytest.approx(full2, rel=0.01)
    assert (arc_frame - DARK_MEAN) == pytest.approx((full - DARK_MEAN) / 2, rel=0.02)  # the dose up to the arc
    assert after == pytest.approx(DARK_MEAN, abs=2)
    t_frame2 = 10.0 + 2 * EXPOSURE_S  # beam on at 0 s, settled at 10 s; frames 1 s each
    assert hit_log(rig) == [(t_frame2 + EXPOSURE_S / 2, "exposure of frame 2")]
    assert rig.source.read_state() is SourceState.FAULT
    with pytest.raises(DeviceStateError):
        rig.source.beam_on()
    rig.source.reset()
    rig.beam_on()
    assert rig.means(1)[0] == pytest.approx(full, rel=0.01)  # fired once: the next exposures are clean


def test_arc_mid_exposure_in_real_time():
    """With the real clock the mid-exposure offer and the arc run in a timer thread."""
    clock = Clock()
    schedule = FaultSchedule([{"kind": "arc", "device": "source", "at_frame": 1}])
    source = SimulatedSource("source", SimulatedSourceOptions(warmed_up=True, ramp_kv_per_s=1e5,
                                                              ramp_ua_per_s=1e5), clock, 1, schedule)
    context = Bench(clock=clock, geometry=Geometry(100.0, 500.0), seed=4, faults=schedule,
                            devices={"source": source})
    detector = SimulatedDetector("detector", SimulatedDetectorOptions(rows=16, columns=16), context)
    with source, detector:
        source.configure(voltage_kv=100.0, current_ua=50.0, spot_mode="small")
        source.beam_on()
        clock.sleep(0.05)
        detector.set_exposure_s(1.0)  # the arc's timer may be late by 0.15 s (a loaded machine) and still pass
        full, arc_frame = (detector.acquire()[0].data.mean() for _ in range(2))
        assert source.read_state() is SourceState.FAULT
    dark = SimulatedDetectorOptions().dark_offset + 1.0 * SimulatedDetectorOptions().dark_current_per_s
    assert (arc_frame - dark) / (full - dark) == pytest.approx(0.5, abs=0.15)


def test_arc_needs_high_voltage_it_waits_for_the_first_exposure_with_beam_on(make_rig):
    rig = make_rig([{"kind": "arc", "device": "source", "at_frame": 0}])
    assert rig.means(2) == pytest.approx([DARK_MEAN] * 2, abs=2)  # darks: nothing to arc
    assert rig.schedule.hits == []
    rig.beam_on()
    rig.means(1)
    assert [hit.what for hit in rig.schedule.hits] == ["exposure of frame 2"]
    assert rig.source.read_state() is SourceState.FAULT


def test_arc_at_s_strikes_at_that_instant_and_the_frame_gets_the_dose_before_it(make_rig):
    rig = make_rig([{"kind": "arc", "device": "source", "at_s": 12.25}])
    rig.beam_on()  # t = 10 s
    full = rig.means(2)[0]  # 10-11 s, 11-12 s
    arc_frame = rig.means(1)[0]  # 12-13 s: the arc at 12.25 s
    assert hit_log(rig) == [(12.25, "at 12.25 s")]
    assert (arc_frame - DARK_MEAN) == pytest.approx((full - DARK_MEAN) / 4, rel=0.03)
    assert rig.source.read_state() is SourceState.FAULT


def test_arc_at_s_without_exposure_latches_at_exactly_that_time(make_rig):
    rig = make_rig([{"kind": "arc", "device": "source", "at_s": 30.0}])
    rig.beam_on()
    rig.clock.sleep(19.999)
    assert rig.source.read_state() is SourceState.BEAM_ON
    rig.clock.sleep(0.001)
    assert rig.source.read_state() is SourceState.FAULT
    assert rig.source.read_current_ua() == 0.0


# -- source: interlock --------------------------------------------------------------------------------------
def test_interlock_opens_at_a_projection_and_closes_after_duration(make_rig):
    rig = make_rig([{"kind": "interlock_open", "device": "source", "at_projection": 1, "duration_s": 5.0}])
    rig.means(2)  # darks: beam off, not projections
    rig.beam_on()  # t = 12 s
    rig.sample_out.move_to(SAMPLE_OUT_MM)
    rig.means(2)  # flats: sample out, not projections
    rig.sample_out.move_to(0.0)
    start = rig.clock.monotonic()
    projection0, projection1 = rig.means(2)
    assert projection0 > 10 * DARK_MEAN and projection1 < projection0 * 0.6
    assert hit_log(rig) == [(start + 1.5 * EXPOSURE_S, "exposure of frame 5")]  # 2 darks, 2 flats, 1 projection
    assert rig.schedule.projections_made == 2
    assert rig.source.read_state() is SourceState.NOT_READY
    assert not rig.source.read_interlock_closed()
    with pytest.raises(InterlockError):
        rig.source.beam_on()
    rig.clock.sleep(start + 1.5 + 5.0 - rig.clock.monotonic() - 0.01)
    assert not rig.source.read_interlock_closed()
    rig.clock.sleep(0.01)
    assert rig.source.read_interlock_closed()
    assert rig.source.read_state() is SourceState.STANDBY  # closed again, X-rays stay off


def test_interlock_without_duration_stays_open_until_closed_by_hand(make_rig):
    rig = make_rig([{"kind": "interlock_open", "device": "source", "at_s": 5.0}])
    rig.clock.sleep(3600.0)
    assert rig.source.read_state() is SourceState.NOT_READY
    rig.source.set_interlock(True)
    assert rig.source.read_state() is SourceState.STANDBY
    assert hit_log(rig) == [(5.0, "at 5 s")]


# -- stages ---------------------------------------------------------------------------------------------------
def test_stall_at_s_freezes_the_move_which_then_times_out(make_rig):
    rig = make_rig([{"kind": "stage_stall", "device": "rotation", "at_s": 1.0}])
    move = rig.rotation.start_move_to(180.0)  # 90 deg/s, 360 deg/s²: 2.25 s
    rig.clock.sleep(1.0)
    here = rig.rotation.read_position()
    rig.clock.sleep(50.0)
    assert rig.rotation.read_position() == here and 0 < here < 180
    with pytest.raises(DeviceTimeoutError, match="not finished within 5"):
        move.wait(5.0)
    assert not move.done
    rig.rotation.stop()
    with pytest.raises(DeviceStateError, match="stopped"):
        move.wait(1.0)
    rig.rotation.move_to(0.0, 10.0)  # the stage works again
    assert rig.rotation.read_position() == pytest.approx(0.0)


def test_stall_with_duration_resumes_and_completes_late(make_rig):
    rig = make_rig([{"kind": "stage_stall", "device": "rotation", "at_s": 1.0, "duration_s": 20.0}])
    move = rig.rotation.start_move_to(180.0)
    rig.clock.sleep(1.0)
    here = rig.rotation.read_position()
    rig.clock.sleep(19.999)
    assert rig.rotation.read_position() == here and not move.done
    move.wait(10.0)
    assert rig.rotation.read_position() == pytest.approx(180.0)
    assert rig.clock.monotonic() == pytest.approx(21.0 + move_duration_s(180.0 - here, 90.0, 360.0))


def test_stall_at_s_while_idle_strikes_the_next_move_half_way(make_rig):
    rig = make_rig([{"kind": "stage_stall", "device": "sample_out", "at_s": 1.0}])
    rig.clock.sleep(5.0)
    assert rig.schedule.hits == []  # nothing was moving at 1 s
    move = rig.sample_out.start_move_to(100.0)  # 50 mm/s, 200 mm/s²: 2.25 s
    rig.clock.sleep(10.0)
    assert rig.sample_out.read_position() == pytest.approx(50.0)
    assert not move.done
    assert hit_log(rig) == [(5.0, "move to 100 mm")]


def test_limit_switch_on_the_move_to_a_projection_fails_its_status(make_rig):
    rig = make_rig([{"kind": "limit_switch", "device": "rotation", "at_projection": 2}])
    rig.beam_on()
    for angle in (10.0, 20.0):  # moves to projections 0 and 1, then the two projections
        rig.rotation.move_to(angle, 5.0)
        rig.means(1)
    assert rig.schedule.hits == []
    start = rig.clock.monotonic()
    move = rig.rotation.start_move_to(60.0)  # the move to projection 2: it hits the switch half-way
    with pytest.raises(DeviceFaultError, match="limit switch hit at 40 deg"):
        move.wait(5.0)
    assert rig.clock.monotonic() == pytest.approx(start + move_duration_s(40.0, 90.0, 360.0) / 2)
    assert rig.rotation.read_position() == pytest.approx(40.0)
    rig.rotation.move_to(0.0, 5.0)  # fired once; the axis moves again
    assert rig.rotation.read_position() == pytest.approx(0.0)


def test_count_hits_consecutive_moves_and_then_no_more(make_rig):
    rig = make_rig([{"kind": "limit_switch", "device": "sample_out", "at_s": 0.0, "count": 2}])
    for _ in range(2):
        with pytest.raises(DeviceFaultError):
            rig.sample_out.move_to(20.0, 5.0)
    rig.sample_out.move_to(20.0, 5.0)
    assert rig.sample_out.read_position() == pytest.approx(20.0)
    assert len(rig.schedule.hits) == 2


# -- detector -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, error", [("frame_timeout", DeviceTimeoutError), ("frame_dropped", FrameLostError)])
def test_frame_fault_hits_exactly_that_frame(make_rig, kind, error):
    rig = make_rig([{"kind": kind, "device": "detector", "at_frame": 2, "count": 2}])
    frames = rig.detector.acquire(2)
    for number in (2, 3):
        start = rig.clock.monotonic()
        with pytest.raises(error, match=f"frame {number}"):
            rig.detector.acquire()
        assert rig.clock.monotonic() == start + EXPOSURE_S  # the panel exposed it
    frames += rig.detector.acquire(2)
    assert [f.frame_number for f in frames] == [0, 1, 4, 5]  # the lost ones used their numbers
    assert [hit.what for hit in rig.schedule.hits] == ["frame 2", "frame 3"]


def test_skipped_frames_count_and_a_fault_on_one_fails_the_skip(make_rig):
    rig = make_rig([{"kind": "frame_dropped", "device": "detector", "at_frame": 3}])
    rig.detector.skip(2)
    rig.detector.acquire()
    with pytest.raises(FrameLostError):
        rig.detector.skip(1)
    assert rig.schedule.frames_made == 4


def test_projections_are_counted_only_with_beam_on_and_sample_in_view(make_rig):
    rig = make_rig([{"kind": "frame_timeout", "device": "detector", "at_projection": 1}])
    rig.detector.acquire(3)  # darks
    rig.beam_on()
    rig.sample_out.move_to(SAMPLE_OUT_MM)
    rig.detector.acquire(3)  # flats
    rig.sample_out.move_to(0.0)
    rig.detector.skip(2)  # thrown away: not a projection
    rig.detector.acquire(2)  # projection 0, two frames averaged
    assert rig.schedule.projections_made == 1 and rig.schedule.hits == []
    with pytest.raises(DeviceTimeoutError):
        rig.detector.acquire(2)  # projection 1: its first frame
    assert [hit.what for hit in rig.schedule.hits] == ["frame 10"]
    assert rig.schedule.projections_made == 1  # not acquired: a retry is projection 1 again
    rig.detector.acquire(2)
    assert rig.schedule.projections_made == 2


# -- requests -------------------------------------------------------------------------------------------------
REQUESTS = {"source": lambda rig: rig.source.read_voltage_kv(),
            "rotation": lambda rig: rig.rotation.read_position(),
            "sample_out": lambda rig: rig.sample_out.start_move_to(1.0),
            "detector": lambda rig: rig.detector.acquire()}


@pytest.mark.parametrize("device", list(REQUESTS))
@pytest.mark.parametrize("kind, error, text", [("reply_timeout", DeviceTimeoutError, "no reply"),
                                               ("garbled_reply", ProtocolError, "garbled reply"),
                                               ("disconnect", CommunicationError, "connection lost")])
def test_request_fault_fails_the_next_request_then_the_link_is_fine(make_rig, device, kind, error, text):
    rig = make_rig([{"kind": kind, "device": device, "at_s": 5.0}])
    request = REQUESTS[device]
    request(rig)
    rig.clock.sleep(5.0)
    due = rig.clock.monotonic()
    with pytest.raises(error, match=f"{device}.*{text}"):
        request(rig)
    request(rig)
    assert hit_log(rig) == [(due, "request")]


def test_disconnect_with_duration_fails_every_request_until_the_link_is_back(make_rig):
    rig = make_rig([{"kind": "disconnect", "device": "rotation", "at_frame": 1, "duration_s": 3.0}])
    rig.rotation.read_position()
    rig.detector.acquire()  # frame 0 made at t = 1 s
    for _ in range(3):
        with pytest.raises(CommunicationError):
            rig.rotation.read_position()  # down from 1 s
        rig.clock.sleep(0.99)
    rig.clock.sleep(0.05)
    rig.rotation.read_position()  # back after 4 s
    assert [time for time, _ in hit_log(rig)] == pytest.approx([1.0, 1.99, 2.98])


def test_physics_reads_of_other_instruments_are_not_requests(make_rig):
    rig = make_rig([{"kind": "disconnect", "device": "source", "at_s": 11.0, "count": 5}])
    rig.beam_on()
    rig.clock.sleep(1.0)
    frames = rig.detector.acquire(3)  # the panel reads the tube's kV, µA and state for every frame
    assert min(f.data.mean() for f in frames) > 10 * DARK_MEAN
    assert rig.schedule.hits == []
    with pytest.raises(CommunicationError):
        rig.source.read_state()


# -- writer ---------------------------------------------------------------------------------------------------
def write_frames(path, keys: list[int], schedule: FaultSchedule | None = None) -> tuple[NXtomoWriter, list[int]]:
    """Append frames of these image keys (meeting ``schedule``'s writer faults); the indices whose append failed."""
    header = ScanHeader(title="t", start_time=1.7e9, frame_shape=(4, 4), pixel_pitch_um=100.0,
                        saturation_value=65535, geometry=Geometry(100.0, 500.0), voltage_kv=80.0,
                        current_ua=100.0, focal_spot_mode="small", focal_spot_size_um=5.0, configuration_toml="")
    check = WriterFaults(schedule, path.name) if schedule is not None else None
    writer = NXtomoWriter(path, header, flush_interval_s=0.0, pixel_check=check)
    failed = []
    for i, key in enumerate(keys):
        try:
            writer.append(np.full((4, 4), i, np.uint16), FrameInfo(key, 0.0, 1.0, 1.7e9 + i, 80.0, 100.0))
        except MicroCTError as error:
            failed.append(i)
            assert "No space left" in str(error) or "Input/output error" in str(error)
    return writer, failed


@pytest.mark.parametrize("kind, code", [("disk_full", errno.ENOSPC), ("write_error", errno.EIO)])
def test_writer_fault_fails_that_frame_and_the_file_stays_valid(tmp_path, kind, code):
    schedule = FaultSchedule([{"kind": kind, "device": "writer", "at_frame": 2}])
    writer, failed = write_frames(tmp_path / "a.nxs", [2, 2, 0, 0], schedule)
    assert failed == [2]
    writer.close("aborted", 1.7e9 + 10)
    with h5py.File(tmp_path / "a.nxs") as f:
        assert f["entry/instrument/detector/data"][:, 0, 0].tolist() == [0, 1, 3]
        assert f["entry/logs/status"][()].decode() == "aborted"
    assert schedule.hits[0].what == "frame 2 of a.nxs"


def test_writer_projection_numbers_count_image_key_0_only(tmp_path):
    schedule = FaultSchedule([{"kind": "disk_full", "device": "writer", "at_projection": 1, "count": 2}])
    writer, failed = write_frames(tmp_path / "a.nxs", [2, 1, 0, 1, 0, 0, 0], schedule)
    writer.close("aborted", 1.7e9 + 10)
    assert failed == [4, 5]  # projection 1, and (count 2) the next try: projection 1 again
    writer, failed = write_frames(tmp_path / "b.nxs", [0, 0])  # no schedule: no fault
    writer.close("complete", 1.7e9 + 10)
    assert failed == []
