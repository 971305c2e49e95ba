"""A Channel Access IOC (caproto) serving an areaDetector subset in front of a SimulatedDetector.

PV groups under the detector prefix (e.g. ``CT:DET1:``), as the areaDetector documentation describes
them (ADCore "ADDriver", "NDPluginStdArrays", "NDPluginFile", "NDFileHDF5"; ADPerkinElmer) and
docs/protocols/areadetector.md. The names the driver uses, the enum tables, the HDF5 layout and the
pixel conversion come from the driver's package (``microct.drivers.epics_area_detector``: ``codec``,
``models``), so driver and IOC cannot drift apart:

- ``cam1:`` (ADBase): ``Acquire`` (busy: its put-callback completes when the acquisition is over),
  ``AcquireTime``, ``AcquirePeriod``, ``NumImages``, ``NumExposures``, ``ImageMode`` (Single,
  Multiple, Continuous), ``TriggerMode`` (Internal only: the simulation has no trigger input),
  ``BinX``/``BinY``, ``DataType`` (UInt16 only), ``ArrayCallbacks``, ``ArrayCounter``, each with its
  ``_RBV``, and ``DetectorState_RBV``, ``StatusMessage_RBV`` (why an acquisition failed),
  ``NumImagesCounter_RBV``, ``ArraySizeX/Y_RBV``, ``MaxSizeX/Y_RBV``, ``Manufacturer_RBV``, ``Model_RBV``;
  PerkinElmer extras with ``vendor="perkinelmer"``
  (``PEAcquireOffset``/``PENumOffsetFrames``/``PEUseOffset``/``PEOffsetConstant``, ``PEAcquireGain``/
  ``PENumGainFrames``/``PEUseGain``, ``PEUsePixelCorrection``).
- ``image1:`` (NDStdArrays): ``ArrayData`` (int16 waveform: Channel Access has no unsigned 16-bit
  type; clients reinterpret as uint16), ``EnableCallbacks``, ``ArrayCounter``, ``UniqueId_RBV``,
  ``TimeStamp_RBV``, ``ArraySize0/1/2_RBV``, ``NDimensions_RBV``, ``DroppedArrays``, ``PluginType_RBV``.
  Per frame, the counters and ``UniqueId_RBV`` are posted before ``ArrayData``.
- ``HDF1:`` (NDFileHDF5): ``FilePath``, ``FileName``, ``FileTemplate``, ``FileNumber``,
  ``AutoIncrement``, ``FileWriteMode`` (Stream only), ``NumCapture`` (0: until ``Capture`` = 0),
  ``Capture`` (busy), ``NumCaptured_RBV``, ``FullFileName_RBV``, ``WriteStatus``, ``WriteMessage``,
  ``EnableCallbacks``. Frames go to ``/entry/data/data`` (n × rows × columns, uint16), flushed per frame.

Pixels come from ``SimulatedDetector.acquire(1)`` (real clock: it sleeps the exposure), so the frames
show the phantom through whatever tube and stages the panel's ``DriverContext.devices`` hold.
``drop_frames`` (frame numbers, 1-based ArrayCounter values) makes ``image1:`` drop those arrays, as a
plugin whose queue is full does (``DroppedArrays`` counts them).

The panel's scheduled frame faults (``microct.simulators.faults``, its ``DriverContext.faults``):
frame_dropped is such a dropped array (counted, not passed on); frame_timeout is a frame that never
comes: the acquisition waits, busy, until ``Acquire`` = 0 stops it (as a panel waiting for a trigger).
``before_publish`` (an async callable), if set, runs before each frame is handed to the plugins.

For the detector fault contract, ``fault_hook()`` (the panel's ``SimulatedDetectorHook``): ``mute``
silences the IOC's PVs (``epics_ioc.Silence``: reads answered late, writes dropped, no frame published and
no ``Acquire`` completed until it speaks again); ``withhold_frames`` makes the panel's frames never come
(the acquisition waits, busy, as for frame_timeout; set ``panel.frame_timeout_s`` short so that the
panel gives up on the frame soon).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable

import h5py
import numpy as np
from caproto import ChannelType
from caproto.server import PVGroup, SubGroup, get_pv_pair_wrapper, pvproperty

from microct.drivers.epics_area_detector.codec import (
    CAM,
    DATA_TYPE,
    DATA_TYPES,
    DETECTOR_STATES,
    DISABLE_ENABLE,
    DONE_ACQUIRE,
    DONE_CAPTURE,
    FILE_TEMPLATE,
    FILE_WRITE_MODES,
    HDF,
    HDF_DATASET,
    IMAGE,
    IMAGE_MODES,
    NO_YES,
    OFF,
    ON,
    PERKINELMER,
    RBV,
    TRIGGER_INTERNAL,
    TRIGGER_MODES,
    file_name,
    pixels_to_wire,
    setpoint,
)
from microct.drivers.epics_area_detector.models import CAM_PREFIX, HDF_PREFIX, IMAGE_PREFIX, PerkinElmerOptions
from microct.errors import DeviceTimeoutError, FrameLostError
from microct.simulators.detector import SimulatedDetector, SimulatedDetectorHook
from microct.simulators.epics_ioc import IocHandle, Silence, run_ioc_in_thread, silences_of

log = logging.getLogger("microct.simulators.epics_ad_ioc")

pair = get_pv_pair_wrapper(setpoint_suffix="", readback_suffix=RBV)

PE_DEFAULTS = PerkinElmerOptions()
"""The PerkinElmer correction settings the IOC starts with (the driver's defaults)."""
ENABLE, DISABLE = DISABLE_ENABLE[ON], DISABLE_ENABLE[OFF]
PANEL_PORT = "PANEL1"
"""The asyn port name of the simulated driver (plugins take their arrays from NDArrayPort)."""
PATH_LENGTH = 256


def _enum(strings: tuple[str, ...], value: str | None = None) -> dict:
    return {"dtype": ChannelType.ENUM, "enum_strings": strings, "value": value or strings[0]}


def _text(value: str = "") -> dict:
    """A char-waveform string PV, as areaDetector's long file paths."""
    return {"dtype": ChannelType.CHAR, "max_length": PATH_LENGTH, "string_encoding": "latin-1", "value": value}


class _Settings(PVGroup):
    """Set-point / ``_RBV`` pairs whose puts go through ``accept(name, value)`` of the IOC."""

    async def _accept(self, name: str, value):
        return await self.parent.accept(self, name, value)


def _setting(name: str, **spec):
    async def put(obj, instance, value):
        value = await obj.parent._accept(name, value)
        await obj.readback.write(value)
        return value

    return pair(name=name, put=put, **spec)


class CamGroup(_Settings):
    acquire = pair(name=CAM["acquire"], **_enum(DONE_ACQUIRE))
    acquire_time = _setting(CAM["acquire_time"], dtype=float, value=0.1)
    acquire_period = _setting(CAM["acquire_period"], dtype=float, value=0.0)
    num_images = _setting(CAM["num_images"], dtype=int, value=1)
    num_exposures = _setting("NumExposures", dtype=int, value=1)
    image_mode = _setting(CAM["image_mode"], **_enum(IMAGE_MODES))
    trigger_mode = _setting(CAM["trigger_mode"], **_enum(TRIGGER_MODES[TRIGGER_INTERNAL:TRIGGER_INTERNAL + 1]))
    bin_x = _setting(CAM["bin_x"], dtype=int, value=1)
    bin_y = _setting(CAM["bin_y"], dtype=int, value=1)
    data_type = _setting(setpoint(CAM["data_type"]), **_enum(DATA_TYPES, DATA_TYPE))
    array_callbacks = _setting(CAM["array_callbacks"], **_enum(DISABLE_ENABLE, ENABLE))
    array_counter = _setting(setpoint(CAM["counter"]), dtype=int, value=0)
    detector_state = pvproperty(name=CAM["state"], read_only=True, **_enum(DETECTOR_STATES))
    status_message = pvproperty(name=CAM["status_message"], read_only=True, **_text())
    num_images_counter = pvproperty(name="NumImagesCounter_RBV", dtype=int, value=0, read_only=True)
    array_size_x = pvproperty(name=CAM["size_x"], dtype=int, value=0, read_only=True)
    array_size_y = pvproperty(name=CAM["size_y"], dtype=int, value=0, read_only=True)
    max_size_x = pvproperty(name=CAM["max_x"], dtype=int, value=0, read_only=True)
    max_size_y = pvproperty(name=CAM["max_y"], dtype=int, value=0, read_only=True)
    manufacturer = pvproperty(name="Manufacturer_RBV", dtype=ChannelType.STRING, value="microct", read_only=True)
    model = pvproperty(name=CAM["model"], dtype=ChannelType.STRING, value="simulated flat panel", read_only=True)
    port_name = pvproperty(name="PortName_RBV", dtype=ChannelType.STRING, value=PANEL_PORT, read_only=True)

    @acquire.setpoint.putter
    async def acquire(obj, instance, value):
        return await obj.parent.parent.acquire_put(obj, instance, value)

    @detector_state.startup
    async def detector_state(self, instance, async_lib):
        await self.parent.startup()


class PerkinElmerGroup(_Settings):
    """ADPerkinElmer's offset and gain correction PVs (its ``PerkinElmer.template``), starting at the
    driver's defaults (``models.PerkinElmerOptions``)."""

    pe_acquire_offset = pvproperty(name=PERKINELMER["pe_acquire_offset"], value=0,
                                   doc="busy: 1 acquires the offset frames")
    pe_num_offset_frames = _setting(PERKINELMER["pe_num_offset_frames"], dtype=int,
                                    value=PE_DEFAULTS.num_offset_frames)
    pe_use_offset = _setting(PERKINELMER["pe_use_offset"],
                             **_enum(DISABLE_ENABLE, DISABLE_ENABLE[int(PE_DEFAULTS.use_offset)]))
    pe_offset_constant = _setting(PERKINELMER["pe_offset_constant"], dtype=int, value=PE_DEFAULTS.offset_constant)
    pe_acquire_gain = pvproperty(name=PERKINELMER["pe_acquire_gain"], value=0,
                                 doc="busy: 1 acquires the gain (flat) frames")
    pe_num_gain_frames = _setting(PERKINELMER["pe_num_gain_frames"], dtype=int, value=PE_DEFAULTS.num_gain_frames)
    pe_use_gain = _setting(PERKINELMER["pe_use_gain"],
                           **_enum(DISABLE_ENABLE, DISABLE_ENABLE[int(PE_DEFAULTS.use_gain)]))
    pe_use_pixel_correction = _setting(PERKINELMER["pe_use_pixel_correction"],
                                       **_enum(DISABLE_ENABLE, DISABLE_ENABLE[int(PE_DEFAULTS.use_pixel_correction)]))

    @pe_acquire_offset.putter
    async def pe_acquire_offset(self, instance, value):
        if value:
            await self.parent.acquire_correction("offset", int(self.pe_num_offset_frames.readback.value))
        return 0

    @pe_acquire_gain.putter
    async def pe_acquire_gain(self, instance, value):
        if value:
            await self.parent.acquire_correction("gain", int(self.pe_num_gain_frames.readback.value))
        return 0


def _image_group(max_pixels: int) -> type[PVGroup]:
    class ImageGroup(_Settings):
        enable = _setting(IMAGE["image_enable"], **_enum(DISABLE_ENABLE, ENABLE))
        blocking = _setting("BlockingCallbacks", **_enum(NO_YES))
        array_counter = _setting(setpoint(IMAGE["image_counter"]), dtype=int, value=0)
        dropped = _setting(setpoint(IMAGE["dropped"]), dtype=int, value=0)
        unique_id = pvproperty(name=IMAGE["unique_id"], dtype=int, value=0, read_only=True)
        time_stamp = pvproperty(name="TimeStamp_RBV", dtype=float, value=0.0, read_only=True)
        size0 = pvproperty(name=IMAGE["size0"], dtype=int, value=0, read_only=True)
        size1 = pvproperty(name=IMAGE["size1"], dtype=int, value=0, read_only=True)
        size2 = pvproperty(name="ArraySize2_RBV", dtype=int, value=0, read_only=True)
        ndimensions = pvproperty(name="NDimensions_RBV", dtype=int, value=2, read_only=True)
        data_type = pvproperty(name="DataType_RBV", read_only=True, **_enum(DATA_TYPES, DATA_TYPE))
        plugin_type = pvproperty(name="PluginType_RBV", dtype=ChannelType.STRING, value="NDPluginStdArrays",
                                 read_only=True)
        port_name = pvproperty(name="PortName_RBV", dtype=ChannelType.STRING, value="IMAGE1", read_only=True)
        nd_array_port = _setting("NDArrayPort", dtype=ChannelType.STRING, value=PANEL_PORT)
        array_data = pvproperty(name=IMAGE["array_data"], dtype=ChannelType.INT, value=np.zeros(1, np.int16),
                                max_length=max_pixels, read_only=True)

    return ImageGroup


class HDF5Group(_Settings):
    enable = _setting(HDF["hdf_enable"], **_enum(DISABLE_ENABLE, DISABLE))
    file_path = _setting(HDF["file_path"], **_text())
    file_name = _setting(HDF["file_name"], **_text("scan"))
    file_template = _setting(HDF["file_template"], **_text(FILE_TEMPLATE))
    file_number = _setting("FileNumber", dtype=int, value=1)
    auto_increment = _setting(HDF["auto_increment"], **_enum(NO_YES, NO_YES[ON]))
    file_write_mode = _setting(HDF["write_mode"], **_enum(FILE_WRITE_MODES, "Stream"))
    num_capture = _setting(HDF["num_capture"], dtype=int, value=0)
    capture = pair(name=HDF["capture"], **_enum(DONE_CAPTURE))
    num_captured = pvproperty(name=HDF["num_captured"], dtype=int, value=0, read_only=True)
    full_file_name = pvproperty(name=HDF["full_file_name"], read_only=True, **_text())
    write_status = pvproperty(name="WriteStatus", read_only=True, **_enum(("Write OK", "Write error")))
    write_message = pvproperty(name=HDF["write_message"], read_only=True, **_text())
    file_path_exists = pvproperty(name="FilePathExists_RBV", read_only=True, **_enum(NO_YES))
    port_name = pvproperty(name="PortName_RBV", dtype=ChannelType.STRING, value="HDF1", read_only=True)
    nd_array_port = _setting("NDArrayPort", dtype=ChannelType.STRING, value=PANEL_PORT)

    @capture.setpoint.putter
    async def capture(obj, instance, value):
        return await obj.parent.parent.capture_put(obj, instance, value)


def make_ioc_class(max_pixels: int, vendor: str | None) -> type[PVGroup]:
    """The IOC class for a panel of ``max_pixels`` pixels; ``vendor`` "perkinelmer" adds its PVs to cam1:."""
    if vendor not in (None, "perkinelmer"):
        raise ValueError(f"vendor={vendor!r}: known vendors are None and 'perkinelmer'")

    class AreaDetectorIOC(_AreaDetectorIOC):
        cam = SubGroup(CamGroup, prefix=CAM_PREFIX)
        image = SubGroup(_image_group(max_pixels), prefix=IMAGE_PREFIX)
        hdf = SubGroup(HDF5Group, prefix=HDF_PREFIX)
        if vendor == "perkinelmer":
            pe = SubGroup(PerkinElmerGroup, prefix=CAM_PREFIX)

    return AreaDetectorIOC


class _AreaDetectorIOC(PVGroup):
    """The acquisition logic; the PV groups are added by ``make_ioc_class``."""

    def __init__(self, *args, panel: SimulatedDetector, drop_frames: Iterable[int] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.panel = panel
        self.drop_frames = set(drop_frames)
        self._acquiring: asyncio.Task | None = None
        self._stop_requested = False
        self._stopping = asyncio.Event()  # set with _stop_requested: wakes an acquisition waiting for a frame
        self.before_publish: Callable[[], Awaitable[None]] | None = None
        self._hdf: h5py.File | None = None
        self._capture_done = asyncio.Event()
        self._offset: np.ndarray | None = None
        self._gain: np.ndarray | None = None
        self.silence = Silence()
        self.frames_made = 0
        """Frames the panel produced (ArrayCounter), for tests."""

    def fault_hook(self) -> SimulatedDetectorHook:
        """The detector fault contract's hook on this panel (see the module docstring)."""
        return self.panel.fault_hook(mute=self.silence.mute)

    # -- settings ------------------------------------------------------------------------------------
    async def accept(self, group: PVGroup, name: str, value):
        """Check and apply a setting put; raising refuses the put (the client sees a put failure)."""
        bins = (CAM["bin_x"], CAM["bin_y"])
        if self._acquiring is not None and name in (*bins, setpoint(CAM["data_type"])):
            raise RuntimeError(f"{name} cannot change while acquiring")
        if name == CAM["acquire_time"]:
            self.panel.set_exposure_s(float(value))
        elif name in bins:
            other = self.cam.bin_y if name == CAM["bin_x"] else self.cam.bin_x
            binning = int(value)
            if binning not in self.panel.capabilities.binnings:
                raise ValueError(f"{name}={binning}: allowed {list(self.panel.capabilities.binnings)}")
            if binning == other.readback.value:  # the panel bins square: apply when both agree
                self.panel.set_binning(binning)
                await self._post_sizes()
        elif name == setpoint(CAM["data_type"]) and value != DATA_TYPE:
            raise ValueError(f"{name}={value}: the simulated panel gives {DATA_TYPE} only")
        elif name in (CAM["num_images"], "NumExposures") and int(value) < 1:
            raise ValueError(f"{name}={value}: must be >= 1")
        elif name == HDF["file_path"]:  # as asynNDArrayDriver::checkPath: add the trailing slash, report existence
            value = value if value.endswith("/") or not value else value + "/"
            await self.hdf.file_path_exists.write(NO_YES[ON] if os.path.isdir(value) else NO_YES[OFF])
        elif name == HDF["write_mode"] and value != "Stream":
            raise ValueError(f"FileWriteMode={value}: the simulated HDF5 plugin writes Stream only")
        return value

    async def _post_sizes(self) -> None:
        rows, cols = self.panel.shape
        await self.cam.array_size_x.write(cols)
        await self.cam.array_size_y.write(rows)

    # -- acquisition ---------------------------------------------------------------------------------
    async def acquire_put(self, pair_group, instance, value):
        """``cam1:Acquire``: 1 runs the acquisition and completes when it is over; 0 stops it."""
        if value == DONE_ACQUIRE[OFF] or value == OFF:
            self._stop_requested = True
            self._stopping.set()
            if self._acquiring is not None:
                await asyncio.wait({self._acquiring})
            return DONE_ACQUIRE[OFF]
        if self._acquiring is not None:
            if not self._stop_requested:
                return DONE_ACQUIRE[ON]  # already running: the record ignores a second start
            await asyncio.wait({self._acquiring})  # a stop under way: this start follows it, in order
        self._stop_requested = False
        self._stopping.clear()
        await instance.write(DONE_ACQUIRE[ON], verify_value=False)
        await pair_group.readback.write(DONE_ACQUIRE[ON])
        acquiring = self._acquiring = asyncio.ensure_future(self._run_acquisition())
        try:
            await asyncio.wait({acquiring})
        finally:
            if self._acquiring is acquiring:  # (not a newer acquisition, started once this one stopped)
                self._acquiring = None
                await self.silence.heard()  # a silent IOC completes no acquisition
                await pair_group.readback.write(DONE_ACQUIRE[OFF])
        return DONE_ACQUIRE[OFF]

    async def _run_acquisition(self) -> None:
        cam = self.cam
        mode = cam.image_mode.readback.value
        total = 1 if mode == "Single" else int(cam.num_images.readback.value) if mode == "Multiple" else None
        loop = asyncio.get_running_loop()
        await cam.num_images_counter.write(0)
        done = 0
        try:
            while (total is None or done < total) and not self._stop_requested:
                began = loop.time()
                await cam.detector_state.write("Acquire")
                try:
                    frame = await loop.run_in_executor(None, self._expose)
                except FrameLostError:  # a scheduled fault: the frame is made, the plugin drops it
                    frame = None
                except DeviceTimeoutError:  # a scheduled fault: the frame never comes
                    await cam.detector_state.write("Waiting")
                    await self._stopping.wait()
                    break
                await cam.detector_state.write("Readout")
                done += 1
                await cam.num_images_counter.write(done)
                await self.silence.heard()  # a silent IOC publishes nothing
                if self.before_publish is not None:
                    await self.before_publish()
                await self._publish(frame)
                period = float(cam.acquire_period.readback.value)
                await asyncio.sleep(max(began + period - loop.time(), 0.0))
        except Exception as error:
            log.exception("acquisition failed")
            await cam.status_message.write(f"acquisition failed: {error}"[:PATH_LENGTH - 1])
            await cam.detector_state.write("Error")
            raise RuntimeError(f"acquisition failed: {error}") from error
        await cam.detector_state.write("Aborted" if self._stop_requested and total != done else "Idle")

    def _expose(self) -> np.ndarray:
        """One corrected frame from the panel (runs in a worker thread: it sleeps the exposure)."""
        raw = self.panel.acquire(1)[0].data
        if self._offset is None and self._gain is None:
            return raw
        pe = self.pe
        frame = raw.astype(np.float32)
        if self._offset is not None and pe.pe_use_offset.readback.value == ENABLE:
            frame -= self._offset
            frame += float(pe.pe_offset_constant.readback.value)
        if self._gain is not None and pe.pe_use_gain.readback.value == ENABLE:
            frame *= self._gain
        return np.clip(np.rint(frame), 0, self.panel.saturation_value).astype(np.uint16)

    async def acquire_correction(self, which: str, n: int) -> None:
        """PerkinElmer: average ``n`` frames as the offset (dark) or gain (flat) reference."""
        loop = asyncio.get_running_loop()
        frames = [await loop.run_in_executor(None, lambda: self.panel.acquire(1)[0].data) for _ in range(max(n, 1))]
        mean = np.mean(frames, axis=0, dtype=np.float64)
        if which == "offset":
            self._offset = mean.astype(np.float32)
            return
        signal = mean - (self._offset if self._offset is not None else 0.0)
        signal = np.maximum(signal, 1.0)
        self._gain = (signal.mean() / signal).astype(np.float32)

    async def _publish(self, frame: np.ndarray | None) -> None:
        """Count the frame and hand it to the plugins (image1: and HDF1:), as the driver's callbacks do;
        a frame None (lost) is counted and dropped by ``image1:``."""
        cam, image = self.cam, self.image
        self.frames_made += 1
        counter = int(cam.array_counter.readback.value) + 1
        await cam.array_counter.setpoint.write(counter, verify_value=False)
        await cam.array_counter.readback.write(counter)
        if cam.array_callbacks.readback.value != ENABLE:
            return
        stamp = time.time()
        if image.enable.readback.value == ENABLE:
            if counter in self.drop_frames or frame is None:
                await image.dropped.readback.write(int(image.dropped.readback.value) + 1)
            else:
                rows, cols = frame.shape
                plugin_count = int(image.array_counter.readback.value) + 1
                await image.array_counter.readback.write(plugin_count)
                await image.unique_id.write(counter)
                await image.time_stamp.write(stamp)
                for prop, value in ((image.size0, cols), (image.size1, rows), (image.size2, 0)):
                    if prop.value != value:
                        await prop.write(value)
                await image.array_data.write(pixels_to_wire(frame), timestamp=stamp)
        if frame is not None and self._hdf is not None and self.hdf.enable.readback.value == ENABLE:
            await self._write_hdf(frame)

    # -- HDF5 file plugin -------------------------------------------------------------------------------
    async def capture_put(self, pair_group, instance, value):
        """``HDF1:Capture``: 1 opens the next file and captures (busy until done); 0 closes the file."""
        hdf = self.hdf
        if value == DONE_CAPTURE[OFF] or value == OFF:
            await self._close_hdf()
            await pair_group.readback.write(DONE_CAPTURE[OFF])
            return DONE_CAPTURE[OFF]
        if self._hdf is not None:
            return DONE_CAPTURE[ON]
        directory = str(hdf.file_path.readback.value)
        if not os.path.isdir(directory):
            await hdf.write_status.write("Write error")
            await hdf.write_message.write(f"directory does not exist: {directory}")
            raise ValueError(f"FilePath {directory!r} does not exist")
        name = file_name(str(hdf.file_template.readback.value), directory, str(hdf.file_name.readback.value),
                         int(hdf.file_number.readback.value))
        rows, cols = self.panel.shape
        self._hdf = h5py.File(name, "w-")
        self._hdf.create_dataset(HDF_DATASET, shape=(0, rows, cols), maxshape=(None, rows, cols),
                                 dtype=np.uint16, chunks=(1, rows, cols))
        await hdf.full_file_name.write(name)
        await hdf.num_captured.write(0)
        await hdf.write_status.write("Write OK")
        await hdf.write_message.write("")
        await instance.write(DONE_CAPTURE[ON], verify_value=False)
        await pair_group.readback.write(DONE_CAPTURE[ON])
        self._capture_done.clear()
        await self._capture_done.wait()
        await pair_group.readback.write(DONE_CAPTURE[OFF])
        return DONE_CAPTURE[OFF]

    async def _write_hdf(self, frame: np.ndarray) -> None:
        dataset = self._hdf[HDF_DATASET]
        index = dataset.shape[0]
        dataset.resize(index + 1, axis=0)
        dataset[index] = frame
        self._hdf.flush()
        await self.hdf.num_captured.write(index + 1)
        wanted = int(self.hdf.num_capture.readback.value)
        if wanted and index + 1 >= wanted:
            await self._close_hdf()

    async def _close_hdf(self) -> None:
        if self._hdf is None:
            return
        self._hdf.close()
        self._hdf = None
        hdf = self.hdf
        if hdf.auto_increment.readback.value == NO_YES[ON]:
            number = int(hdf.file_number.readback.value) + 1
            await hdf.file_number.setpoint.write(number, verify_value=False)
            await hdf.file_number.readback.write(number)
        self._capture_done.set()

    # -- start-up ------------------------------------------------------------------------------------------
    async def startup(self) -> None:
        rows, cols = self.panel.capabilities.shape
        cam = self.cam
        await cam.max_size_x.write(cols)
        await cam.max_size_y.write(rows)
        for prop, value in ((cam.acquire_time, self.panel.exposure_s), (cam.bin_x, self.panel.binning),
                            (cam.bin_y, self.panel.binning)):
            await prop.setpoint.write(value, verify_value=False)
            await prop.readback.write(value)
        await self._post_sizes()


def build(prefix: str, panel: SimulatedDetector, vendor: str | None = None,
          drop_frames: Iterable[int] = ()) -> PVGroup:
    """The areaDetector PV group in front of ``panel`` (connected here if it is not); not served yet."""
    if not panel.connected:
        panel.connect()
    rows, cols = panel.capabilities.shape
    return make_ioc_class(rows * cols, vendor)(prefix=prefix, panel=panel, drop_frames=drop_frames)


def start_ad_ioc(prefix: str, panel: SimulatedDetector, port: int = 0, *, vendor: str | None = None,
                 drop_frames: Iterable[int] = (), timeout_s: float = 5.0) -> IocHandle:
    """Run the areaDetector IOC for ``panel`` in a daemon thread on 127.0.0.1 (``port`` 0: a free one).

    ``handle.ioc`` is the PVGroup (for tests: ``frames_made``, ``drop_frames``, ``fault_hook()``).
    """
    ioc = build(prefix, panel, vendor, drop_frames)
    handle = run_ioc_in_thread(ioc.pvdb, prefix, port, timeout_s, silences=silences_of(ioc))
    handle.ioc = ioc
    return handle
