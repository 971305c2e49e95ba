"""The areaDetector driver over Channel Access against the simulated areaDetector IOC (caproto): the detector
contract and its fault contract (frames withheld, a silent IOC, the exposure integrated), physics, binning,
dropped frames, file mode, PerkinElmer corrections."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

from microct.clock import Clock
from microct.drivers.epics_area_detector.driver import AreaDetector, AreaDetectorOptions
from microct.errors import CommunicationError, ConfigurationError, FrameLostError
from microct.simulators.bench import Bench
from microct.simulators.detector import SimulatedDetector, SimulatedDetectorOptions
from microct.simulators.epics_ad_ioc import start_ad_ioc
from microct.simulators.faults import FaultSchedule
from microct.simulators.source import SimulatedSource, SimulatedSourceOptions
from microct.testing.contracts import DetectorContract, DetectorFaultContract

PORTS = {role: int(port) for role, port in (item.split("=") for item in os.environ["MICROCT_TEST_IOC_PORTS"].split())}
ROWS, COLUMNS, PITCH_UM = 48, 64, 400.0
FRAME_MARGIN_S = 1.0
"""The driver's frame_timeout_margin_s in the contract class: how long a frame that never comes costs."""
WITHHELD_FRAME_S = 0.2
"""How long the panel behind the IOC waits for a withheld frame before it gives up on it (the IOC then
waits, busy, for Acquire = 0): shorter than FRAME_MARGIN_S, so the IOC is idle when the driver stops it."""


def tube(beam_on: bool = True) -> SimulatedSource:
    source = SimulatedSource("tube", SimulatedSourceOptions(warmed_up=True, ramp_kv_per_s=1e6, ramp_ua_per_s=1e6),
                             clock=Clock())
    source.connect()
    source.configure(voltage_kv=80.0, current_ua=100.0, spot_mode="small")
    if beam_on:
        source.beam_on()
    return source


def panel(source: SimulatedSource | None = None, **options) -> SimulatedDetector:
    opts = SimulatedDetectorOptions(rows=ROWS, columns=COLUMNS, pixel_pitch_um=PITCH_UM, binnings=(1, 2),
                                    exposure_range_s=(0.001, 10.0), **options)
    return SimulatedDetector("panel", opts, Bench(clock=Clock(), seed=3,
                                                           devices={"source": source} if source else {}))


def driver(prefix: str, **options) -> AreaDetector:
    opts = AreaDetectorOptions(**{"rows": ROWS, "columns": COLUMNS, "pixel_pitch_um": PITCH_UM, "binnings": (1, 2),
                                  "exposure_range_s": (0.001, 10.0), "connect_timeout_s": 1.0, **options})
    return AreaDetector("det", opts, prefix)


@pytest.fixture(scope="module")
def ioc():
    source = tube()
    handle = start_ad_ioc("ADT:", panel(source), PORTS["ad"])
    handle.source = source
    yield handle
    handle.stop()


class TestAreaDetectorContract(DetectorContract, DetectorFaultContract):
    bright_exposure_s = 2.0  # 600 × 0.8² × 100 µA × 2 s = 76 800 counts in the open beam: clipped at 65 535
    frame_timeout_bound_s = 20.0  # the driver gives up after FRAME_MARGIN_S (no frame) or put_timeout_s (silent)

    @pytest.fixture
    def new_device(self, ioc):
        return lambda: driver("ADT:", frame_timeout_margin_s=FRAME_MARGIN_S, put_timeout_s=2.0)

    @pytest.fixture
    def hook(self, ioc):
        panel, waited = ioc.ioc.panel, ioc.ioc.panel.frame_timeout_s
        panel.frame_timeout_s = WITHHELD_FRAME_S
        hook = ioc.ioc.fault_hook()
        yield hook
        hook.mute(False)
        hook.withhold_frames(False)
        panel.frame_timeout_s = waited


def test_frames_carry_the_physics_and_unique_ids(ioc):
    with driver("ADT:") as det:
        det.set_exposure_s(0.01)
        frames = det.acquire(3)
        ioc.source.beam_off()
        try:
            dark = det.acquire(1)[0]
        finally:
            ioc.source.beam_on()
    ids = [f.frame_number for f in frames]
    assert ids == list(range(ids[0], ids[0] + 3))  # image1:UniqueId_RBV, consecutive
    bright = np.mean([f.data.mean() for f in frames])
    assert bright - dark.data.mean() > 150  # 80 kV 100 µA 10 ms: ~380 counts open beam, less through the sample
    assert dark.data.mean() == pytest.approx(100, abs=15)  # the panel's dark offset, as uint16 (not int16)


def test_binning_changes_the_frame_shape_on_both_sides(ioc):
    with driver("ADT:") as det:
        det.set_binning(2)
        frame = det.acquire(1)[0]
        assert frame.data.shape == (ROWS // 2, COLUMNS // 2) == det.shape
        det.set_binning(1)


def test_a_frame_dropped_by_the_plugin_is_a_frame_lost_error_naming_the_counters(ioc):
    with driver("ADT:") as det:
        det.set_exposure_s(0.001)
        made = ioc.ioc.frames_made
        ioc.ioc.drop_frames = {made + 2}  # the second frame of the next acquisition
        try:
            with pytest.raises(FrameLostError, match=r"made 3 .*passed 2 and dropped 1 .*ADT:image1:DroppedArrays_RBV"):
                det.acquire(3)
        finally:
            ioc.ioc.drop_frames = set()
        assert len(det.acquire(2)) == 2  # the next acquisition is whole again


def test_sensor_size_in_the_options_is_checked_against_the_ioc(ioc):
    det = driver("ADT:", rows=ROWS * 2)
    with pytest.raises(ConfigurationError, match=r"96 × 64 in the options, but the IOC reports 48 × 64 .*MaxSizeY_RBV"):
        det.connect()
    assert not det.connected


def test_an_ioc_that_is_not_there_is_named_pv_by_pv(ioc):
    det = driver("NOWHERE:", connect_timeout_s=0.3)
    with pytest.raises(CommunicationError, match=r"NOWHERE:cam1:Acquire"):
        det.connect()


def test_file_mode_frames_are_in_the_iocs_file_and_skipped_ones_are_not(ioc, tmp_path):
    with driver("ADT:", frames="hdf5-file", ioc_file_path=str(tmp_path), file_name="ct") as det:
        det.set_exposure_s(0.01)
        first = det.acquire(2)
        det.skip(3)
        second = det.acquire(1)
    frames = first + second
    assert all(f.data is None for f in frames)
    assert [f.file.index for f in frames] == [0, 1, 2]
    assert {f.file.path for f in frames} == {str(tmp_path / "ct_000001.h5")}
    with h5py.File(frames[0].file.path, "r") as f:  # close() ended the capture: the IOC closed the file
        data = f[frames[0].file.dataset]
        assert data.shape == (3, ROWS, COLUMNS) and data.dtype == np.uint16
        assert data[:].mean() > 200  # beam on: real frames


def test_file_mode_closes_a_capture_a_dead_client_left_running_and_writes_a_new_file(ioc, tmp_path):
    import epics

    # a client that died mid-capture: the IOC's file ct_00000N.h5 is still open, Capture busy
    for pv, value in (("FilePath", str(tmp_path)), ("FileName", "ct"), ("FileWriteMode", 2), ("NumCapture", 0),
                      ("AutoIncrement", 1)):
        assert epics.caput(f"ADT:HDF1:{pv}", value, wait=True, timeout=2.0) == 1
    number = epics.caget("ADT:HDF1:FileNumber", use_monitor=False, timeout=2.0)
    epics.caput("ADT:HDF1:Capture", 1, wait=False)
    stale = str(tmp_path / f"ct_{number:06d}.h5")
    assert epics.caget("ADT:HDF1:Capture_RBV", use_monitor=False, timeout=2.0) == 1
    with driver("ADT:", frames="hdf5-file", ioc_file_path=str(tmp_path), file_name="ct") as det:
        capture = {finding.item: finding for finding in det.check()}["capture"]
        assert capture.level == "warning" and "did not close its file" in capture.text
        assert epics.caget("ADT:HDF1:Capture_RBV", use_monitor=False, timeout=2.0) == 1  # connect writes nothing
        det.set_exposure_s(0.01)
        assert epics.caget("ADT:HDF1:Capture_RBV", use_monitor=False, timeout=2.0) == 0  # closed at the first use
        with h5py.File(stale, "r") as f:  # ... so the stale file is whole and readable
            assert f["entry/data/data"].shape[0] == 0
        frames = det.acquire(2)
    assert [(f.file.path, f.file.index) for f in frames] == [(str(tmp_path / f"ct_{number + 1:06d}.h5"), i)
                                                              for i in (0, 1)]  # AutoIncrement: a new file


def test_file_mode_indexes_frames_by_what_the_plugin_captured(tmp_path):
    """A frame the plugin wrote in a call that failed keeps its place in the file: the next frame's index is
    the plugin's count (NumCaptured_RBV), not the count of frames the driver handed out."""
    schedule = FaultSchedule([{"kind": "frame_dropped", "device": "detector", "at_frame": 2}])
    lossy = SimulatedDetector("detector", SimulatedDetectorOptions(rows=ROWS, columns=COLUMNS, pixel_pitch_um=PITCH_UM),
                              Bench(clock=Clock(), seed=3, faults=schedule))
    handle = start_ad_ioc("ADNC:", lossy, PORTS["ad_spare"])
    try:
        with driver("ADNC:", frames="hdf5-file", ioc_file_path=str(tmp_path), file_name="nc",
                    frame_timeout_margin_s=0.3) as det:
            det.set_exposure_s(0.01)
            first = det.acquire(1)[0]  # panel frame 0
            with pytest.raises(FrameLostError, match=r"made 2, the HDF5 plugin wrote 1 \(ADNC:HDF1:NumCaptured_RBV"):
                det.acquire(2)  # frame 1 is written, frame 2 lost
            again = det.acquire(1)[0]  # frame 3
    finally:
        handle.stop()
    assert (first.file.index, again.file.index) == (0, 2)
    with h5py.File(again.file.path, "r") as f:
        assert f[again.file.dataset].shape[0] == 3


def test_file_mode_needs_the_iocs_folder():
    with pytest.raises(ValueError, match="ioc_file_path"):
        AreaDetectorOptions(rows=ROWS, columns=COLUMNS, pixel_pitch_um=PITCH_UM, frames="hdf5-file")


def test_local_path_maps_the_iocs_folder_to_this_computers():
    det = driver("ADT:", frames="hdf5-file", ioc_file_path="/ramdisk/ct", local_file_path="/mnt/det/ct")
    assert det._local_path("/ramdisk/ct/run/ct_000007.h5") == "/mnt/det/ct/run/ct_000007.h5"


def test_perkinelmer_offset_correction_through_the_vendor_pvs():
    source = tube(beam_on=False)
    handle = start_ad_ioc("ADPE:", panel(source, read_noise=0.0), PORTS["ad_spare"], vendor="perkinelmer")
    try:
        options = {"perkinelmer": {"use_offset": True, "offset_constant": 50, "num_offset_frames": 4}}
        with driver("ADPE:", **options) as det:
            det.set_exposure_s(0.001)
            raw_dark = handle.ioc.panel.acquire(1)[0].data.astype(float)
            det.acquire_offset()  # beam off: the offset frames are darks
            corrected = det.acquire(1)[0].data.astype(float)
    finally:
        handle.stop()
    assert raw_dark.mean() == pytest.approx(100, abs=15)  # the panel's own offset
    assert corrected.mean() == pytest.approx(50, abs=2)  # offset removed, PEOffsetConstant added
    assert corrected.std() < raw_dark.std() / 2  # the fixed pattern of the offset is gone


def test_perkinelmer_calls_need_the_vendor_options(ioc):
    with driver("ADT:") as det, pytest.raises(ConfigurationError, match="perkinelmer"):
        det.acquire_offset()
