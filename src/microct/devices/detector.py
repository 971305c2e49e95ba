"""The flat-panel detector interface: exposure, binning, trigger mode, frames as numpy arrays."""

from __future__ import annotations

import abc
import enum
import math
import operator
from dataclasses import dataclass
from typing import Any

import numpy as np

from microct.clock import Clock
from microct.devices.base import Device
from microct.errors import ConfigurationError, LimitError, ProtocolError


def _whole_number(value: object) -> int | None:
    """``value`` as an int if it is an integer type (numpy integers included, bool not), else None."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)  # type: ignore[arg-type]  # TypeError below for what has no __index__
    except TypeError:
        return None


HELD_SETTINGS = ("binning", "trigger_mode", "exposure_s")
"""The settings a Detector holds and sends at first use, in the order they go out."""


class TriggerMode(enum.Enum):
    """What starts a detector's exposures: each ``acquire`` call (SOFTWARE, what scans use), the
    detector's own timer for a series (INTERNAL), or a hardware trigger input (EXTERNAL)."""

    SOFTWARE = "software"
    INTERNAL = "internal"
    EXTERNAL = "external"


@dataclass(frozen=True)
class FrameFile:
    """Where a detector that writes its own HDF5 files put a frame: the file (as this computer
    reads it), the dataset (frames × rows × columns) and the frame's index in it."""

    path: str
    dataset: str
    index: int


@dataclass(frozen=True)
class Frame:
    """One detector image: pixels (rows × columns), the detector's frame number, epoch timestamp (s).

    ``data`` is None when the detector wrote the frame to its own file (``file``) instead of
    sending the pixels (see ``Detector.writes_own_files``).
    """

    data: np.ndarray | None
    frame_number: int
    timestamp: float
    file: FrameFile | None = None


@dataclass(frozen=True)
class DetectorCapabilities:
    """Sensor size (rows, columns) and pixel pitch (µm) unbinned, bit depth, allowed settings."""

    shape: tuple[int, int]
    pixel_pitch_um: float
    bit_depth: int
    exposure_range_s: tuple[float, float]
    binnings: tuple[int, ...] = (1,)
    trigger_modes: tuple[TriggerMode, ...] = (TriggerMode.SOFTWARE,)

    def __post_init__(self) -> None:
        if len(self.shape) != 2 or min(self.shape) < 1:
            raise ConfigurationError(f"shape={self.shape}: need (rows, columns), both >= 1")
        if not self.pixel_pitch_um > 0:
            raise ConfigurationError(f"pixel_pitch_um={self.pixel_pitch_um}: must be > 0")
        if not 1 <= self.bit_depth <= 16:
            raise ConfigurationError(f"bit_depth={self.bit_depth}: allowed 1-16 (frames are uint16)")
        low, high = self.exposure_range_s
        if not 0 < low <= high:
            raise ConfigurationError(f"exposure_range_s=({low}, {high}): need 0 < low <= high")

    def check_exposure(self, exposure_s: float, who: str = "detector") -> None:
        low, high = self.exposure_range_s
        if not (math.isfinite(exposure_s) and low <= exposure_s <= high):
            raise LimitError(f"{who}: exposure_s={exposure_s:g} is outside the allowed range {low:g}-{high:g} s")


class Detector(Device):
    """An area detector. Frames are uint16 arrays of ``shape`` (binned rows, columns).

    Settings are held by the base class. ``connect()`` writes nothing to the device: the first setter,
    acquisition or skip since connect runs the driver's ``_do_prepare`` (modes, file paths) once, and each
    held setting (binning, trigger mode, exposure) goes out the first time it is set or before the first
    acquisition (``_ready``); later ones whenever they change. ``acquire(n)`` returns n frames in order.
    """

    kind = "detector"

    def __init__(self, name: str, capabilities: DetectorCapabilities, clock: Clock | None = None) -> None:
        super().__init__(name, clock)
        self.capabilities = capabilities
        self._exposure_s = capabilities.exposure_range_s[0]
        self._binning = 1
        self._trigger_mode = capabilities.trigger_modes[0]
        self._pixel_mask: np.ndarray | None = None
        self._prepared = False
        self._unsent: set[str] = set(HELD_SETTINGS)

    @property
    def prepared(self) -> bool:
        """True once ``_do_prepare`` has set the device up since connect (at the first setter, acquisition
        or skip); False after connect, which writes nothing."""
        return self._prepared

    @property
    def pixel_mask(self) -> np.ndarray | None:
        """Pixels the detector reports unusable, as NeXus ``NXdetector/pixel_mask`` (uint32, frame
        shape; bit 0 gap, bit 1 dead); None if the detector reports none."""
        return self._pixel_mask

    def _report_pixel_mask(self, mask: np.ndarray | None, merge: bool = False) -> None:
        """For drivers: the pixels the device reports unusable (uint32 bits, as ``pixel_mask``), or None;
        ``merge`` adds these bits to the mask already reported. ProtocolError for a mask that is not of the
        frame's shape."""
        if mask is None:
            self._pixel_mask = None
            return
        mask = np.asarray(mask, dtype=np.uint32)
        if mask.shape != self.shape:
            raise self._error(ProtocolError, f"pixel mask of shape {mask.shape}; the frames are {self.shape}")
        self._pixel_mask = mask | self._pixel_mask if merge and self._pixel_mask is not None else mask

    @property
    def exposure_s(self) -> float:
        return self._exposure_s

    @property
    def binning(self) -> int:
        return self._binning

    @property
    def trigger_mode(self) -> TriggerMode:
        return self._trigger_mode

    @property
    def shape(self) -> tuple[int, int]:
        """Frame shape (rows, columns) at the current binning."""
        rows, cols = self.capabilities.shape
        return rows // self._binning, cols // self._binning

    @property
    def pixel_pitch_um(self) -> float:
        """Pixel pitch (µm) at the current binning."""
        return self.capabilities.pixel_pitch_um * self._binning

    @property
    def writes_own_files(self) -> bool:
        """True if frames come back as ``Frame.file`` locations, without pixels (e.g. an areaDetector
        HDF5 file plugin writing at full speed): nothing can average or inspect them here."""
        return False

    @property
    def saturation_value(self) -> int:
        """Largest count a pixel can hold (2**bit_depth − 1)."""
        return 2 ** self.capabilities.bit_depth - 1

    def set_exposure_s(self, exposure_s: float) -> None:
        self.capabilities.check_exposure(exposure_s, who=f"detector {self.name!r}")
        self._require_connected()
        self._ready()
        self._do_set_exposure_s(float(exposure_s))
        self._exposure_s = float(exposure_s)
        self._unsent.discard("exposure_s")

    def set_binning(self, binning: int) -> None:
        whole = _whole_number(binning)
        if whole is None or whole not in self.capabilities.binnings:
            raise self._error(LimitError, f"binning={binning!r} is not one of {list(self.capabilities.binnings)}")
        self._require_connected()
        self._ready()
        self._do_set_binning(whole)
        self._binning = whole
        self._unsent.discard("binning")

    def set_trigger_mode(self, mode: TriggerMode) -> None:
        if mode not in self.capabilities.trigger_modes:
            raise self._error(LimitError, f"trigger_mode={getattr(mode, 'value', mode)!r} is not one of "
                                          f"{[m.value for m in self.capabilities.trigger_modes]}")
        self._require_connected()
        self._ready()
        self._do_set_trigger_mode(mode)
        self._trigger_mode = mode
        self._unsent.discard("trigger_mode")

    def acquire(self, n: int = 1) -> list[Frame]:
        """Acquire ``n`` frames (at the current exposure) and return them in order.

        Raises DeviceTimeoutError if the frames do not come, ProtocolError if
        the device returns the wrong number or shape of frames.
        """
        count = _whole_number(n)
        if count is None or count < 1:
            raise self._error(LimitError, f"n={n!r}: the number of frames must be an integer >= 1")
        n = count
        self._require_connected()
        self._ready(*HELD_SETTINGS)
        frames = self._do_acquire(n)
        if len(frames) != n:
            raise self._error(ProtocolError, f"asked for {n} frames, got {len(frames)}")
        for frame in frames:
            if frame.data is None:
                if frame.file is None:
                    raise self._error(ProtocolError, f"frame {frame.frame_number} has neither pixels nor a file")
            elif frame.data.shape != self.shape:
                raise self._error(ProtocolError, f"frame {frame.frame_number} has shape {frame.data.shape}, "
                                                 f"expected {self.shape}")
        return frames

    def skip(self, n: int) -> None:
        """Take ``n`` frames and throw them away (e.g. panel lag after a move); they are not recorded."""
        count = _whole_number(n)
        if count is None or count < 0:
            raise self._error(LimitError, f"n={n!r}: the number of frames to skip must be an integer >= 0")
        self._require_connected()
        if count:
            self._ready(*HELD_SETTINGS)
            self._do_skip(count)

    def _do_skip(self, n: int) -> None:
        """Frames not to record; a detector writing its own files must keep them out of its file."""
        self._do_acquire(n)

    def _ready(self, *settings: str) -> None:
        """Set the device up for use (connect writes nothing): ``_do_prepare`` once since connect, then each
        held setting among ``settings`` (names of ``HELD_SETTINGS``) not sent since connect."""
        if not self._prepared:
            self._do_prepare()
            self._prepared = True
        senders = {"binning": lambda: self._do_set_binning(self._binning),
                   "trigger_mode": lambda: self._do_set_trigger_mode(self._trigger_mode),
                   "exposure_s": lambda: self._do_set_exposure_s(self._exposure_s)}
        for name in settings:
            if name in self._unsent:
                senders[name]()
                self._unsent.discard(name)

    def _after_connect(self) -> None:
        """Nothing is sent at connect (``microct check`` is read-only): the device is set up at its first
        use (``_ready``). A driver that overrides this calls it."""
        self._prepared = False
        self._unsent = set(HELD_SETTINGS)

    def _do_prepare(self) -> None:  # noqa: B027 - a hook with nothing to do by default, not abstract
        """Set the device up for acquisition (image mode, file paths, correction settings, a wake-up): what
        connect does not send, once per connection, before the first setter, acquisition or skip."""

    def _do_describe(self) -> dict[str, Any]:
        return {"shape": self.shape, "pixel_pitch_um": self.pixel_pitch_um,
                "bit_depth": self.capabilities.bit_depth, "exposure_s": self.exposure_s,
                "trigger_mode": self.trigger_mode.value}

    @abc.abstractmethod
    def _do_set_exposure_s(self, exposure_s: float) -> None: ...

    @abc.abstractmethod
    def _do_set_binning(self, binning: int) -> None: ...

    @abc.abstractmethod
    def _do_set_trigger_mode(self, mode: TriggerMode) -> None: ...

    @abc.abstractmethod
    def _do_acquire(self, n: int) -> list[Frame]: ...
