"""The EPICS areaDetector flat-panel driver, over Channel Access (docs/protocols/areadetector.md).

``connection`` is the detector prefix (e.g. ``13PE1:``); the ADBase driver is ``cam1:``, the
NDStdArrays plugin ``image1:``, the HDF5 file plugin ``HDF1:`` under it (``models``; all overridable).
PV names and values are the package's ``codec``.

Frames, option ``frames``:

- ``"pull"``: ``cam1:ImageMode`` Multiple, ``NumImages`` n, ``Acquire`` 1 as a put-callback (it
  completes when the driver and plugins are done); the pixels arrive as monitor updates of
  ``image1:ArrayData`` (int16 on the wire: reinterpreted as uint16), each tagged with the
  ``image1:UniqueId_RBV`` posted before it. Then the counters are compared: frames made
  (``cam1:ArrayCounter_RBV``), passed by the plugin (``image1:ArrayCounter_RBV``), dropped by it
  (``image1:DroppedArrays_RBV``) and received here; any shortfall is a FrameLostError naming them.
- ``"hdf5-file"``: the IOC's NDFileHDF5 plugin writes every frame itself (Stream mode, one file per
  connection, AutoIncrement on, capture started at the first frame and ended by ``close()``; a capture
  a dead client left running is closed at the first use); frames come back as ``Frame.file`` locations (the
  IOC's ``FullFileName_RBV`` mapped from ``ioc_file_path`` to ``local_file_path``, the index in the file
  from ``NumCaptured_RBV``) and the NXtomo file maps them instead of copying pixels over the network.
  Skipped frames are taken with the plugin's callbacks disabled, so they stay out of the file.

The IOC cannot tell the pixel pitch or the usable exposure range: they come from the options, as do
the sensor size (checked against ``cam1:MaxSizeX_RBV``/``MaxSizeY_RBV`` at connect). PerkinElmer /
Varex IOCs (ADPerkinElmer) take their offset / gain correction settings from ``[options.perkinelmer]``.
``connect()`` reads only (sizes, data type, state); every put of the set-up above waits for the first
setter or acquisition (``_do_prepare``), so ``microct check`` writes nothing. A PV that does not connect,
or an IOC lost mid-acquisition, is a CommunicationError naming the PV.
"""

from __future__ import annotations

import collections
import logging
import threading
from pathlib import PurePosixPath
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from microct.driverkit import (
    ChannelAccess,
    Clock,
    CommunicationError,
    ConfigurationError,
    Detector,
    DetectorCapabilities,
    DeviceStateError,
    DeviceTimeoutError,
    DriverOptions,
    Finding,
    Frame,
    FrameFile,
    FrameLostError,
    TriggerMode,
    configure_environment,
)
from microct.drivers.epics_area_detector.codec import (
    CAM,
    DATA_TYPE,
    DONE_ACQUIRE,
    DONE_CAPTURE,
    FILE_TEMPLATE,
    FILE_WRITE_STREAM,
    HDF,
    HDF_DATASET,
    IDLE_STATES,
    IMAGE,
    IMAGE_MODE_MULTIPLE,
    MONITORED,
    OFF,
    ON,
    PERKINELMER,
    TRIGGER_INTERNAL,
    is_on,
    max_array_bytes,
    pixels_from_wire,
    state_level,
)
from microct.drivers.epics_area_detector.models import CAM_PREFIX, HDF_PREFIX, IMAGE_PREFIX, PerkinElmerOptions

log = logging.getLogger("microct.drivers.epics_area_detector")


class AreaDetectorOptions(DriverOptions):
    """``[detector.options]`` of the ``epics-ad`` driver."""

    rows: int = Field(ge=1, le=16384, description="sensor rows, unbinned (checked against MaxSizeY_RBV)")
    columns: int = Field(ge=1, le=16384, description="sensor columns, unbinned (checked against MaxSizeX_RBV)")
    pixel_pitch_um: float = Field(gt=0, description="unbinned pixel pitch (µm): the IOC does not report it")
    bit_depth: int = Field(default=16, ge=8, le=16, description="bits the panel digitises: a pixel at 2^bit_depth − 1 "
                           "counts is saturated; the IOC does not report it (frames travel as UInt16 either way)")
    exposure_range_s: tuple[float, float] = Field(default=(0.001, 60.0), description="allowed AcquireTime (s), low "
                                                  "to high: the IOC does not report the panel's range")
    binnings: tuple[int, ...] = Field(default=(1,), description="binnings allowed, each written to BinX and BinY; "
                                      "the IOC's ArraySizeX_RBV / ArraySizeY_RBV must then be columns and rows / "
                                      "binning")
    cam: str = Field(default=CAM_PREFIX, description="the ADBase driver's prefix after the detector prefix "
                     "(R=cam1: in the example IOCs' st.cmd)")
    image: str = Field(default=IMAGE_PREFIX, description="the NDStdArrays plugin's prefix after the detector prefix "
                       "(R=image1: in the example IOCs' st.cmd): the pixels of frames = 'pull'; its callbacks are "
                       "turned off for 'hdf5-file'")
    hdf: str = Field(default=HDF_PREFIX, description="the NDFileHDF5 plugin's prefix after the detector prefix "
                     "(R=HDF1: in ADCore's EXAMPLE_commonPlugins.cmd); used by frames = 'hdf5-file' only")
    frames: Literal["pull", "hdf5-file"] = Field(default="pull", description="'pull': pixels over Channel Access, "
                                                 "as ArrayData monitor updates of the image plugin; 'hdf5-file': the "
                                                 "IOC's HDF5 plugin writes the frames and the scan file refers to "
                                                 "them (needs ioc_file_path)")
    ioc_file_path: str | None = Field(default=None, description="hdf5-file: the folder as the IOC sees it")
    local_file_path: str | None = Field(default=None, description="hdf5-file: the same folder as this computer "
                                                                  "sees it (default: ioc_file_path)")
    file_name: str = Field(default="microct", description="hdf5-file: file name stem (the IOC adds _NNNNNN.h5)")
    readout_s: float = Field(default=0.0, ge=0, description="time per frame beyond the exposure, for time-outs")
    frame_timeout_margin_s: float = Field(default=5.0, gt=0, description="allowed beyond n × (exposure + readout_s) "
                                          "for Acquire's put-callback, and for the HDF5 plugin to write the frames "
                                          "after it (s)")
    perkinelmer: PerkinElmerOptions | None = Field(default=None, description="ADPerkinElmer's correction settings, "
                                                   "put at the first use after connect; unset: none are put, and "
                                                   "acquire_offset() / acquire_gain() are refused")
    addr_list: str | None = Field(default=None, description="EPICS_CA_ADDR_LIST; default: the environment's")
    connect_timeout_s: float = Field(default=2.0, gt=0, description="for every PV to connect at connect, and for "
                                     "each read's reply (s)")
    put_timeout_s: float = Field(default=5.0, gt=0, description="for a put-callback to complete, and for Capture to "
                                 "start; Acquire and the corrections have their own time-outs (s)")
    correction_timeout_s: float = Field(default=300.0, gt=0, description="longest an offset or gain "
                                                                         "acquisition may take (s)")

    @model_validator(mode="after")
    def _file_mode_needs_a_folder(self):
        if self.frames == "hdf5-file" and not self.ioc_file_path:
            raise ValueError("frames = 'hdf5-file' needs ioc_file_path (the folder the IOC writes into)")
        low, high = self.exposure_range_s
        if not 0 < low <= high:
            raise ValueError(f"exposure_range_s=({low}, {high}): need 0 < low <= high")
        return self

    def max_array_bytes(self) -> int:
        """EPICS_CA_MAX_ARRAY_BYTES a whole unbinned frame needs (2 bytes a pixel, plus headroom)."""
        return max_array_bytes(self.rows, self.columns)


class AreaDetector(Detector):
    """A detector driven through an areaDetector IOC; see the module docstring for the frame paths."""

    backend = "EPICS"
    Options = AreaDetectorOptions

    def __init__(self, name: str, options: AreaDetectorOptions, connection: str | None = None, *,
                 clock: Clock | None = None) -> None:
        if not connection:
            raise ConfigurationError(f"detector {name!r}: connection must be the areaDetector prefix (e.g. 13PE1:)")
        self.options = opts = options
        caps = DetectorCapabilities((opts.rows, opts.columns), opts.pixel_pitch_um, opts.bit_depth,
                                    opts.exposure_range_s, opts.binnings, (TriggerMode.SOFTWARE, TriggerMode.INTERNAL))
        super().__init__(name, caps, clock)
        self.prefix = connection
        names = {key: connection + opts.cam + pv for key, pv in CAM.items()}
        names |= {key: connection + opts.image + pv for key, pv in IMAGE.items()}
        if opts.frames == "hdf5-file":
            names |= {key: connection + opts.hdf + pv for key, pv in HDF.items()}
        if opts.perkinelmer is not None:
            names |= {key: connection + opts.cam + pv for key, pv in PERKINELMER.items()}
        present = tuple(key for key in MONITORED if key in names)
        self._ca = ChannelAccess(names, who=self.who, timeout_s=opts.connect_timeout_s,
                                 put_timeout_s=opts.put_timeout_s, monitored=present)
        # before any driver starts Channel Access in this process: large arrays need the limit raised
        configure_environment(opts.addr_list, False if opts.addr_list else None, opts.max_array_bytes())
        self._arrived: collections.deque[tuple[int, np.ndarray, float]] = collections.deque()
        self._arrival = threading.Condition()
        self._num_images: int | None = None
        self._capturing = False
        self._file: str | None = None

    def pv(self, key: str) -> str:
        """The full PV name of a key (``"acquire"`` → ``13PE1:cam1:Acquire``)."""
        return self._ca.names[key]

    @property
    def writes_own_files(self) -> bool:
        return self.options.frames == "hdf5-file"

    # -- lifecycle -----------------------------------------------------------------------------------
    def _do_connect(self) -> None:
        self._ca.connect()
        self._num_images = None
        self._capturing = False
        self._file = None

    def _after_connect(self) -> None:
        ca, opts = self._ca, self.options
        size = int(ca.get("max_y", fresh=True)), int(ca.get("max_x", fresh=True))
        if size != self.capabilities.shape:
            raise self._error(ConfigurationError, f"rows × columns = {opts.rows} × {opts.columns} in the options, "
                                                  f"but the IOC reports {size[0]} × {size[1]} "
                                                  f"({self.pv('max_y')}, {self.pv('max_x')})")
        data_type = ca.get("data_type", as_string=True, fresh=True)
        if data_type != DATA_TYPE:
            raise self._error(ConfigurationError, f"{self.pv('data_type')} is {data_type!r}; microct records "
                                                  f"{DATA_TYPE} frames (set DataType to {DATA_TYPE} in the IOC)")
        state = ca.get("state", as_string=True, fresh=True)
        if state not in IDLE_STATES:
            raise self._error(DeviceStateError, f"{self.pv('state')} is {state!r}, not Idle: is another client "
                                                f"acquiring? (stop it, or put 0 to {self.pv('acquire')})")
        for key in MONITORED:  # have every monitored value at hand
            if key in ca.monitored and key != "array_data":
                ca.get(key)
        ca.subscribe("array_data", self._on_array)
        super()._after_connect()

    def _do_prepare(self) -> None:
        """The set-up connect leaves out (it writes nothing): image mode Multiple, array callbacks on, the
        image plugin on (off for hdf5-file), the HDF5 plugin's stream file (closing a capture a dead client
        left running), ADPerkinElmer's correction settings. At the first setter or acquisition."""
        ca, opts = self._ca, self.options
        ca.put("image_mode", IMAGE_MODE_MULTIPLE)
        ca.put("array_callbacks", ON)
        ca.put("image_enable", OFF if self.writes_own_files else ON)
        if self.writes_own_files:
            if is_on(ca.get("capture_rbv", fresh=True), DONE_CAPTURE):  # left running by a client that died
                log.warning("detector %r: %s was still capturing (a previous run did not close its file); "
                            "closing that file", self.name, self.pv("capture"))
                ca.put("capture", OFF)
            ca.put("write_mode", FILE_WRITE_STREAM)
            ca.put("num_capture", 0)  # until Capture = 0
            ca.put("file_path", opts.ioc_file_path)
            ca.put("file_name", opts.file_name)
            ca.put("file_template", FILE_TEMPLATE)
            ca.put("auto_increment", ON)  # each capture a new file: a resumed scan never overwrites the last
        if opts.perkinelmer is not None:
            pe = opts.perkinelmer
            for key, value in (("pe_use_offset", pe.use_offset), ("pe_use_gain", pe.use_gain),
                               ("pe_use_pixel_correction", pe.use_pixel_correction),
                               ("pe_offset_constant", pe.offset_constant),
                               ("pe_num_offset_frames", pe.num_offset_frames),
                               ("pe_num_gain_frames", pe.num_gain_frames)):
                ca.put(key, int(value))

    def _do_close(self) -> None:
        try:  # an acquisition only this client can have started: none before its first use (prepared)
            if self.prepared and is_on(self._ca.get("acquire_rbv"), DONE_ACQUIRE):
                self._ca.put("acquire", OFF)
            if self._capturing:
                self._ca.put("capture", OFF)
        except CommunicationError:
            pass  # the IOC is gone: nothing left to stop
        finally:
            self._capturing = False
            self._ca.close()

    # -- settings --------------------------------------------------------------------------------------
    def _do_set_exposure_s(self, exposure_s: float) -> None:
        self._ca.put("acquire_time", exposure_s)
        self._ca.put("acquire_period", 0.0)  # as fast as exposure and readout allow

    def _do_set_binning(self, binning: int) -> None:
        self._ca.put("bin_x", binning)
        self._ca.put("bin_y", binning)
        rows, cols = self.capabilities.shape
        wanted = rows // binning, cols // binning
        got = int(self._ca.get("size_y", fresh=True)), int(self._ca.get("size_x", fresh=True))
        if got != wanted:
            raise self._error(ConfigurationError, f"binning {binning}: the IOC reports frames of {got[0]} × {got[1]} "
                                                  f"({self.pv('size_y')}, {self.pv('size_x')}), expected {wanted}")

    def _do_set_trigger_mode(self, mode: TriggerMode) -> None:
        self._ca.put("trigger_mode", TRIGGER_INTERNAL)  # Acquire starts the exposures (software and internal alike)

    # -- PerkinElmer corrections -----------------------------------------------------------------------
    def acquire_offset(self) -> None:
        """PerkinElmer: take ``num_offset_frames`` dark frames as the offset (the beam must be off)."""
        self._correction("pe_acquire_offset")

    def acquire_gain(self) -> None:
        """PerkinElmer: take ``num_gain_frames`` flat frames as the gain reference (beam on, no sample)."""
        self._correction("pe_acquire_gain")

    def _correction(self, key: str) -> None:
        self._require_connected()
        if self.options.perkinelmer is None:
            raise self._error(ConfigurationError, "offset / gain acquisition needs [options.perkinelmer]")
        self._ca.put(key, ON, timeout_s=self.options.correction_timeout_s)

    # -- frames ----------------------------------------------------------------------------------------
    def _on_array(self, value: Any, timestamp: float) -> None:
        """ArrayData monitor (CA thread): keep it with the UniqueId posted just before it."""
        if not isinstance(value, np.ndarray):
            return  # the one-element initial value of an empty waveform
        try:
            uid = int(self._ca.get("unique_id"))
        except CommunicationError:
            return  # an update still queued in pyepics as the channels close
        with self._arrival:
            self._arrived.append((uid, value, timestamp))
            self._arrival.notify_all()

    def _counters(self) -> dict[str, int]:
        keys = ("counter", "image_counter", "dropped") if not self.writes_own_files else ("counter", "num_captured")
        return {key: int(value) for key, value in zip(keys, self._ca.get_fresh(*keys), strict=True)}  # 1 trip

    def _frame_budget_s(self, n: int) -> float:
        return n * (self.exposure_s + self.options.readout_s) + self.options.frame_timeout_margin_s

    def _run(self, n: int) -> tuple[dict[str, int], float]:
        """Acquire ``n`` frames; wait for Acquire's put-callback. Returns (counters before, start time)."""
        if n != self._num_images:
            self._ca.put("num_images", n)
            self._num_images = n
        before = self._counters()
        with self._arrival:
            self._arrived.clear()
        start = self.clock.time()
        try:
            self._ca.put("acquire", ON, timeout_s=self._frame_budget_s(n))
        except DeviceTimeoutError:
            self._ca.put("acquire", OFF, wait=False)
            raise self._error(DeviceTimeoutError, f"{n} frame(s) of {self.exposure_s:g} s not done within "
                                                  f"{self._frame_budget_s(n):g} s ({self.pv('acquire')} "
                                                  f"put-callback)") from None
        return before, start

    def _do_acquire(self, n: int) -> list[Frame]:
        if self.writes_own_files:
            return self._acquire_to_file(n)
        before, start = self._run(n)
        after = self._counters()
        deadline = self.clock.monotonic() + 1.0  # monitor updates may trail the put-callback
        with self._arrival:
            while len(self._arrived) < n and self.clock.monotonic() < deadline:
                self._arrival.wait(0.05)
            arrived = list(self._arrived)
            self._arrived.clear()
        made = after["counter"] - before["counter"]
        passed = after["image_counter"] - before["image_counter"]
        dropped = after["dropped"] - before["dropped"]
        if made != n or passed != n or dropped or len(arrived) != n:
            raise self._error(FrameLostError, f"asked for {n} frame(s): the detector made {made} "
                                              f"({self.pv('counter')}), {self.options.image} passed {passed} and "
                                              f"dropped {dropped} ({self.pv('dropped')}), {len(arrived)} arrived here")
        rows, cols = self.shape
        frames = []
        for uid, value, stamp in arrived:
            if value.size != rows * cols:
                raise self._error(FrameLostError, f"frame {uid}: {value.size} pixels arrived, expected {rows} × {cols}"
                                                  f" (EPICS_CA_MAX_ARRAY_BYTES too small on the IOC or here?)")
            frames.append(Frame(pixels_from_wire(value, rows, cols), uid, stamp or start))
        return frames

    # -- HDF5 file plugin -----------------------------------------------------------------------------
    def _start_capture(self) -> None:
        self._ca.put("hdf_enable", ON)
        self._ca.put("capture", ON, wait=False, callback=lambda: None)  # busy until Capture = 0
        self._ca.wait_until("capture_rbv", lambda value: is_on(value, DONE_CAPTURE), self.options.put_timeout_s)
        ioc_name = str(self._ca.get("full_file_name", as_string=True, fresh=True))
        self._file = self._local_path(ioc_name)
        self._capturing = True

    def _local_path(self, ioc_name: str) -> str:
        """The IOC's file name as this computer reads it (``ioc_file_path`` → ``local_file_path``)."""
        ioc_dir, local_dir = self.options.ioc_file_path, self.options.local_file_path
        if local_dir is None:
            return ioc_name
        relative = PurePosixPath(ioc_name).relative_to(PurePosixPath(ioc_dir))
        return str(PurePosixPath(local_dir) / relative)

    def _acquire_to_file(self, n: int) -> list[Frame]:
        if not self._capturing:
            self._start_capture()
        self._ca.put("hdf_enable", ON)
        before, start = self._run(n)
        try:  # the plugin may trail the acquisition
            self._ca.wait_until("num_captured", lambda value: int(value) >= before["num_captured"] + n,
                                self.options.frame_timeout_margin_s)
        except DeviceTimeoutError:
            pass  # a frame never reached the file: the counters below say which
        after = self._counters()
        made, written = after["counter"] - before["counter"], after["num_captured"] - before["num_captured"]
        if made != n or written != n:
            message = self._ca.get("write_message", as_string=True, fresh=True)
            raise self._error(FrameLostError, f"asked for {n} frame(s): the detector made {made}, the HDF5 plugin "
                                              f"wrote {written} ({self.pv('num_captured')}; {message!r})")
        first = before["num_captured"]  # frames in the file before these: its count since Capture began
        return [Frame(None, int(before["counter"]) + i + 1, start,
                      FrameFile(self._file, HDF_DATASET, first + i)) for i in range(n)]

    def _do_skip(self, n: int) -> None:
        if not self.writes_own_files:
            self._do_acquire(n)
            return
        self._ca.put("hdf_enable", OFF)  # frames the file must not hold
        try:
            self._run(n)
        finally:
            self._ca.put("hdf_enable", ON)

    def _do_check(self) -> list[Finding]:
        """``DetectorState_RBV`` and ``StatusMessage_RBV`` (codec ``state_level``): Error (and Disconnected)
        an error, an acquisition under way a warning; and, for hdf5-file, a capture left running."""
        state = str(self._ca.get("state", as_string=True, fresh=True))
        message = str(self._ca.get("status_message", as_string=True, fresh=True))
        findings = [Finding(state_level(state), "state", f"{state}: {message}" if message else state)]
        if self.writes_own_files and is_on(self._ca.get("capture_rbv", fresh=True), DONE_CAPTURE):
            findings.append(Finding("warning", "capture", f"{self.pv('capture')} is capturing (a previous run did "
                                                          f"not close its file); the first acquisition closes it"))
        return [*super()._do_check(), *findings]

    def _do_describe(self) -> dict[str, Any]:
        return {"prefix": self.prefix, **super()._do_describe(), "model": self._ca.get("model", as_string=True),
                "state": self._ca.get("state", as_string=True), "frames": self.options.frames}
