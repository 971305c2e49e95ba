"""Streaming NeXus NXtomo writer: one HDF5 chunk per frame, memory flat in the number of frames.

Layout (SI units in ``@units``; lengths in m, angles in degree, times in s,
voltage in kV, current in uA, power in W):

    /entry (NXentry)           definition, title, start_time, end_time, program_name
      instrument/source        NXsource: voltage, current, power, focal spot, distance = −SOD
      instrument/detector      NXdetector: data[n, rows, cols] uint16, image_key[n] (0 projection,
                               1 flat, 2 dark), image_key_control[n], count_time[n],
                               sequence_number[n], start_time[n], pixel sizes, distance = SDD − SOD
      instrument/ct_geometry   NXcollection: distances, magnification, offsets, rotation direction,
                               with the conventions as text
      sample                   NXsample: rotation_angle[n] (measured), x/y/z_translation[n], voxel size
      control                  NXmonitor: data[n] = tube current read after each frame (µA; 0 for darks)
      data                     NXdata @signal=data: links to data, rotation_angle, image_key
      logs                     NXcollection: readings (time, kV, µA, angle), events (time, frame,
                               message), configuration (the scan's TOML), status

``logs/status`` reads ``running`` while the scan runs, then ``complete`` or
``aborted``. Frames go to disk as they come; the small per-frame fields are
written at every flush (at most ``flush_interval_s`` apart, and on close), so
a flushed file is always self-consistent.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import h5py
import numpy as np

from microct import __version__
from microct.devices.detector import FrameFile
from microct.errors import MicroCTError
from microct.geometry import CONVENTIONS, Geometry
from microct.journal import JournalWriter, header_record, journal_path

NXTOMO_VERSION = 1.5  # the layout version the ``nxtomo`` reader keys its paths on (entry @version)
IMAGE_KEYS = {"projection": 0, "flat": 1, "dark": 2}
STR = h5py.string_dtype()
GROW_FRAMES = 64  # the frame dataset grows by this many frames at a time between flushes
METADATA_CACHE_BYTES = 512 * 1024
SERIES_CHUNK_CACHE_BYTES = 64 * 1024  # 8 chunks of a 1-D column (frames bypass the chunk cache)


def iso_time(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat()


@dataclass(frozen=True)
class ScanHeader:
    """What is known before the first frame: written when the file is created."""

    title: str
    start_time: float  # epoch s
    frame_shape: tuple[int, int]
    pixel_pitch_um: float
    saturation_value: int
    geometry: Geometry
    voltage_kv: float
    current_ua: float
    focal_spot_mode: str
    focal_spot_size_um: float
    configuration_toml: str
    source_name: str = "source"
    frames_linked: bool = False
    """Frames stay in the detector's own HDF5 files; ``data`` is a virtual dataset mapping them."""
    configuration: dict = field(default_factory=dict, compare=False)
    """The scan's configuration as data (``ScanConfig.model_dump(mode="json")``), for the journal."""
    clock: str = "real"
    """"simulated": the frames' and events' times are the simulated clock's (``logs/clock`` says so)."""


@dataclass(frozen=True)
class FrameInfo:
    """Per-frame record: what the frame is and the read-backs measured for it."""

    image_key: int  # 0 projection, 1 flat, 2 dark
    rotation_angle_deg: float
    count_time_s: float
    start_time: float  # epoch s
    voltage_kv: float
    current_ua: float
    x_translation_mm: float = 0.0


@dataclass
class _LinkedRun:
    """Consecutive frames of the scan that are consecutive frames of one detector file."""

    path: str
    dataset: str
    first: int  # the run's first frame: its index in the scan ...
    file_first: int  # ... and in the detector's file
    source: str  # the file's name as ``data`` maps it (NXtomoWriter._source_name)
    count: int = 1

    def continues_with(self, file: FrameFile) -> bool:
        return (file.path, file.dataset) == (self.path, self.dataset) and file.index == self.file_first + self.count

    def precedes(self, file: FrameFile) -> bool:
        """True if ``file`` names a place of this run's file that the run has passed (taken twice)."""
        return (file.path, file.dataset) == (self.path, self.dataset) and file.index < self.file_first + self.count


class _Table:
    """Resizable 1-D datasets (columns, in any groups) fed one row at a time, each written in one slice
    at ``flush``: a frame costs one list append, whatever the number of per-frame fields."""

    def __init__(self, columns: dict[str, tuple[h5py.Group, str, object, str | None]], start_iso: str) -> None:
        """``columns``: name → (group, dataset name, dtype, units or None); the ``time`` column gets
        ``@start`` = ``start_iso`` (its values are seconds since then)."""
        self.datasets: dict[str, h5py.Dataset] = {}
        for name, (group, dataset_name, dtype, units) in columns.items():
            dataset = group.create_dataset(dataset_name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(1024,))
            if units:
                dataset.attrs["units"] = units
            if name == "time":
                dataset.attrs["start"] = start_iso
            self.datasets[name] = dataset
        self.rows = 0
        self.pending: list[tuple] = []

    def flush(self) -> None:
        if self.pending:
            start, self.rows = self.rows, self.rows + len(self.pending)
            for dataset, values in zip(self.datasets.values(), zip(*self.pending), strict=True):
                dataset.resize((self.rows,))
                dataset[start:] = np.asarray(values, dtype=dataset.dtype)
            self.pending.clear()


def _group(parent: h5py.Group, name: str, nx_class: str) -> h5py.Group:
    group = parent.create_group(name)
    group.attrs["NX_class"] = nx_class
    return group


def _field(group: h5py.Group, name: str, value, units: str | None = None) -> h5py.Dataset:
    dataset = group.create_dataset(name, data=value)
    if units:
        dataset.attrs["units"] = units
    return dataset


class NXtomoWriter:
    """Create ``path`` (refusing to overwrite), write the header, then ``append`` frames.

    Use as a context manager or call ``close(status)``; an exception inside
    the ``with`` block closes the file as ``aborted``. Raises MicroCTError if
    the file cannot be created or written. ``sync_to_disk``: at each flush the
    frames are put on the disk (fsync) before the journal names them, so a power
    cut loses at most the frames since the last flush (``microct.journal``).
    """

    def __init__(self, path: str | Path, header: ScanHeader, flush_interval_s: float = 1.0,
                 journal: bool = True, pixel_check: Callable[[int, int], None] | None = None,
                 sync_to_disk: bool = True) -> None:
        self.path = Path(path)
        self.header = header
        self.flush_interval_s = flush_interval_s
        self.pixel_check = pixel_check
        """Called with (frame index, image key) before a frame's pixels are written; an OSError it raises
        fails that write (the simulated disk faults of ``microct.simulators.faults``)."""
        self.frames_written = 0
        self._journal: JournalWriter | None = None
        if self.path.exists():
            raise MicroCTError(f"cannot create output file {self.path}: it exists")
        if journal:
            stale = journal_path(self.path)
            if stale.exists():
                raise MicroCTError(f"{stale} exists: the journal of an interrupted scan of {self.path}; resume "
                                   f"it (microct scan CONFIG --resume) or delete it")
            self._journal = JournalWriter(stale, header_record(header, self.path.name),
                                          self._sync_pixels if sync_to_disk else None)
        try:
            # each 1-D column keeps its last chunks in a chunk cache (1 MiB each by default): a few will do
            self._file = h5py.File(self.path, "w-", rdcc_nbytes=SERIES_CHUNK_CACHE_BYTES)
        except (OSError, FileExistsError) as error:
            if self._journal is not None:
                self._journal.close(remove=True)
            raise MicroCTError(f"cannot create output file {self.path}: {error}") from None
        # HDF5's metadata cache grows with the chunk index (up to 32 MiB by default, ~0.3 MiB per 1000
        # frames): capped, memory stays flat over long scans; appends only touch the index's last nodes
        cache = self._file.id.get_mdc_config()
        cache.set_initial_size, cache.initial_size = True, METADATA_CACHE_BYTES // 2
        cache.min_size, cache.max_size = METADATA_CACHE_BYTES // 2, METADATA_CACHE_BYTES
        self._file.id.set_mdc_config(cache)
        self._last_flush = time.monotonic()
        self._write_header()
        self._file.flush()

    # -- header -----------------------------------------------------------------------------
    def _write_header(self) -> None:
        h, g = self.header, self.header.geometry
        f = self._file
        f.attrs.update({"NX_class": "NXroot", "default": "entry", "creator": "microct",
                        "HDF5_Version": h5py.version.hdf5_version, "file_time": iso_time(h.start_time)})
        entry = _group(f, "entry", "NXentry")
        entry.attrs.update({"default": "data", "version": NXTOMO_VERSION})
        _field(entry, "definition", "NXtomo")
        _field(entry, "title", h.title)
        _field(entry, "start_time", iso_time(h.start_time))
        self._end_time = _field(entry, "end_time", "")  # variable-length: rewritten on close
        _field(entry, "program_name", "microct").attrs["version"] = __version__

        instrument = _group(entry, "instrument", "NXinstrument")
        source = _group(instrument, "source", "NXsource")
        _field(source, "name", h.source_name)
        _field(source, "type", "Fixed Tube X-ray")
        _field(source, "probe", "x-ray")
        _field(source, "voltage", h.voltage_kv, "kV")
        _field(source, "current", h.current_ua, "uA")
        _field(source, "power", h.voltage_kv * h.current_ua / 1000.0, "W")
        _field(source, "focal_spot_mode", h.focal_spot_mode)
        _field(source, "focal_spot_size", h.focal_spot_size_um * 1e-6, "m")
        _field(source, "distance", -g.source_object_distance_mm * 1e-3, "m")

        detector = _group(instrument, "detector", "NXdetector")
        rows, cols = h.frame_shape
        self._detector = detector
        self._runs: list[_LinkedRun] = []
        self._linked_frames = 0  # frames the virtual dataset maps (rewritten at each flush)
        if h.frames_linked:
            self._data = None  # a virtual dataset, made at the first flush with frames
        else:
            self._data = detector.create_dataset("data", shape=(0, rows, cols), maxshape=(None, rows, cols),
                                                 dtype=np.uint16, chunks=(1, rows, cols))
            self._data.attrs["interpretation"] = "image"
        self._capacity = 0
        _field(detector, "x_pixel_size", h.pixel_pitch_um * 1e-6, "m")
        _field(detector, "y_pixel_size", h.pixel_pitch_um * 1e-6, "m")
        _field(detector, "distance", g.object_detector_distance_mm * 1e-3, "m")
        _field(detector, "saturation_value", h.saturation_value)

        ct = _group(instrument, "ct_geometry", "NXcollection")
        _field(ct, "source_object_distance", g.source_object_distance_mm * 1e-3, "m")
        _field(ct, "source_detector_distance", g.source_detector_distance_mm * 1e-3, "m")
        _field(ct, "magnification", g.magnification)
        _field(ct, "detector_offset_u", g.detector_offset_u_mm * 1e-3, "m")
        _field(ct, "detector_offset_v", g.detector_offset_v_mm * 1e-3, "m")
        _field(ct, "centre_of_rotation_offset", g.centre_of_rotation_offset_mm * 1e-3, "m")
        _field(ct, "rotation_direction", g.rotation_direction)
        _field(ct, "conventions", CONVENTIONS)

        sample = _group(entry, "sample", "NXsample")
        _field(sample, "name", h.title)
        voxel_m = g.voxel_size_um(h.pixel_pitch_um) * 1e-6
        _field(sample, "x_pixel_size", voxel_m, "m")
        _field(sample, "y_pixel_size", voxel_m, "m")
        control = _group(entry, "control", "NXmonitor")
        logs = _group(entry, "logs", "NXcollection")
        readings = _group(logs, "readings", "NXcollection")
        events = _group(logs, "events", "NXcollection")
        _field(logs, "configuration", h.configuration_toml)
        self._status = _field(logs, "status", "running")
        self._logs = logs
        _field(logs, "clock", h.clock).attrs["description"] = (
            "real: every time in this file is the wall clock's; simulated: the frames', readings' and events' "
            "times are a simulated clock's seconds since start_time, and end_time is the wall clock's (the "
            "simulated end: simulated_end_time)")

        start_iso = iso_time(h.start_time)
        self._frames = _Table({  # one row per frame, in this order (see _record)
            "image_key": (detector, "image_key", np.int8, None),
            "image_key_control": (detector, "image_key_control", np.int8, None),
            "count_time": (detector, "count_time", np.float64, "s"),
            "sequence_number": (detector, "sequence_number", np.uint32, None),
            "time": (detector, "start_time", np.float64, "s"),
            "rotation_angle": (sample, "rotation_angle", np.float64, "degree"),
            "x_translation": (sample, "x_translation", np.float64, "m"),
            "y_translation": (sample, "y_translation", np.float64, "m"),
            "z_translation": (sample, "z_translation", np.float64, "m"),
            "control": (control, "data", np.float64, "uA"),
        }, start_iso)
        self._readings = _Table({"time": (readings, "time", np.float64, "s"),
                                 "voltage": (readings, "voltage", np.float64, "kV"),
                                 "current": (readings, "current", np.float64, "uA"),
                                 "rotation_angle": (readings, "rotation_angle", np.float64, "degree")}, start_iso)
        self._events = _Table({"time": (events, "time", np.float64, "s"), "frame": (events, "frame", np.int64, None),
                               "message": (events, "message", STR, None)}, start_iso)

        self._nxdata = nxdata = _group(entry, "data", "NXdata")
        nxdata.attrs.update({"signal": "data", "axes": [".", ".", "."]})
        if self._data is not None:
            nxdata["data"] = self._data
        nxdata["rotation_angle"] = self._frames.datasets["rotation_angle"]
        nxdata["image_key"] = self._frames.datasets["image_key"]

    # -- streaming ----------------------------------------------------------------------------
    def append(self, frame: np.ndarray, info: FrameInfo) -> int:
        """Write one frame (uint16, ``frame_shape``) and its record; returns its index."""
        index = self.frames_written
        frame = np.ascontiguousarray(frame, dtype=np.uint16)
        if frame.shape != self.header.frame_shape:
            raise MicroCTError(f"frame {index}: shape {frame.shape} differs from the file's {self.header.frame_shape}")
        data = self._data
        if data is None:
            raise MicroCTError(f"frame {index}: {self.path} maps the detector's own files; its pixels cannot be "
                               f"written")
        try:
            if self.pixel_check is not None:
                self.pixel_check(index, info.image_key)
            if index >= self._capacity:  # grow in blocks; flush() trims to the frames written
                self._capacity += GROW_FRAMES
                data.resize(self._capacity, axis=0)
            data.id.write_direct_chunk((index, 0, 0), frame)
            if self._journal is not None:  # after the pixels: the journal never names a frame not on disk
                chunk = data.id.get_chunk_info_by_coord((index, 0, 0))
                self._journal.append({"t": "frame", "i": index, "info": vars(info),  # (asdict: 10× slower)
                                      "offset": chunk.byte_offset, "nbytes": chunk.size})
        except OSError as error:
            raise MicroCTError(f"writing frame {index} to {self.path} failed: {error}") from None
        return self._record(index, info)

    def append_linked(self, file: FrameFile, info: FrameInfo) -> int:
        """Record a frame the detector wrote to its own HDF5 file (``header.frames_linked``).

        ``data`` (and ``/entry/data/data``) is an HDF5 virtual dataset mapping each frame of the scan to
        its place in the detector's files, rewritten at each flush: frames the detector wrote but the scan
        did not keep (exposed during an arc, say) stay out, and a resumed scan's new file joins the old
        one. MicroCTError if the place is one a frame of this scan already took.
        """
        index = self.frames_written
        if not self.header.frames_linked:
            raise MicroCTError(f"frame {index}: this file stores pixels; it was not opened for linked frames")
        run = self._runs[-1] if self._runs else None
        if run is not None and run.continues_with(file):
            run.count += 1
        elif run is not None and run.precedes(file):
            raise MicroCTError(f"frame {index}: the detector says it is frame {file.index} of {file.path}:"
                               f"{file.dataset}, but this scan has linked that file up to frame "
                               f"{run.file_first + run.count - 1} already")
        else:
            self._runs.append(_LinkedRun(file.path, file.dataset, index, file.index, self._source_name(file.path)))
        if self._journal is not None:
            self._journal.append({"t": "frame", "i": index, "info": vars(info), "file": vars(file)})
        return self._record(index, info)

    def _map_linked_frames(self) -> None:
        """(Re)write ``data`` as the virtual dataset of the frames linked so far."""
        n = self.frames_written
        if n == self._linked_frames:
            return
        rows, cols = self.header.frame_shape
        layout = h5py.VirtualLayout((n, rows, cols), np.uint16)
        for run in self._runs:
            end = run.file_first + run.count
            source = h5py.VirtualSource(run.source, run.dataset, shape=(end, rows, cols))
            layout[run.first:run.first + run.count] = source[run.file_first:end]
        for group in (self._detector, self._nxdata):
            if "data" in group:
                del group["data"]
        data = self._detector.create_virtual_dataset("data", layout)
        data.attrs["interpretation"] = "image"
        self._nxdata["data"] = data
        self._detector.attrs["data_files"] = list(dict.fromkeys(run.source for run in self._runs))
        self._linked_frames = n

    def _source_name(self, path: str) -> str:
        """A detector file's name as ``data`` maps it: relative to this file's folder when it lies there or
        below, so the scan's folder can be moved or copied whole (HDF5 looks a relative source up from the
        virtual dataset's folder); else as the detector gave it."""
        try:
            return Path(path).resolve().relative_to(self.path.resolve().parent).as_posix()
        except ValueError:
            return path

    def _record(self, index: int, info: FrameInfo) -> int:
        relative_t = info.start_time - self.header.start_time
        self._frames.pending.append((info.image_key, info.image_key, info.count_time_s, index, relative_t,
                                     info.rotation_angle_deg, info.x_translation_mm * 1e-3, 0.0, 0.0,
                                     info.current_ua))
        self._readings.pending.append((relative_t, info.voltage_kv, info.current_ua, info.rotation_angle_deg))
        self.frames_written = index + 1
        if time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()
        return index

    def set_pixel_mask(self, mask: np.ndarray) -> None:
        """Write (or replace) ``instrument/detector/pixel_mask``: NeXus bits, bit 0 gap, bit 1 dead."""
        mask = np.asarray(mask, dtype=np.uint32)
        if mask.shape != self.header.frame_shape:
            raise MicroCTError(f"pixel_mask: shape {mask.shape} differs from the file's {self.header.frame_shape}")
        detector = self._file["entry/instrument/detector"]
        if "pixel_mask" in detector:
            del detector["pixel_mask"]
        detector.create_dataset("pixel_mask", data=mask, compression="gzip")

    def log_reading(self, epoch_s: float, voltage_kv: float, current_ua: float, rotation_angle_deg: float) -> None:
        """Record tube and stage read-backs at a time (epoch s)."""
        if self._journal is not None:
            self._journal.append({"t": "reading", "time": epoch_s, "kv": voltage_kv, "ua": current_ua,
                                  "angle": rotation_angle_deg})
        self._readings.pending.append((epoch_s - self.header.start_time, voltage_kv, current_ua, rotation_angle_deg))

    def log_event(self, epoch_s: float, message: str, frame: int = -1) -> None:
        """Record an event (warning, fault, state change); ``frame`` −1 when not tied to a frame."""
        if self._journal is not None:
            self._journal.append({"t": "event", "time": epoch_s, "frame": frame, "message": message})
        self._events.pending.append((epoch_s - self.header.start_time, frame, message))

    def flush(self) -> None:
        """Write the pending per-frame fields and push everything to disk."""
        for table in (self._frames, self._readings, self._events):
            table.flush()
        if self.header.frames_linked:
            self._map_linked_frames()
        elif self._capacity != self.frames_written and self._data is not None:
            self._capacity = self.frames_written
            self._data.resize(self._capacity, axis=0)
        self._file.flush()
        if self._journal is not None:
            self._journal.commit()
        self._last_flush = time.monotonic()

    def _sync_pixels(self) -> None:
        """Put the frames written so far on the disk (fsync of the scan file), before the journal names them."""
        try:
            os.fsync(self._file.id.get_vfd_handle())
        except OSError as error:
            raise MicroCTError(f"syncing {self.path} to the disk failed: {error}") from None

    def set_log(self, text: str) -> None:
        """Write (or replace) ``logs/log``: the scan's log as text."""
        if "log" in self._logs:
            del self._logs["log"]
        self._logs.create_dataset("log", data=text, dtype=STR)

    def close(self, status: Literal["complete", "aborted"], end_time: float,
              simulated_end_time: float | None = None) -> None:
        """Flush, mark the file ``complete`` or ``aborted`` and close it. Safe to call twice. ``end_time``
        (epoch s) is the wall clock's; ``simulated_end_time``, a simulated clock's, goes to
        ``logs/simulated_end_time``."""
        if not self._file.id.valid:
            return
        finished = False
        try:
            self._status[()] = status
            self._end_time[()] = iso_time(end_time)
            if simulated_end_time is not None and "simulated_end_time" not in self._logs:
                _field(self._logs, "simulated_end_time", iso_time(simulated_end_time))
            self.flush()
            self._file.close()
            finished = True
        finally:
            if self._file.id.valid:
                self._file.close()
            if self._journal is not None:  # a complete file needs its journal no more; else keep it
                self._journal.close(remove=finished and status == "complete")

    def __enter__(self) -> NXtomoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close("aborted" if exc_type else "complete", time.time())
