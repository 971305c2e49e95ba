"""In-process flat-panel detector: frames of the test object through the scan geometry.

Counts per pixel follow the tube: mean = counts_per_ua_s × (kV/100)² × µA ×
exposure × transmission. The transmitted image is blurred by the focal spot's
penumbra (a Gaussian of FWHM focal_spot × (M − 1) at the detector, the spot
size read from the source at its set power) and the detector's own PSF
(Gaussian, FWHM ``psf_fwhm_um``); then Poisson noise, a per-pixel gain and dark
offset (fixed patterns), dark current, Gaussian read noise and clipping at the
bit depth. The tube and the sample pose are read through the other instruments'
public interfaces (``Bench.devices``), so the detector works beside any
source or stage driver. The object is a phantom of ``microct.simulators.phantoms``
(option ``phantom``), projected exactly in cone beam. X-rays are treated as
monochromatic: µ does not depend on kV (only the yield does).

Scheduled faults (``Bench.faults``, see ``microct.simulators.faults``): frame_timeout,
frame_dropped and request faults hit the panel; the source's arc and interlock_open faults by frame or
projection are carried out half-way through an exposure, and a frame whose exposure the beam was cut
in gets the dose up to the cut (from the tube's set-points). The panel counts the projections.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator
from scipy import ndimage

from microct.devices.base import DriverContext
from microct.devices.detector import Detector, DetectorCapabilities, Frame, TriggerMode
from microct.devices.source import SourceState
from microct.errors import DeviceTimeoutError, FrameLostError
from microct.geometry import Geometry
from microct.simulators.bench import Bench, bench_of
from microct.simulators.faults import BEAM_KINDS, FRAME_KINDS, InjectsFaults, attach
from microct.simulators.phantoms import BUILTIN, Phantom, line_integrals, phantom_from_spec

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
STANDALONE_HINT = ("; served on its own: a tube of its own, always on, and no stage: darks are lit and the sample "
                   "does not turn (a protocol demo; a scan that checks its references stops)")
"""What ``microct sim serve`` says of a detector simulator that sees no scan's tube and stage."""


class SimulatedDetectorOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rows: int = Field(default=512, ge=1, le=8192, description="sensor rows, unbinned")
    columns: int = Field(default=512, ge=1, le=8192, description="sensor columns, unbinned")
    pixel_pitch_um: float = Field(default=200.0, gt=0, description="pixel pitch, unbinned: with rows and columns "
                                                                   "it sets the field of view")
    bit_depth: int = Field(default=16, ge=8, le=16, description="bits per pixel: counts clip at 2^bit_depth − 1, "
                                                               "the saturation value")
    binnings: tuple[int, ...] = Field(default=(1, 2, 4), description="binnings allowed; binning b gives frames of "
                                      "rows / b × columns / b pixels, b × the pitch")
    exposure_range_s: tuple[float, float] = Field(default=(0.001, 60.0), description="allowed exposures (s), low "
                                                  "to high")
    readout_s: float = Field(default=0.0, ge=0, description="dead time between frames")
    counts_per_ua_s: float = Field(default=600.0, gt=0, description="mean counts per µA·s at 100 kV, open beam")
    gain_spread: float = Field(default=0.03, ge=0, description="per-pixel gain, 1 sigma (relative)")
    dark_offset: float = Field(default=100.0, ge=0, description="mean dark offset (counts)")
    dark_offset_spread: float = Field(default=10.0, ge=0, description="per-pixel offset, 1 sigma (counts)")
    dark_current_per_s: float = Field(default=5.0, ge=0, description="counts per second of exposure")
    read_noise: float = Field(default=3.0, ge=0, description="counts, 1 sigma")
    psf_fwhm_um: float = Field(default=150.0, ge=0, description="detector point-spread function, FWHM (µm)")
    phantom: str | list[dict[str, Any]] = Field(
        default="spheres", description=f"the object imaged: a built-in ({', '.join(BUILTIN)}) or a list of "
                                       "primitive tables (see microct.simulators.phantoms.phantom_from_spec)")

    @field_validator("phantom")
    @classmethod
    def _known_phantom(cls, spec):
        phantom_from_spec(spec)  # raises ConfigurationError (a ValueError) naming the problem
        return spec


class SimulatedDetector(InjectsFaults, Detector):
    """A flat panel in software, imaging its ``phantom`` with the tube and stages it is given."""

    backend = "in-process"
    environment = "simulation"
    Options = SimulatedDetectorOptions

    def __init__(self, name: str = "detector", options: SimulatedDetectorOptions | None = None,
                 bench: Bench | None = None) -> None:
        self.options = opts = options or SimulatedDetectorOptions()
        self.bench = bench or Bench()
        caps = DetectorCapabilities(
            shape=(opts.rows, opts.columns), pixel_pitch_um=opts.pixel_pitch_um, bit_depth=opts.bit_depth,
            exposure_range_s=opts.exposure_range_s, binnings=opts.binnings,
            trigger_modes=(TriggerMode.SOFTWARE, TriggerMode.INTERNAL))
        super().__init__(name, caps, self.bench.clock)
        self._rng = np.random.default_rng(self.bench.seed)
        self._geometry = self.bench.geometry or Geometry(100.0, 500.0)
        self.phantom: Phantom = phantom_from_spec(opts.phantom)
        self._frame_number = 0
        self._gain: np.ndarray | None = None
        self._offset: np.ndarray | None = None
        self._faults = attach(self.bench.faults, name)
        self.withhold_frames = False
        """True (a fault contract's hook): frames are exposed but never delivered; ``acquire`` raises
        DeviceTimeoutError after ``frame_timeout_s``, as a panel whose frames stopped coming."""
        self.frame_timeout_s = 5.0
        """How long (s, clock time) a withheld frame is waited for before the time-out."""
        self.last_exposure_s: float | None = None
        """The exposure (s) the last frame made was integrated over."""

    @classmethod
    def from_config(cls, name: str, options: SimulatedDetectorOptions, connection: str | None,
                    context: DriverContext) -> SimulatedDetector:
        return cls(name, options, bench_of(context))

    def fault_hook(self, mute=None) -> SimulatedDetectorHook:
        """The hook of the detector fault contract for this panel; ``mute(bool)`` silences the link in front
        of it (a WireServer's ``muted``), default: the panel itself."""
        return SimulatedDetectorHook(self, mute)

    def _do_connect(self) -> None:
        self._faults.start(self.clock)  # nothing to open: the panel lives in this process

    def _do_close(self) -> None:
        pass

    def _do_set_exposure_s(self, exposure_s: float) -> None:
        pass  # the base class holds the set-point; each frame uses it

    def _do_set_binning(self, binning: int) -> None:
        shape = self.capabilities.shape[0] // binning, self.capabilities.shape[1] // binning
        fixed = np.random.default_rng(None if self.bench.seed is None else self.bench.seed + 1)
        self._gain = (1.0 + fixed.normal(0.0, self.options.gain_spread, shape)).astype(np.float32)
        self._offset = (self.options.dark_offset + fixed.normal(0.0, self.options.dark_offset_spread, shape)
                        ).astype(np.float32)

    def _do_set_trigger_mode(self, mode: TriggerMode) -> None:
        pass  # software and internal triggers both expose at once in simulation

    def _do_acquire(self, n: int) -> list[Frame]:
        return self._frames(n, recorded=True)

    def _do_skip(self, n: int) -> None:
        self._frames(n, recorded=False)

    def _frames(self, n: int, recorded: bool) -> list[Frame]:
        """``n`` frames; ``recorded`` False for frames to throw away (never a projection)."""
        schedule = self._faults.schedule
        projection = schedule.projections_made if recorded and self._is_projection() else None
        frames = [self._frame(projection) for _ in range(n)]
        if projection is not None:
            schedule.projections_made += 1
        return frames

    def _frame(self, projection: int | None) -> Frame:
        number = self._frame_number
        fault = self._faults.take(FRAME_KINDS, f"frame {number}", number, projection)
        beam_at_start = self._watch_beam(number, projection)
        start_s = self.clock.monotonic()
        self.clock.sleep(self.exposure_s + self.options.readout_s)
        self.last_exposure_s = self.exposure_s
        if self.withhold_frames:
            self.clock.sleep(self.frame_timeout_s)
            self._frame_number = self._faults.schedule.frames_made = number + 1
            raise self._error(DeviceTimeoutError, f"frame {number} did not arrive within {self.frame_timeout_s:g} s "
                                                  f"(the simulated panel withholds its frames)")
        if fault is not None:
            self._frame_number = self._faults.schedule.frames_made = number + 1
            if fault.kind == "frame_timeout":
                raise self._error(DeviceTimeoutError, f"frame {number} did not arrive (simulated fault)")
            raise self._error(FrameLostError, f"frame {number} was lost on its way (simulated fault)")
        frame = Frame(self._expose(self._exposure_counts(beam_at_start, start_s)), number, self.clock.time())
        self._frame_number = self._faults.schedule.frames_made = number + 1
        return frame

    def _is_projection(self) -> bool:
        """Beam on and the sample axis (if any) within half the field of view of 0 mm, the sample-in
        position (only looked at if some fault counts projections)."""
        if not self._faults.schedule.uses_projections:
            return False
        source = self.bench.devices.get("source")
        with self._faults.schedule.quiet():
            if source is None or source.read_state() is not SourceState.BEAM_ON:
                return False
            half_view_mm = self.shape[1] * self.pixel_pitch_um / 2000.0 / self._geometry.magnification
            return abs(self._sample_pose()[1]) <= half_view_mm

    def _watch_beam(self, number: int, projection: int | None) -> bool | None:
        """If the source has beam faults to come: whether the beam is on now, and the source's frame and
        projection faults offered half-way through the exposure. None if there is nothing to watch."""
        source_faults = self._faults.schedule.device("source")
        source = self.bench.devices.get("source")
        if source is None or not source_faults.attached or not source_faults.pending(BEAM_KINDS):
            return None

        def mid_exposure() -> None:
            with self._faults.schedule.quiet():
                kinds = BEAM_KINDS if source.read_state() is SourceState.BEAM_ON else {"interlock_open"}
                source_faults.offer(kinds, f"exposure of frame {number}", number, projection)

        self.clock.call_later(self.exposure_s / 2, mid_exposure)
        with self._faults.schedule.quiet():
            return source.read_state() is SourceState.BEAM_ON

    def _exposure_counts(self, beam_at_start: bool | None, start_s: float) -> float:
        """Mean open-beam counts of the frame just exposed; if a scheduled fault cut the beam during the
        exposure, the dose up to the cut, at the tube's set-points."""
        with self._faults.schedule.quiet():
            counts = self._open_beam_counts()
        if counts > 0 or not beam_at_start:
            return counts
        cut_s = self._faults.schedule.beam_cut_at(start_s, start_s + self.exposure_s)
        if cut_s is None:
            return counts
        source = self.bench.devices["source"]
        return self._counts(source.voltage_kv, source.current_ua, cut_s - start_s)

    def _counts(self, voltage_kv: float, current_ua: float, exposure_s: float) -> float:
        """Mean open-beam counts per pixel at this kV and µA over ``exposure_s``."""
        return self.options.counts_per_ua_s * (voltage_kv / 100.0) ** 2 * current_ua * exposure_s

    def _open_beam_counts(self) -> float:
        """Mean counts per pixel with nothing in the beam, from the tube's measured read-backs."""
        source = self.bench.devices.get("source")
        if source is None or source.read_state() is not SourceState.BEAM_ON:
            return 0.0
        options = getattr(source, "options", None)
        if not getattr(options, "emits_xrays", True):  # a simulated tube that reads back right, yet emits nothing
            return 0.0
        return self._counts(source.read_voltage_kv(), source.read_current_ua(), self.exposure_s)

    def blur_sigma_px(self) -> float:
        """Gaussian sigma (pixels) of focal-spot penumbra and detector PSF combined."""
        source = self.bench.devices.get("source")
        penumbra_um = source.focal_spot_size_um * (self._geometry.magnification - 1.0) if source else 0.0
        return math.hypot(penumbra_um, self.options.psf_fwhm_um) / FWHM_PER_SIGMA / self.pixel_pitch_um

    def _sample_pose(self) -> tuple[float, float]:
        """(rotation angle in degrees, sample shift along x in mm; 0 is sample in the beam)."""
        rotation = self.bench.devices.get("rotation")
        sample_out = self.bench.devices.get("sample_out")
        return (rotation.read_position() if rotation else 0.0,
                sample_out.read_position() if sample_out else 0.0)

    def _expose(self, counts: float) -> np.ndarray:
        """A frame of mean open-beam ``counts`` per pixel through the object in its current pose."""
        opts = self.options
        if counts > 0:
            with self._faults.schedule.quiet():
                angle_deg, shift_mm = self._sample_pose()
            path = line_integrals(self.phantom, self._geometry, angle_deg, self.shape,
                                  self.pixel_pitch_um / 1000.0, shift_mm)
            transmission = np.exp(-path)
            sigma = self.blur_sigma_px()
            if sigma > 0.05:
                transmission = ndimage.gaussian_filter(transmission, sigma, mode="nearest", truncate=4.0)
            signal = self._rng.poisson(counts * transmission).astype(np.float32) * self._gain
        else:
            signal = np.zeros(self.shape, np.float32)
        signal += self._offset + opts.dark_current_per_s * self.exposure_s
        if opts.read_noise:
            signal += self._rng.normal(0.0, opts.read_noise, self.shape).astype(np.float32)
        return np.clip(np.rint(signal), 0, self.saturation_value).astype(np.uint16)


class SimulatedDetectorHook:
    """The detector fault contract's hook on a SimulatedDetector (in process, or the panel behind a wire
    simulator whose ``mute`` is given): silence the link, withhold frames, read the exposure integrated."""

    def __init__(self, panel: SimulatedDetector, mute=None) -> None:
        self.panel = panel
        self._mute = mute or (lambda muted: setattr(panel, "muted", muted))

    def mute(self, muted: bool = True) -> None:
        self._mute(muted)

    def withhold_frames(self, withhold: bool = True) -> None:
        self.panel.withhold_frames = withhold

    def last_exposure_s(self) -> float | None:
        return self.panel.last_exposure_s
