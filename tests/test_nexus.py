"""The NXtomo writer: layout, units, streaming, status."""

from __future__ import annotations

import os
import time
from dataclasses import replace

import h5py
import numpy as np
import pytest

from microct.devices.detector import FrameFile
from microct.errors import MicroCTError
from microct.geometry import Geometry
from microct.journal import _parse, journal_path, read_journal
from microct.nexus import FrameInfo, NXtomoWriter, ScanHeader
from microct.recon import ReconstructionError, open_scan

HEADER = ScanHeader(title="t", start_time=1.7e9, frame_shape=(8, 10), pixel_pitch_um=100.0, saturation_value=4095,
                    geometry=Geometry(50.0, 400.0, 1.0, -2.0, 0.25, -1), voltage_kv=90.0, current_ua=50.0,
                    focal_spot_mode="small", focal_spot_size_um=4.5, configuration_toml="[scan]\nx = 1\n")


def frame(i: int) -> np.ndarray:
    return np.full((8, 10), i, np.uint16)


def info(i: int, key: int = 0) -> FrameInfo:
    return FrameInfo(key, 1.5 * i, 0.2, 1.7e9 + i, 90.0, 50.0 + i)


def test_every_physical_field_has_units(tmp_path):
    path = tmp_path / "f.nxs"
    with NXtomoWriter(path, HEADER) as writer:
        writer.append(frame(0), info(0))
    physical = ["instrument/source/voltage", "instrument/source/current", "instrument/source/power",
                "instrument/source/focal_spot_size", "instrument/source/distance",
                "instrument/detector/x_pixel_size", "instrument/detector/y_pixel_size",
                "instrument/detector/distance", "instrument/detector/count_time", "instrument/detector/start_time",
                "instrument/ct_geometry/source_object_distance", "instrument/ct_geometry/source_detector_distance",
                "instrument/ct_geometry/detector_offset_u", "instrument/ct_geometry/detector_offset_v",
                "instrument/ct_geometry/centre_of_rotation_offset", "sample/rotation_angle", "sample/x_translation",
                "sample/x_pixel_size", "control/data", "logs/readings/voltage", "logs/readings/current"]
    with h5py.File(path, "r") as f:
        entry = f["entry"]
        for name in physical:
            assert "units" in entry[name].attrs, name
        assert entry["instrument/ct_geometry/source_detector_distance"][()] == pytest.approx(0.4)
        assert entry["instrument/ct_geometry/magnification"][()] == pytest.approx(8.0)
        assert entry["instrument/ct_geometry/rotation_direction"][()] == -1
        assert entry["instrument/ct_geometry/centre_of_rotation_offset"][()] == pytest.approx(0.25e-3)
        assert "counter-clockwise" in entry["instrument/ct_geometry/conventions"][()].decode()
        assert entry["sample/x_pixel_size"][()] == pytest.approx(100e-6 / 8)
        assert entry["instrument/source/power"][()] == pytest.approx(4.5)
        assert entry["logs/configuration"][()].decode() == HEADER.configuration_toml
        assert entry["definition"][()].decode() == "NXtomo"


def test_nxdata_links_the_frames_angles_and_keys(tmp_path):
    path = tmp_path / "f.nxs"
    with NXtomoWriter(path, HEADER) as writer:
        for i in range(3):
            writer.append(frame(i), info(i, key=[2, 1, 0][i]))
    with h5py.File(path, "r") as f:
        data = f["entry/data"]
        assert data.attrs["signal"] == "data"
        assert data["data"] == f["entry/instrument/detector/data"]  # the same dataset, not a copy
        assert data["image_key"][()].tolist() == [2, 1, 0]
        assert data["rotation_angle"][()].tolist() == [0.0, 1.5, 3.0]
        assert f["entry/instrument/detector/data"].chunks == (1, 8, 10)
        assert f["entry/instrument/detector/data"][2].max() == 2
        assert f["entry/control/data"][()].tolist() == [50.0, 51.0, 52.0]
        assert f["entry/instrument/detector/start_time"][()].tolist() == [0.0, 1.0, 2.0]


def test_status_is_running_until_closed_and_a_flushed_file_is_consistent(tmp_path):
    path = tmp_path / "f.nxs"
    writer = NXtomoWriter(path, HEADER, flush_interval_s=0.0)  # flush after every frame
    for i in range(4):
        writer.append(frame(i), info(i))
    # read a copy of the open file as it is on disk: what a crash at this instant would leave
    copy = tmp_path / "copy.nxs"
    copy.write_bytes(path.read_bytes())
    with h5py.File(copy, "r") as f:
        assert f["entry/logs/status"][()].decode() == "running"
        assert f["entry/instrument/detector/data"].shape[0] == 4
        assert f["entry/sample/rotation_angle"].shape == (4,)
    writer.close("complete", time.time())
    writer.close("complete", time.time())  # twice is harmless
    with h5py.File(path, "r") as f:
        assert f["entry/logs/status"][()].decode() == "complete"


def test_exception_inside_with_marks_aborted_and_keeps_frames(tmp_path):
    path = tmp_path / "f.nxs"
    with pytest.raises(RuntimeError):
        with NXtomoWriter(path, HEADER) as writer:
            writer.append(frame(0), info(0))
            writer.log_event(1.7e9 + 0.5, "trouble", frame=0)
            raise RuntimeError("boom")
    with h5py.File(path, "r") as f:
        assert f["entry/logs/status"][()].decode() == "aborted"
        assert f["entry/instrument/detector/data"].shape[0] == 1
        assert f["entry/logs/events/message"][()].tolist() == [b"trouble"]
        assert f["entry/logs/events/frame"][()].tolist() == [0]


def test_refuses_to_overwrite_and_wrong_frame_shape(tmp_path):
    path = tmp_path / "f.nxs"
    path.write_bytes(b"keep")
    with pytest.raises(MicroCTError, match="cannot create"):
        NXtomoWriter(path, HEADER)
    assert path.read_bytes() == b"keep"
    with NXtomoWriter(tmp_path / "g.nxs", HEADER) as writer:
        with pytest.raises(MicroCTError, match=r"shape \(10, 8\)"):
            writer.append(np.zeros((10, 8), np.uint16), info(0))


@pytest.mark.parametrize("flush_interval_s", [0.0, 3600.0])  # a flush after every frame; only at close
def test_the_journal_names_a_frame_only_after_its_pixels_are_on_the_disk(tmp_path, mocker, flush_interval_s):
    """Power-cut safety: the order of what reaches the disk. Each frame's pixels are written (``pixel_check``
    runs just before), then the scan file is synced (os.fsync), and only then does a journal line name the frame.
    """
    order: list[tuple] = []
    real_fsync, real_write = os.fsync, os.write
    path = tmp_path / "f.nxs"
    writer = NXtomoWriter(path, HEADER, flush_interval_s, pixel_check=lambda i, key: order.append(("pixels", i)))
    journal_fd, data_fd = writer._journal._fd, writer._file.id.get_vfd_handle()

    def fsync(fd: int) -> None:
        if fd == data_fd:
            order.append(("fsync",))
        real_fsync(fd)

    def write(fd: int, data: bytes) -> int:
        if fd == journal_fd:
            records = [_parse(line) for line in bytes(data).splitlines(keepends=True)]
            order.extend(("journal", r["i"]) for r in records if r and r["t"] == "frame")
        return real_write(fd, data)

    mocker.patch("os.fsync", side_effect=fsync)
    mocker.patch("os.write", side_effect=write)
    for i in range(4):
        writer.append(frame(i), info(i))
    if flush_interval_s:  # nothing synced yet: the journal names no frame
        assert [step for step in order if step[0] == "journal"] == []
    writer.close("aborted", 1.7e9 + 10)
    named = [step[1] for step in order if step[0] == "journal"]
    assert named == [0, 1, 2, 3]
    for i in named:
        written, journaled = order.index(("pixels", i)), order.index(("journal", i))
        assert ("fsync",) in order[written:journaled], f"frame {i} journaled before a sync of its pixels: {order}"
    assert [f.index for f in read_journal(journal_path(path)).frames] == [0, 1, 2, 3]


def test_without_sync_to_disk_each_frame_is_journaled_at_once(tmp_path, mocker):
    path = tmp_path / "f.nxs"
    writer = NXtomoWriter(path, HEADER, 3600.0, sync_to_disk=False)
    fsync = mocker.spy(os, "fsync")  # (the journal's header is synced in any case)
    writer.append(frame(0), info(0))
    assert [f.index for f in read_journal(journal_path(path)).frames] == [0]  # before any flush
    writer.close("aborted", 1.7e9 + 10)
    assert fsync.call_count == 0


def test_linked_frames_follow_their_folder_and_a_lost_detector_file_is_named(tmp_path):
    """A detector file in the scan's folder is mapped by a relative name, so the folder can be moved
    whole; a reader is told which file is missing instead of getting frames of 0 from HDF5."""
    scan_dir = tmp_path / "scan"
    detector_file = scan_dir / "ioc" / "det_000001.h5"
    detector_file.parent.mkdir(parents=True)
    frames = np.arange(1, 5, dtype=np.uint16)[:, None, None] * np.full((8, 10), 100, np.uint16)
    with h5py.File(detector_file, "w") as f:
        f["entry/data/data"] = frames
    keys = [2, 1, 0, 0]  # dark, flat, two projections
    with NXtomoWriter(scan_dir / "f.nxs", replace(HEADER, frames_linked=True)) as writer:
        for i, key in enumerate(keys):
            writer.append_linked(FrameFile(str(detector_file), "/entry/data/data", i), info(i, key))
    moved = tmp_path / "elsewhere"
    (scan_dir).rename(moved)
    with h5py.File(moved / "f.nxs", "r") as f:
        assert [s.file_name for s in f["entry/instrument/detector/data"].virtual_sources()] == ["ioc/det_000001.h5"]
    with open_scan(moved / "f.nxs") as scan:
        assert np.array_equal(scan.data[()], frames)
    (moved / "ioc" / "det_000001.h5").unlink()
    with pytest.raises(ReconstructionError, match=r"f\.nxs: its frames are in detector files that cannot be "
                                                  r"read: .*elsewhere/ioc/det_000001\.h5:/entry/data/data"):
        with open_scan(moved / "f.nxs"):
            pass


def test_a_journal_that_cannot_be_written_is_named_without_its_temporary_file(tmp_path):
    from microct.errors import MicroCTError
    from microct.journal import JournalWriter

    with pytest.raises(MicroCTError) as refused:
        JournalWriter(tmp_path / "gone" / "scan.nxs.journal", {})
    message = str(refused.value)
    assert "scan.nxs.journal" in message and ".tmp" not in message and "No such file or directory" in message
