"""Wire-level simulator of a Dexela flat panel and its frame grabber (see ``microct sim serve dexela``).

``DexelaResponder`` answers the register protocol of the repository's notes
docs/protocols/dexela-serial.md ("the sheet"; derived from open-source drivers, not a vendor document)
with the driver's codec (``microct.drivers.dexela.codec``), and plays the frame grabber of the frame
channel defined there on a second channel: it watches a folder for trigger files and writes frame
files (``frame_folder``; neither option given: a new temporary folder, removed by ``stop()`` or when
the process ends), or serves the frame stream on TCP 127.0.0.1 (``frame_port``, 0: a free port, then
read ``frame_port`` back). ``microct sim serve dexela`` names the folder or the stream's port when it
starts. Frames come from a SimulatedDetector exposed for the time in registers 11 and 12 (at least
10 µs), seeing the instruments in ``devices`` ("source", "rotation", "sample_out", as Bench.devices;
the caller may fill the mapping later). Without ``devices`` the simulator builds its own tube, warmed
up and beam on at ``voltage_kv`` / ``current_ua``, so that frames show the phantom (at angle 0: no
stage).

Behaviour: ``WC1`` → X; register writes → X, or E for a value above 16 bits; reads → ``S`` + the
stored value, or zeros with ``reads_return_zeros`` (as the sheet's public driver saw on its unit).
Inferred, not in the sheet: register access before ``WC1`` and a line that is not a command get E.
In software-trigger mode (register 0's trigger field 0) each trigger exposes one frame; in edge or
duration mode software triggers are ignored and ``external_trigger()`` stands for the trigger input.

Faults (``microct.simulators.faults``): given a ``FaultSchedule``, the panel plays the "detector": it
counts frames and projections, offers its exposures to a tube on the same schedule (arcs, interlock
openings), and takes the frame faults: frame_dropped and frame_timeout, the frame is exposed but never
delivered (no frame file; nothing on the stream), so the host times out either way. Served by a
``WireServer`` given the same schedule, every register line meets the detector's request faults
(``fault_device``), and so does every request on the TCP frame stream (its server plays them itself:
no frame, a frame whose header is line noise, the stream connection dropped; a reply is played once its
frame is made, so a fault ``at_frame = N`` hits the reply carrying frame N − 1). Test hooks for what
the schedule does not express: ``refused_registers`` (writes answered E), ``stop()`` (the frame grabber
goes away; stop the WireServer for the serial link).

The detector fault contract's hook (``fault_hook``, on the panel), in the notes' terms: with frames
withheld, a frame is exposed but nothing arrives on the frame channel (no frame file for its trigger
file; no reply to its ``T<N>`` / ``N<ms>`` request), and the grabber goes on with the next request;
the exposure the panel integrates (``last_exposure_s``) is the one in registers 11 and 12 as written
over the serial link (10 µs ticks); mute silences the register link only (the WireServer serving this
responder: no command carried out or answered), not the frame grabber, which is a separate channel
(the notes: "the serial link alone acquires nothing").
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

import numpy as np

from microct.devices.base import Device
from microct.drivers.dexela import models
from microct.drivers.dexela.codec import (
    EXPOSURE_HIGH_REGISTER,
    EXPOSURE_LOW_REGISTER,
    EXPOSURE_RANGE_S,
    EXPOSURE_TICK_S,
    FULL_WELL_REGISTER,
    NO_FRAME,
    PIXEL_DTYPE,
    TRIGGER_CODES,
    TRIGGER_REGISTER,
    TRIGGER_SUFFIX,
    WORD_MAX,
    encode_frame,
    format_reply,
    frame_file_name,
    frame_file_number,
    join_words,
    next_frame_number,
    parse_frame_request,
    parse_request,
    trigger_code,
)
from microct.errors import MicroCTError, ProtocolError
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
from microct.simulators.wire import WireServer, WireSimulator

log = logging.getLogger("microct.simulators.dexela")

_FIXED_PANEL = {"rows", "columns", "pixel_pitch_um", "bit_depth", "binnings", "exposure_range_s"}
POLL_S = 0.002
"""How often the folder grabber looks for trigger files, and the stream grabber for a stop."""
ROLE = "detector"
"""The device the simulator plays in a FaultSchedule."""


class DexelaResponder:
    """The detector's serial end (``respond``) and its frame grabber (started at construction).

    Keyword options: ``frame_folder`` or ``frame_port`` (at most one; neither: a new temporary
    folder, removed by ``stop()`` or when the process ends), ``rows``, ``columns``,
    ``pixel_pitch_um``, ``reads_return_zeros``, ``devices``, ``geometry`` (a Geometry or its fields),
    ``seed``, ``voltage_kv`` and ``current_ua`` (the own tube), ``faults`` (the schedule the panel joins
    as "detector"), and SimulatedDetectorOptions fields for the panel's physics (``phantom``,
    ``readout_s``, ``counts_per_ua_s``, ...).
    """

    request_terminators = b"\r"

    def __init__(self, frame_folder: str | None = None, frame_port: int | None = None,
                 rows: int = models.TILE_ROWS, columns: int = models.TILE_COLUMNS,
                 pixel_pitch_um: float = models.PIXEL_PITCH_UM, reads_return_zeros: bool = False,
                 devices: MutableMapping[str, Device] | None = None,
                 geometry: Geometry | dict[str, Any] | None = None, seed: int | None = None,
                 voltage_kv: float = 80.0, current_ua: float = 100.0, faults: FaultSchedule | None = None,
                 **panel: Any) -> None:
        if frame_folder is not None and frame_port is not None:
            raise TypeError("give one frame channel, not both: frame_folder=PATH or frame_port=PORT (0: a free "
                            "port); neither: frames in a new temporary folder")
        taken = sorted(_FIXED_PANEL & panel.keys())
        if taken:
            raise TypeError(f"{', '.join(taken)}: set by the Dexela simulator (rows, columns and pixel_pitch_um "
                            f"are its own options)")
        self.registers = {TRIGGER_REGISTER: 0, FULL_WELL_REGISTER: 0, EXPOSURE_LOW_REGISTER: 10000,
                          EXPOSURE_HIGH_REGISTER: 0}  # 100 ms: the simulator's power-up choice
        self.awake = False
        self.reads_return_zeros = reads_return_zeros
        self.refused_registers: set[int] = set()
        self.frames_delivered = 0
        self.schedule = faults if faults is not None else FaultSchedule()
        self.standalone = devices is None
        """Served on its own (no ``devices``): its panel sees a tube of its own, always on, and no stage."""
        self.devices = devices if devices is not None else {"source": _own_tube(voltage_kv, current_ua, seed)}
        if isinstance(geometry, dict):
            geometry = Geometry(**geometry)
        options = SimulatedDetectorOptions(rows=rows, columns=columns, pixel_pitch_um=pixel_pitch_um,
                                           bit_depth=models.BIT_DEPTH,
                                           binnings=(1,), exposure_range_s=EXPOSURE_RANGE_S, **panel)
        self.panel = SimulatedDetector(ROLE, options, Bench(geometry=geometry, seed=seed, devices=self.devices,
                                                                    faults=self.schedule))
        self.panel.connect()
        self.panel.frame_timeout_s = 0.0  # a withheld frame is never delivered: the host times out, not the grabber
        self._panel_lock = threading.Lock()
        self._external: queue.Queue[tuple[int, np.ndarray]] = queue.Queue()
        self._stop = threading.Event()
        self._temporary: str | None = None
        if frame_folder is None and frame_port is None:
            frame_folder = self._temporary = tempfile.mkdtemp(prefix="dexela-frames-")
            atexit.register(self.stop)  # the grabber stops before its folder goes
        self.folder = Path(frame_folder) if frame_folder is not None else None
        self._stream: WireServer | None = None
        self._watcher: threading.Thread | None = None
        self.frame_port: int | None = None
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._next_number = next_frame_number(entry.name for entry in os.scandir(self.folder))
            self._watcher = threading.Thread(target=self._watch_folder, name="dexela-grabber", daemon=True)
            self._watcher.start()
            log.info("dexela simulator: frames in %s", self.folder)
        else:
            self._next_number = 0
            self._stream = WireServer(_FrameStream(self), "dexela-frames", self.schedule.device(ROLE))
            try:
                self.frame_port = self._stream.serve_tcp(frame_port)
            except OSError as error:  # in use, privileged: said with the option that asked for it
                raise OSError(error.errno, f"frame_port={frame_port}: {error.strerror}") from None
            log.info("dexela simulator: frame stream on 127.0.0.1:%d", self.frame_port)

    @property
    def hint(self) -> str:
        """What ``microct sim serve`` adds to its hint: where the frames come from."""
        return ((f"; frames in {self.folder}" if self.folder is not None else
                 f"; frame stream on 127.0.0.1:{self.frame_port}") + (STANDALONE_HINT if self.standalone else ""))

    def fault_hook(self, mute: Callable[[bool], None]) -> SimulatedDetectorHook:
        """The detector fault contract's hook (see the module docstring); ``mute(bool)`` silences the
        WireServer serving the register link (e.g. ``microct.testing.rigs.ServedLink.mute``)."""
        return self.panel.fault_hook(mute=mute)

    # -- the serial end ------------------------------------------------------------------------------
    def fault_device(self, line: bytes) -> str:
        """Every line is for the detector."""
        return ROLE

    def respond(self, line: bytes) -> list[bytes]:
        """The reply (with CR) to one command line."""
        try:
            request = parse_request(line)
        except ProtocolError:
            return [format_reply(False)]
        if request.kind == "wake":
            self.awake = True
            return [format_reply(True)]
        if not self.awake:
            return [format_reply(False)]
        if request.kind == "read":
            return [format_reply(0 if self.reads_return_zeros else self.registers.get(request.register, 0))]
        if request.value > WORD_MAX or request.register in self.refused_registers:
            return [format_reply(False)]
        self.registers[request.register] = request.value
        return [format_reply(True)]

    @property
    def trigger_mode(self) -> str:
        """"software", "edge" or "duration" from register 0 ("unknown" for another code)."""
        code = trigger_code(self.registers[TRIGGER_REGISTER])
        return next((name for name, value in TRIGGER_CODES.items() if value == code), "unknown")

    @property
    def exposure_s(self) -> float:
        """The exposure in registers 11 and 12 (at least one 10 µs unit)."""
        ticks = join_words(self.registers[EXPOSURE_LOW_REGISTER], self.registers[EXPOSURE_HIGH_REGISTER])
        return max(1, ticks) * EXPOSURE_TICK_S

    # -- the frame grabber -----------------------------------------------------------------------------
    def external_trigger(self, duration_s: float | None = None) -> int | None:
        """A pulse on the trigger input: in edge mode one frame of the register exposure, in duration mode
        of ``duration_s`` (default: the register exposure). Returns the frame's number (None: ignored in
        software-trigger mode), delivered unless it is lost."""
        if self.trigger_mode not in ("edge", "duration"):
            return None
        exposure_s = duration_s if self.trigger_mode == "duration" and duration_s else self.exposure_s
        number = self._next_number
        self._next_number += 1
        pixels = self._expose(number, exposure_s)
        if pixels is not None and self.folder is not None:
            self._deliver_file(number, pixels)
        elif pixels is not None:
            self._external.put((number, pixels))
        return number

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        """Stop the frame grabber (closing frame-stream connections; removing the frame folder if it made
        it); safe to call twice."""
        self._stop.set()
        if self._stream is not None:
            self._stream.stop()
        if self._watcher is not None:
            self._watcher.join(timeout=2.0)
        if self._temporary is not None:
            shutil.rmtree(self._temporary, ignore_errors=True)

    def software_frame(self, number: int) -> np.ndarray | None:
        """A software trigger for frame ``number``: its pixels, or None if ignored (not in software mode)
        or lost."""
        if self.trigger_mode != "software":
            log.info("dexela simulator: software trigger of frame %d ignored in %s mode", number, self.trigger_mode)
            return None
        self._next_number = number + 1
        return self._expose(number, self.exposure_s)

    def next_external_frame(self, wait_s: float) -> tuple[int, np.ndarray] | None:
        """(number, pixels) of the next externally triggered frame (the stream's ``N`` request), waiting
        up to ``wait_s`` for the trigger input; None if none comes or the grabber stops first."""
        deadline = time.monotonic() + wait_s
        while not self._stop.is_set():
            try:
                return self._external.get(timeout=max(0.0, min(POLL_S * 25, deadline - time.monotonic())))
            except queue.Empty:
                if time.monotonic() >= deadline:
                    return None
        return None

    def _expose(self, number: int, exposure_s: float) -> np.ndarray | None:
        """The pixels of frame ``number``, exposed for ``exposure_s``; None if the frame is lost: a frame
        fault of the schedule, or a panel that cannot image (e.g. the scan's tube already closed; the
        grabber lives on)."""
        try:
            with self._panel_lock, self.schedule.quiet():  # the panel is physics: not a request
                self.panel.set_exposure_s(exposure_s)
                return self.panel.acquire(1)[0].data
        except MicroCTError as error:
            log.warning("dexela simulator: frame %d not delivered: %s", number, error)
            return None

    def _watch_folder(self) -> None:
        while not self._stop.wait(POLL_S):
            try:
                names = [entry.name for entry in os.scandir(self.folder)]
            except OSError as error:
                log.error("dexela simulator: cannot read %s: %s", self.folder, error)
                continue
            for number in sorted(n for n in (frame_file_number(name, TRIGGER_SUFFIX) for name in names)
                                 if n is not None):
                (self.folder / frame_file_name(number, TRIGGER_SUFFIX)).unlink(missing_ok=True)
                pixels = self.software_frame(number)
                if pixels is not None:
                    self._deliver_file(number, pixels)

    def _deliver_file(self, number: int, pixels: np.ndarray) -> None:
        """Write the frame under a temporary name, then rename it: a frame file is always complete."""
        final = self.folder / frame_file_name(number)
        partial = final.with_suffix(".part")
        pixels.astype(PIXEL_DTYPE, copy=False).tofile(partial)
        os.replace(partial, final)
        self.frames_delivered += 1


class _FrameStream:
    """The TCP frame stream's request side: ``T<N>`` and ``N<N>`` lines, answered with a frame."""

    request_terminators = b"\r"

    def __init__(self, grabber: DexelaResponder) -> None:
        self.grabber = grabber

    def respond(self, line: bytes) -> list[bytes]:
        try:
            number, wait_s = parse_frame_request(line)
        except ProtocolError:
            return []
        if number is None:
            frame = self.grabber.next_external_frame(wait_s)
            if frame is None:
                return [] if self.grabber.stopped else [NO_FRAME]
        else:
            pixels = self.grabber.software_frame(number)
            frame = None if pixels is None else (number, pixels)
        if frame is None:
            return []
        self.grabber.frames_delivered += 1
        return [encode_frame(*frame)]


def _own_tube(voltage_kv: float, current_ua: float, seed: int | None) -> SimulatedSource:
    """A tube for the standalone simulator: warmed up, ramps instant, beam on."""
    tube = SimulatedSource("dexela simulator tube", SimulatedSourceOptions(
        warmed_up=True, ramp_kv_per_s=1e6, ramp_ua_per_s=1e6), seed=seed)
    tube.connect()
    tube.configure(voltage_kv=voltage_kv, current_ua=current_ua)
    tube.beam_on()
    return tube


SIMULATOR = WireSimulator(DexelaResponder, "Varex Dexela CMOS panel (serial commands; frames in a folder or on a "
                          "TCP port)", options=options_model(DexelaResponder, SimulatedDetectorOptions,
                                                             exclude=_FIXED_PANEL))
"""What ``microct sim serve`` serves (entry-point group ``microct.simulators``)."""
