"""Wire-level simulator of a DECTRIS PILATUS detector's camserver: commands over TCP, images as files.

``CamserverResponder`` speaks the protocol of the repository's notes docs/protocols/dectris-camserver.md
("the sheet"; from the PILATUS3 user manual) with the driver's codec (``microct.drivers.camserver.codec``,
sizes and module gaps from ``microct.drivers.camserver.models``) and writes camserver-layout TIFF files
(int32 after a 4096-byte header) into its ImgPath on the real schedule: image i at delay + i × period +
exposure after the exposure starts. The pixels come from a ``SimulatedDetector`` of the model's size
with a photon counter's character (no dark offset, dark current or read noise; a small gain spread),
plus a few bad pixels (−2) and the module gaps (−1: 7 columns and 17 rows between 487 × 195 modules,
the grid every size of the sheet fits). Serve it with ``microct sim serve camserver --tcp PORT``
(``-O image_root=FOLDER``: where the images go; default a new temporary folder, named when it starts
and removed when the process ends).

Paths: camserver's paths are absolute; the simulator keeps every one under ``image_root``
(ImgPath /ramdisk/x is the folder image_root/ramdisk/x), so a test can map them as a real
installation maps an NFS export.

The panel sees the instruments in ``devices`` ("source", "rotation", "sample_out", as in
Bench.devices), so in a test it images the scan's tube and stage; standalone it builds its own
tube, warmed up with the beam on at ``voltage_kv`` / ``current_ua``, so frames show the phantom. It
exposes in real time: image i of a series is exposed from delay + i × period after the start, for the
exposure time (a K cuts the exposure short, and that image is not written).

Faults (``microct.simulators.faults``): given a ``FaultSchedule``, the panel plays the "detector": it
counts frames and projections, offers its exposures to a tube on the same schedule (arcs, interlock
openings), and takes the frame faults: frame_dropped, the image file is never written and the series
goes on; frame_timeout, the series stops there, silent (no more files, no ``7 OK``) until K. Served by
a ``WireServer`` given the same schedule, every command line meets the detector's request faults
(``fault_device``): a lost or garbled reply (e.g. ``15 OK`` to ``Exposure``, whose series runs all the
same), or the link dropped at that command (a series under way runs on, as camserver's does when its
client goes away). ``hooks`` (a ``Hooks``) holds the faults a test sets that the schedule does not
express.

The detector fault contract's hook (``fault_hook``, on the panel), in camserver's terms: with frames
withheld, ``Exposure`` is answered ``15 OK`` (started) but the image file never appears and the series
halts there, silent, until K (as frame_timeout); the exposure the panel integrates
(``last_exposure_s``) is the ExpTime set over the link; mute is the WireServer's ``muted``: no command
is carried out or answered (a series already under way still ends with its ``7 OK``).

From the sheet: the reply codes and texts, any control character ending a command, case-insensitive
unambiguous abbreviations, control for the first client only (``1 ERR access denied`` to the others'
state changes), ``13 ERR kill`` then ``7 OK <last file>`` when K stops a series. Inferred [I] (the
sheet is silent): the texts of refused arguments (``15 ERR ERROR: ...``); an exposure, or a change of
settings, while a series runs is refused with ``15 ERR ERROR: an exposure series is running (K stops
it)``; a command without its argument reports the current value; K with no series running answers
``13 OK kill``; the final ``7 OK`` names the last file written (the first name if none was); when the
controlling client hangs up, the next client to change something gets control. Commands of the sheet
the simulator does not implement (thresholds, corrections, ...) are answered
``15 ERR ERROR: <name> is not simulated``; only TIFF files are written.
"""

from __future__ import annotations

import logging
import posixpath
import tempfile
import threading
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from microct.clock import Clock
from microct.devices.base import Device
from microct.drivers.camserver import codec, models
from microct.drivers.camserver.codec import Reply
from microct.errors import DeviceTimeoutError, FrameLostError, MicroCTError
from microct.geometry import Geometry
from microct.simulators.bench import Bench
from microct.simulators.detector import (
    STANDALONE_HINT,
    SimulatedDetector,
    SimulatedDetectorHook,
    SimulatedDetectorOptions,
)
from microct.simulators.faults import FaultSchedule
from microct.simulators.serving import options_model
from microct.simulators.source import SimulatedSource, SimulatedSourceOptions
from microct.simulators.wire import WireSimulator

log = logging.getLogger("microct.simulators.camserver")

BUSY = "ERROR: an exposure series is running (K stops it)"
READ_ONLY = {"Version", "THread"}
"""Commands a read-only client may send (and any command without an argument, which only reports)."""
EXPOSURE_LIMITS_S = (1e-7, 1e6)
ROLE = "detector"
"""The device the simulator plays in a FaultSchedule."""


@dataclass
class Hooks:
    """Faults a test sets that a FaultSchedule does not express (a file cut short, the link lost between
    commands, the detector's own ERR replies). Frame numbers count every image file the simulator has
    started since it was made, from 0."""

    truncated_frame: int | None = None
    """This file is written with half its bytes only."""
    drop_at_frame: int | None = None
    """Instead of exposing this image, the controlling client's connection is dropped and the series ends."""
    error_replies: dict[str, str] = field(default_factory=dict)
    """Command name (as in the codec's COMMANDS) → the text of the ERR reply it gets instead."""


class _ExposureClock(Clock):
    """Real time whose sleeps (the panel's exposures) end early when ``cut`` (the series' K) is set."""

    def __init__(self) -> None:
        self.cut = threading.Event()

    def sleep(self, seconds: float) -> None:
        self.cut.wait(max(seconds, 0.0))


@dataclass
class _Series:
    session: _Session
    names: list[str]
    exposure_s: float
    period_s: float
    delay_s: float
    start: float
    last: str
    kill: threading.Event = field(default_factory=threading.Event)


class _Session:
    """One client: answers its lines through the responder; replies later through its connection."""

    request_terminators = codec.CONTROL_CHARACTERS

    def __init__(self, server: CamserverResponder, connection) -> None:
        self.server = server
        self.connection = connection

    def respond(self, line: bytes) -> list[bytes]:
        """The immediate reply; a series' ``7 OK`` comes later, through ``send``."""
        return [codec.format_reply(self.server.answer(self, line))]

    def send(self, reply: Reply) -> None:
        self.connection.send(codec.format_reply(reply))

    def disconnected(self) -> None:
        self.server.disconnected(self)


class CamserverResponder:
    """camserver and its detector. Options: ``image_root`` (folder holding every camserver path; default a
    new temporary folder, removed when the responder is garbage-collected or the process ends),
    ``model`` (a size of the sheet), ``image_path`` (the ImgPath at start), ``devices``, ``geometry``,
    ``phantom``, ``seed``, ``bad_pixels`` (how many), ``gain_spread``, ``counts_per_ua_s``, for the
    standalone tube ``voltage_kv`` and ``current_ua``, and ``faults`` (the schedule the panel joins as
    "detector"). ``hooks`` (a ``Hooks``) is for tests."""

    def __init__(self, image_root: str | Path | None = None, model: str = "300K", image_path: str = "/ramdisk/",
                 devices: MutableMapping[str, Device] | None = None, geometry: Geometry | None = None,
                 phantom: str = "spheres", seed: int | None = None, bad_pixels: int = 5, gain_spread: float = 0.01,
                 counts_per_ua_s: float = 600.0, voltage_kv: float = 50.0, current_ua: float = 100.0,
                 faults: FaultSchedule | None = None) -> None:
        if model not in models.SIZES:
            raise ValueError(f"model={model!r}: known models {', '.join(models.SIZES)}")
        if bad_pixels < 0:
            raise ValueError(f"bad_pixels={bad_pixels}: a number of pixels, 0 or more")
        self._temporary = None
        if image_root is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="camserver-images-")
            image_root = self._temporary.name
        self.image_root = Path(image_root)
        self.model = model
        self.hooks = Hooks()
        self.schedule = faults if faults is not None else FaultSchedule()
        self.lines: list[bytes] = []
        """Every command line received, from any client (for tests)."""
        self.frames_started = 0
        self.n_images, self.exposure_s, self.period_s, self.delay_s = 1, 1.0, 1.05, 0.0  # sheet defaults
        self.image_path = codec.image_path_text(image_path)
        self._folder(self.image_path).mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._controller: _Session | None = None
        self._series: _Series | None = None
        self.standalone = devices is None
        """Served on its own (no ``devices``): its panel sees a tube of its own, always on, and no stage."""
        if devices is None:
            devices = {"source": _standalone_tube(voltage_kv, current_ua, seed)}
        width, height = models.SIZES[model]
        self._clock = _ExposureClock()
        self.panel = SimulatedDetector(ROLE, SimulatedDetectorOptions(
            rows=height, columns=width, pixel_pitch_um=models.PIXEL_PITCH_UM, bit_depth=16, binnings=(1,),
            exposure_range_s=EXPOSURE_LIMITS_S, counts_per_ua_s=counts_per_ua_s, gain_spread=gain_spread,
            dark_offset=0.0, dark_offset_spread=0.0, dark_current_per_s=0.0, read_noise=0.0, phantom=phantom),
            Bench(clock=self._clock, geometry=geometry, seed=seed, devices=devices, faults=self.schedule))
        self.panel.connect()
        self.panel.frame_timeout_s = 0.0  # a withheld image: the series halts at once, until K (``_run``)
        self.gaps = models.gap_mask(width, height)
        candidates = np.flatnonzero(~self.gaps)
        self.bad = np.random.default_rng(seed).choice(candidates, size=bad_pixels, replace=False)
        self._handlers: dict[str, Callable[[_Session, str], Reply]] = {
            "NImages": self._n_images, "ExpTime": self._exposure_time, "ExpPeriod": self._exposure_period,
            "Delay": self._delay, "ImgPath": self._image_path, "Exposure": self._exposure, "K": self._kill,
            "Version": lambda session, argument: Reply(24, True, codec.VERSION),
            "THread": lambda session, argument: Reply(215, True, self._thread_text())}

    @property
    def hint(self) -> str:
        """What ``microct sim serve`` adds to its hint: the folder the images go to."""
        return f"; images under {self.image_root}" + (STANDALONE_HINT if self.standalone else "")

    def fault_hook(self, mute: Callable[[bool], None]) -> SimulatedDetectorHook:
        """The detector fault contract's hook (see the module docstring); ``mute(bool)`` silences the
        WireServer serving this responder (e.g. ``microct.testing.rigs.ServedLink.mute``)."""
        return self.panel.fault_hook(mute=mute)

    def fault_device(self, line: bytes) -> str:
        """Every line is for the detector."""
        return ROLE

    # -- connections ----------------------------------------------------------------------------------
    def connect(self, connection) -> _Session:
        """A new client (called by the WireServer); the first one gets control."""
        session = _Session(self, connection)
        with self._lock:
            if self._controller is None:
                self._controller = session
        return session

    def disconnected(self, session: _Session) -> None:
        with self._lock:
            if self._controller is session:
                self._controller = None

    def _has_control(self, session: _Session) -> bool:
        """The controller, or the next client to ask once the controller has hung up."""
        if self._controller is not session and (self._controller is None or not self._controller.connection.alive):
            self._controller = session
        return self._controller is session

    # -- commands -------------------------------------------------------------------------------------
    def answer(self, session: _Session, line: bytes) -> Reply:
        """The immediate reply to one command line (a series' reply comes later, through the session)."""
        self.lines.append(line)
        word, _, argument = line.decode("latin-1").strip().partition(" ")
        argument = argument.strip()
        name = codec.resolve_command(word)
        if name is None:
            return Reply(codec.UNRECOGNIZED_CODE, False, codec.unrecognized_text(word))
        code = codec.reply_code(name)
        with self._lock:
            if name in self.hooks.error_replies:
                return Reply(code, False, self.hooks.error_replies[name])
            handler = self._handlers.get(name)
            if handler is None:
                return Reply(code, False, f"ERROR: {name} is not simulated")
            changes = name in ("Exposure", "K") or (name not in READ_ONLY and argument)
            if changes and not self._has_control(session):
                return Reply(codec.UNRECOGNIZED_CODE, False, codec.ACCESS_DENIED)
            if changes and name != "K" and self._series is not None:
                return Reply(codec.GENERIC, False, BUSY)
            try:
                return handler(session, argument)
            except _Refused as refused:
                return Reply(code, False, str(refused))

    def _setting(self, argument: str, parse: Callable[[str], float], valid: Callable[[float], bool],
                 what: str) -> float | None:
        """The argument parsed and valid, or None (the caller answers with the current value)."""
        if not argument:
            return None
        try:
            value = parse(argument)
        except ValueError:
            raise _Refused(f"ERROR: invalid {what}: {argument}") from None
        if not valid(value):
            raise _Refused(f"ERROR: {what} out of range: {argument}")
        return value

    def _n_images(self, session: _Session, argument: str) -> Reply:
        value = self._setting(argument, int, lambda n: 1 <= n <= codec.MAX_IMAGES, "number of images")
        self.n_images = self.n_images if value is None else int(value)
        return Reply(codec.GENERIC, True, codec.n_images_text(self.n_images))

    def _exposure_time(self, session: _Session, argument: str) -> Reply:
        value = self._setting(argument, float, lambda s: EXPOSURE_LIMITS_S[0] <= s <= EXPOSURE_LIMITS_S[1],
                              "exposure time")
        self.exposure_s = self.exposure_s if value is None else value
        return Reply(codec.GENERIC, True, codec.exposure_time_text(self.exposure_s))

    def _exposure_period(self, session: _Session, argument: str) -> Reply:
        value = self._setting(argument, float, lambda s: codec.MIN_PERIOD_S <= s <= EXPOSURE_LIMITS_S[1],
                              "exposure period")
        self.period_s = self.period_s if value is None else value
        return Reply(codec.GENERIC, True, codec.exposure_period_text(self.period_s))

    def _delay(self, session: _Session, argument: str) -> Reply:
        value = self._setting(argument, float, lambda s: 0 <= s < codec.MAX_DELAY_S, "delay")
        self.delay_s = self.delay_s if value is None else value
        return Reply(codec.GENERIC, True, codec.delay_text(self.delay_s))

    def _image_path(self, session: _Session, argument: str) -> Reply:
        if argument:
            path = codec.image_path_text(posixpath.join(self.image_path, argument))
            self._folder(path).mkdir(parents=True, exist_ok=True)
            self.image_path = path
        return Reply(codec.reply_code("ImgPath"), True, self.image_path)

    def _exposure(self, session: _Session, argument: str) -> Reply:
        if not argument:
            return Reply(codec.GENERIC, False, "ERROR: no file name")
        if not argument.lower().endswith((".tif", ".tiff")):
            return Reply(codec.GENERIC, False, f"ERROR: only TIFF files are simulated: {argument}")
        if self.period_s < self.exposure_s + codec.MIN_READOUT_S - 5e-8:  # half the 7th decimal
            return Reply(codec.GENERIC, False, f"ERROR: exposure period {codec.format_seconds(self.period_s)} s is "
                                               f"shorter than the exposure time + {codec.MIN_READOUT_S * 1e3:g} ms")
        names = [posixpath.join(self.image_path, name) for name in codec.series_names(argument, self.n_images)]
        with self.schedule.quiet():  # the panel is physics: not a request
            self.panel.set_exposure_s(self.exposure_s)
        series = _Series(session, names, self.exposure_s, self.period_s, self.delay_s, time.monotonic(), names[0])
        self._series = series
        self._clock.cut = series.kill
        threading.Thread(target=self._run, args=(series,), name="camserver-series", daemon=True).start()
        return Reply(codec.GENERIC, True, codec.starting_text(self.exposure_s, datetime.now()))

    def _kill(self, session: _Session, argument: str) -> Reply:
        if self._series is None:
            return Reply(codec.reply_code("K"), True, codec.KILL)
        self._series.kill.set()
        return Reply(codec.reply_code("K"), False, codec.KILL)

    def _thread_text(self) -> str:
        across, down = models.module_grid(*models.SIZES[self.model])
        return "".join(f"Channel {i}: Temperature = {31.4 + 0.3 * i:.1f}C, Rel. Humidity = 22.1%;"
                       for i in range(min(across * down, 3)))

    # -- the series -----------------------------------------------------------------------------------
    def _run(self, series: _Series) -> None:
        """Expose and write the series' images on schedule, then ``7 OK <last file>`` (not after a
        dropped link). A frame_dropped fault skips an image; after a frame_timeout fault (or with the
        fault hook's frames withheld) the series waits for K; if the panel cannot read its instruments
        (closed), the series ends there."""
        dropped = False
        try:
            for i, name in enumerate(series.names):
                start = series.start + series.delay_s + i * series.period_s
                if series.kill.wait(max(0.0, start - time.monotonic())):
                    break
                with self._lock:
                    index = self.frames_started
                    self.frames_started += 1
                    hooks = self.hooks
                if index == hooks.drop_at_frame:
                    dropped = True
                    series.session.connection.close()
                    break
                try:
                    counts = self.counts()
                except FrameLostError as error:  # frame_dropped: no file, the series goes on
                    log.info("camserver simulator: %s: %s never written", error, name)
                    continue
                except DeviceTimeoutError as error:  # frame_timeout, frames withheld: camserver hangs until K
                    log.info("camserver simulator: %s: series halted at %s until K", error, name)
                    series.kill.wait()
                    break
                except MicroCTError as error:  # e.g. the scan closed the tube the panel reads
                    log.warning("camserver simulator: series ended early, the panel cannot image: %s", error)
                    break
                if series.kill.is_set():  # K during the exposure
                    break
                data = codec.encode_tiff(counts, self._description(series))
                if index == hooks.truncated_frame:
                    data = data[:len(data) // 2]
                self._folder(name).write_bytes(data)
                series.last = name
        finally:
            with self._lock:
                self._series = None
        if not dropped:
            series.session.send(Reply(codec.reply_code("Exposure"), True, series.last))

    def counts(self) -> np.ndarray:
        """One image as camserver writes it, exposed now for the set exposure time: int32 counts, −1 in
        the module gaps, −2 on the bad pixels. The panel's frame faults as FrameLostError and
        DeviceTimeoutError (also for a frame the fault hook withholds)."""
        with self.schedule.quiet():  # the panel is physics: not a request
            counts = self.panel.acquire(1)[0].data.astype(np.int32)
        counts[self.gaps] = codec.GAP_VALUE
        counts.flat[self.bad] = codec.BAD_VALUE
        return counts

    def _description(self, series: _Series) -> str:
        """The header text of a PILATUS TIFF (its ImageDescription)."""
        return (f"# Detector: PILATUS {self.model} (microct simulator)\r\n# {datetime.now().isoformat()}\r\n"
                f"# Pixel_size 172e-6 m x 172e-6 m\r\n# Exposure_time {codec.format_seconds(series.exposure_s)} s\r\n"
                f"# Exposure_period {codec.format_seconds(series.period_s)} s\r\n")

    def _folder(self, path: str) -> Path:
        """Where camserver path ``path`` lies on this machine: under image_root."""
        return self.image_root / posixpath.normpath(path).lstrip("/")


class _Refused(Exception):
    """A bad argument: answered with ERR and this text."""


def _standalone_tube(voltage_kv: float, current_ua: float, seed: int | None) -> SimulatedSource:
    """A warmed-up tube with the beam on (large spot: up to 75 W), for a simulator serving on its own."""
    tube = SimulatedSource("camserver tube", SimulatedSourceOptions(warmed_up=True, ramp_kv_per_s=1e6,
                                                                    ramp_ua_per_s=1e8), seed=seed)
    tube.connect()
    tube.configure(voltage_kv=voltage_kv, current_ua=current_ua, spot_mode="large")
    tube.beam_on()
    return tube


SIMULATOR = WireSimulator(CamserverResponder, "DECTRIS PILATUS camserver (VISA socket; TIFF frames into image_root)",
                          visa=True, options=options_model(CamserverResponder, choices={"model": models.SIZES}))
"""What ``microct sim serve`` serves (entry-point group ``microct.simulators``)."""
