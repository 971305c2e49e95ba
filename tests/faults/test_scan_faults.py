"""Whole scans (sim.toml shrunk: 3 darks, 4 flats, 12 projections of 64×64, simulated time) with one
scheduled fault each, and what the sequencer does about it, with recovery turned off and with the
default recovery policy.

OUTCOMES is the one table to update when the recovery policies change: fault → (error the scan aborts
with, its message, frames kept), or COMPLETES. An aborted scan must have the beam off, the tube
closed, and a valid file marked aborted holding exactly the frames of a fault-free scan up to the
fault, bit for bit; a completed one all its frames, in the planned order.
"""

from __future__ import annotations

from typing import NamedTuple

import h5py
import numpy as np
import pytest
from fault_helpers import NO_RECOVERY, SIM, SMALL, merged

from microct.config import parse_config
from microct.errors import (
    CommunicationError,
    DeviceFaultError,
    DeviceTimeoutError,
    FrameLostError,
    InterlockError,
    MicroCTError,
    ProtocolError,
    ScanAborted,
)
from microct.instruments import build_instruments
from microct.sequencer import run_scan
from microct.simulators.bench import schedule_of

DARKS, FLATS, PROJECTIONS = 3, 4, 12
FIRST_PROJECTION = DARKS + FLATS  # frame number (and file index) of projection 0
P5 = FIRST_PROJECTION + 5


class Aborts(NamedTuple):
    cause: type[BaseException]
    match: str
    frames_kept: int


COMPLETES = "complete"

# fault, what it hits first (``Hit.what``), outcome with recovery turned off, outcome with the default
# recovery policy ([scan.recovery], microct.policies)
OUTCOMES = {
    "arc during projection 5": (
        {"kind": "arc", "device": "source", "at_projection": 5}, f"exposure of frame {P5}",
        Aborts(DeviceFaultError, "beam dropped", P5), COMPLETES),
    "interlock opened during projection 5": (
        {"kind": "interlock_open", "device": "source", "at_projection": 5, "duration_s": 30.0},
        f"exposure of frame {P5}", Aborts(InterlockError, "beam dropped", P5), COMPLETES),
    "rotation stalls on the move to projection 5": (
        {"kind": "stage_stall", "device": "rotation", "at_projection": 5}, "move to 150 deg",
        Aborts(DeviceTimeoutError, "not finished within 120", P5), COMPLETES),
    "rotation jam clears within the move timeout": (
        {"kind": "stage_stall", "device": "rotation", "at_projection": 5, "duration_s": 60.0}, "move to 150 deg",
        COMPLETES, COMPLETES),
    "rotation limit switch on the move to projection 5": (
        {"kind": "limit_switch", "device": "rotation", "at_projection": 5}, "move to 150 deg",
        Aborts(DeviceFaultError, "limit switch hit at 135 deg", P5),
        Aborts(DeviceFaultError, "limit switch hit at 135 deg", P5)),
    "sample_out stalls moving out for the flats": (
        {"kind": "stage_stall", "device": "sample_out", "at_frame": DARKS}, "move to 40 mm",
        Aborts(DeviceTimeoutError, "not finished within 120", DARKS), COMPLETES),  # the move is retried
    "sample_out limit switch moving out for the flats": (
        {"kind": "limit_switch", "device": "sample_out", "at_frame": DARKS}, "move to 40 mm",
        Aborts(DeviceFaultError, "limit switch hit at 20 mm", DARKS),
        Aborts(DeviceFaultError, "limit switch hit at 20 mm", DARKS)),
    "frame of projection 5 times out": (
        {"kind": "frame_timeout", "device": "detector", "at_projection": 5}, f"frame {P5}",
        Aborts(DeviceTimeoutError, f"frame {P5} did not arrive", P5), COMPLETES),
    "frame 9 (projection 2) dropped": (
        {"kind": "frame_dropped", "device": "detector", "at_frame": 9}, "frame 9",
        Aborts(FrameLostError, "frame 9 was lost", 9), COMPLETES),
    "tube does not answer after projection 4": (  # its read-backs for projection 4: that frame is lost
        {"kind": "reply_timeout", "device": "source", "at_projection": 5}, "request",
        Aborts(DeviceTimeoutError, "source 'source': no reply", P5 - 1), COMPLETES),
    "garbled rotation reply starting the move to projection 5": (  # the next step starts the move again
        {"kind": "garbled_reply", "device": "rotation", "at_projection": 5}, "request", COMPLETES, COMPLETES),
    "garbled detector reply on projection 5": (
        {"kind": "garbled_reply", "device": "detector", "at_projection": 5}, "request",
        Aborts(ProtocolError, "detector 'detector': garbled reply", P5), COMPLETES),
    "detector link drops before projection 5": (
        {"kind": "disconnect", "device": "detector", "at_projection": 5}, "request",
        Aborts(CommunicationError, "connection lost", P5), COMPLETES),
    "sample_out link drops before the flats": (
        {"kind": "disconnect", "device": "sample_out", "at_frame": DARKS}, "request",
        Aborts(CommunicationError, "connection lost", DARKS), COMPLETES),
    "disk full at frame 9": (
        {"kind": "disk_full", "device": "writer", "at_frame": 9}, "frame 9 of scan.nxs",
        Aborts(MicroCTError, r"writing frame 9 .* No space left on device", 9),
        Aborts(MicroCTError, r"writing frame 9 .* No space left on device", 9)),
    "write error on projection 5": (
        {"kind": "write_error", "device": "writer", "at_projection": 5}, f"frame {P5} of scan.nxs",
        Aborts(MicroCTError, rf"writing frame {P5} .* Input/output error", P5),
        Aborts(MicroCTError, rf"writing frame {P5} .* Input/output error", P5)),
}
POLICIES = {"recovery off": NO_RECOVERY, "default recovery": {}}
CASES = [pytest.param(fault, what, outcomes[column], POLICIES[policy], id=f"{name}, {policy}")
         for name, (fault, what, *outcomes) in OUTCOMES.items() for column, policy in enumerate(POLICIES)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Frames (pixels, image keys, angles) of the same scan without faults."""
    config = parse_config(merged(SIM, SMALL))
    path = tmp_path_factory.mktemp("reference") / "scan.nxs"
    run_scan(config, build_instruments(config), path)
    with h5py.File(path) as f:
        return (f["entry/instrument/detector/data"][()], f["entry/instrument/detector/image_key"][()],
                f["entry/sample/rotation_angle"][()], f["entry/instrument/detector/start_time"][()])


def assert_file(path, reference, status: str, n: int, identical: bool) -> None:
    """A valid file marked ``status`` with ``n`` frames, of the reference's image keys; ``identical``:
    the reference's first ``n`` frames bit for bit (no retake shifted the noise)."""
    data, keys, angles, _ = reference
    with h5py.File(path, "r") as f:  # opens: a valid HDF5 file
        assert f["entry/logs/status"][()].decode() == status
        assert f["entry/instrument/detector/data"].shape == (n, *data.shape[1:])
        np.testing.assert_array_equal(f["entry/instrument/detector/image_key"][()], keys[:n])
        np.testing.assert_allclose(f["entry/sample/rotation_angle"][()], angles[:n], atol=0.01)
        if identical:
            np.testing.assert_array_equal(f["entry/instrument/detector/data"][()], data[:n])
        assert f["entry/end_time"][()].decode() != ""
        aborted = [m.decode() for m in f["entry/logs/events/message"][()] if m.decode().startswith("scan aborted")]
        assert len(aborted) == (status == "aborted")


@pytest.mark.parametrize("fault, what, outcome, recovery", CASES)
def test_fault_during_a_scan(make_scan, reference, fault, what, outcome, recovery):
    config, inst, out = make_scan({"simulation": {"faults": [fault]}, "scan": {"recovery": recovery}})
    schedule = schedule_of(inst)
    if outcome == COMPLETES:
        result = run_scan(config, inst, out)
    else:
        with pytest.raises(ScanAborted, match=outcome.match) as aborted:
            run_scan(config, inst, out)
    assert schedule.hits and schedule.hits[0].what == what
    if outcome == COMPLETES:
        assert result.frames_written == DARKS + FLATS + PROJECTIONS
        assert_file(out, reference, "complete", result.frames_written, identical=False)
        return
    assert isinstance(aborted.value.__cause__, outcome.cause), repr(aborted.value.__cause__)
    assert aborted.value.frames_written == outcome.frames_kept
    assert inst.source._beam is False  # the simulated tube's own high-voltage flag
    assert not inst.source.connected
    assert_file(out, reference, "aborted", outcome.frames_kept, identical=True)


def test_interlock_opened_at_a_time_mid_exposure(make_scan, reference):
    """A time trigger: the interlock opens half-way through projection 5's exposure, known from the
    fault-free scan's timestamps (end of exposure, seconds from the start; all devices connect at 0 s)."""
    exposure_s = SIM["scan"]["exposure_s"]
    at_s = float(reference[3][P5]) - exposure_s / 2
    config, inst, out = make_scan({"simulation": {"faults": [
        {"kind": "interlock_open", "device": "source", "at_s": at_s}]}, "scan": {"recovery": NO_RECOVERY}})
    with pytest.raises(ScanAborted) as aborted:
        run_scan(config, inst, out)
    assert isinstance(aborted.value.__cause__, InterlockError)
    assert [(h.time_s, h.what) for h in inst.detector.bench.faults.hits] == [(pytest.approx(at_s),
                                                                                f"at {at_s:g} s")]
    assert_file(out, reference, "aborted", P5, identical=True)
