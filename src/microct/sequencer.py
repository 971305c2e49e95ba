"""Step-and-shoot CT acquisition: darks, flats, projections, written frame by frame to NXtomo.

Order: home the axes (``microct.homing``) → check interlock → warm up if needed → darks (beam off, before the beam
is first switched on, so no extra beam cycle) → beam on, wait for stable kV/µA
→ flats (sample out) → projections (move, settle, skip, average; the next move
overlaps writing the frame) → end flats → beam off → end darks → stage back.

Every way out (an error, KeyboardInterrupt, SystemExit from a SIGTERM handler)
switches the beam off, stops the stages and closes the file marked
``aborted`` with every frame taken so far. An error then surfaces as
ScanAborted (its ``__cause__`` the error); KeyboardInterrupt and SystemExit
propagate unchanged.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from microct.config import ScanConfig
from microct.devices import Frame, SourceState, Status, TriggerMode
from microct.errors import (
    ConfigurationError,
    DeviceFaultError,
    DeviceStateError,
    DeviceTimeoutError,
    FrameLostError,
    InterlockError,
    MicroCTError,
    ReferenceCheckError,
    ScanAborted,
)
from microct.homing import home_axes
from microct.instruments import Instruments
from microct.journal import journal_path, scan_header_fields
from microct.locks import instrument_locks, scan_file_lock
from microct.nexus import IMAGE_KEYS, FrameInfo, NXtomoWriter, ScanHeader
from microct.planner import projection_interval_s, reference_warnings
from microct.policies import TRANSIENT, BeamDropped, Recovery, RetakeFrame
from microct.resume import Interrupted, check_configuration, discard, replay, set_aside
from microct.scanlog import ScanLog

log = logging.getLogger("microct.scan")

T = TypeVar("T")


@dataclass(frozen=True)
class ScanProgress:
    """Where a scan is, for an operator: the ``phase`` ("connecting", "homing", "warm-up", "stabilising",
    "darks", "flats", "projections", "paused", "finishing"), ``done`` of ``total`` in it (frames; None
    where it does not count frames), the frames in the file of the frames planned, a ``detail`` in words
    (read-backs, time left, why paused) and ``eta_s``, the planner's estimate of the time to the end (s;
    None before the frames start)."""

    phase: str
    done: int
    total: int | None
    frames_done: int
    frames_total: int
    detail: str = ""
    eta_s: float | None = None


ProgressCallback = Callable[[ScanProgress], None]
"""Called at each frame and while the scan waits (warm-up, stabilising, paused)."""

FRAME_PHASES = {"dark": "darks", "flat": "flats", "projection": "projections"}

POLL_S = 0.1  # read-back polling period while waiting for the tube (warm-up, stabilising)
PAUSE_CHECK_S = 0.2  # how often (scan time) a running scan looks for its pause file
PHASES = ("dark", "flat", "projection", "flat", "dark")
"""The order of a scan's frames: references at the start, projections, references at the end."""


@dataclass(frozen=True)
class ScanResult:
    path: Path
    status: str
    frames_written: int
    darks: int
    flats: int
    projections: int


@dataclass
class _ReferenceStats:
    """Mean and pixel standard deviation (counts) of each dark, mean of each flat, of the current set."""

    darks: list[tuple[float, float]] = field(default_factory=list)
    flats: list[float] = field(default_factory=list)
    unseen: int = 0  # references the detector wrote to its own files: pixels this process never sees


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while the scan makes itself safe; they are delivered afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def planned_frames(config: ScanConfig, has_sample_out: bool) -> tuple[int, int, int]:
    """(darks, flats, projections) the scan will write."""
    scan = config.scan
    rounds = 2 if scan.references_at == "both" else 1
    flats = scan.n_flats * rounds if has_sample_out else 0
    return scan.n_darks * rounds, flats, scan.n_projections


class Sequencer:
    """Runs one scan of ``config`` on connected-or-not ``instruments`` into a new NXtomo file."""

    def __init__(self, config: ScanConfig, instruments: Instruments, output: str | Path,
                 config_text: str = "", progress: ProgressCallback | None = None, resume: bool = False,
                 replace: bool = False, log_level: int = logging.INFO) -> None:
        self.config = config
        self.scan = config.scan
        self.instruments = instruments
        self.clock = instruments.clock
        self.output = Path(output)
        self.config_text = config_text
        self.progress = progress
        self._writer: NXtomoWriter | None = None
        self.counts = {"dark": 0, "flat": 0, "projection": 0}
        self._saturated_frames = 0
        self.total = sum(planned_frames(config, instruments.sample_out is not None))
        self.resume = resume
        self.replace = replace
        """Delete an existing output (and its journal) once this scan owns the file (``--force``)."""
        self._todo = self._plan()  # frames still to take per phase, in PHASES order (less for a resumed scan)
        self._references = _ReferenceStats()
        self._fresh_set = 0  # a resume's fresh reference set: its number (1 is the scan's first), else 0
        self._phase: tuple[str, int, int | None] = ("connecting", 0, None)  # (name, done, total) under way
        self._interval_s = projection_interval_s(config, instruments)
        self.log = ScanLog(self.output.with_name(self.output.name + ".log"), log_level)
        """The scan's log, beside the file (``SCAN.nxs.log``) and, at the end, inside it (``logs/log``)."""
        self.recovery = Recovery(self.scan.recovery, after_arc=self._after_arc, after_interlock=self._after_interlock,
                                 sleep=self.clock.sleep, event=self._event)
        self.pause_file = self.output.with_name(self.output.name + ".pause")
        """While this file exists, the scan pauses between frames (``touch`` it, then delete it)."""
        self._pending_move: Status | None = None
        self._pause_checked = -PAUSE_CHECK_S

    # -- the scan -------------------------------------------------------------------------------
    def run(self) -> ScanResult:
        """Own the scan file and the instruments' connections (``microct.locks``: LockedError if another
        process does, before anything is touched), then scan."""
        if self.resume:  # before anything is touched
            check_configuration(self.output, self.config.model_dump(mode="json"))
        with scan_file_lock(self.output), instrument_locks(self.config):
            if self.replace:
                self.output.unlink(missing_ok=True)
                journal_path(self.output).unlink(missing_ok=True)
            with self.log:
                return self._run()

    def _run(self) -> ScanResult:
        inst, scan = self.instruments, self.scan
        try:
            interrupted = set_aside(self.output) if self.resume else None
            self._report("connecting")
            inst.connect()
            detector = inst.detector
            detector.set_binning(scan.binning)
            detector.set_trigger_mode(TriggerMode.SOFTWARE)
            detector.set_exposure_s(scan.exposure_s)
            self._open_file(interrupted)
            self._report("homing")
            self._retrying("homing", lambda: home_axes(inst, self.config, self._event))  # file open: events kept
            self._check_interlock()
            self._retrying("warm-up", self._warm_up_if_needed)
            self._retrying("tube set-up", lambda: inst.source.configure(
                voltage_kv=scan.voltage_kv, current_ua=scan.current_ua, spot_mode=scan.spot_mode))
            darks, flats, projections, end_flats, end_darks = self._todo
            for warning in reference_warnings(self.config, inst.sample_out is not None):
                self._event(warning, level=logging.WARNING)
            if self._fresh_set:
                self._event(f"reference set {self._fresh_set}: fresh darks and flats taken at the resume, from "
                            f"frame {self.writer.frames_written} on; the projections after them go with these",
                            frame=self.writer.frames_written)
            self._darks(darks)
            if flats or projections or end_flats:
                self._retrying("beam on", self._beam_on_and_stabilise)
            self._flats(flats)
            self._check_references(at_end=False)
            self._projections(projections)
            self._flats(end_flats)
            self._retrying("beam off", inst.source.beam_off)
            self._event("beam off")
            self._darks(end_darks)
            self._check_references(at_end=True)
            self._report("finishing")
            if scan.return_to_start:
                self._retrying("return to start", lambda: inst.rotation.move_to(scan.start_deg, scan.move_timeout_s))
            self._record_at_close()
            self._close("complete")
        except BaseException as error:
            with signals_deferred():
                self._make_safe(error)
            if not isinstance(error, Exception):  # Ctrl-C, SIGTERM (SystemExit): propagate as they are
                raise
            frames = self._writer.frames_written if self._writer else 0
            kept = (f"; {self.output} keeps {frames} frames, marked aborted; resume with: microct scan --resume "
                    f"{self.output}") if self._writer else "; no file written"
            raise ScanAborted(f"scan aborted: {type(error).__name__}: {error}{kept}", self.output if self._writer
                              else None, frames) from error
        with signals_deferred():
            inst.close()
        log.info("scan complete: %s", self.output)
        return ScanResult(self.output, "complete", self.writer.frames_written, self.counts["dark"],
                          self.counts["flat"], self.counts["projection"])

    def _make_safe(self, error: BaseException) -> None:
        """Beam off, stages stopped, file closed as aborted, instruments closed.

        Never raises (the scan's own error is what the caller must see); logs
        and records in the file whatever it could not do.
        """
        reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        log.error("scan aborted (%s); switching the beam off", reason, extra={"told_by_caller": True})
        for what, action in (("beam off", self._beam_off_at_abort),
                             ("stop rotation", self.instruments.rotation.stop),
                             *((("stop sample_out", self.instruments.sample_out.stop),)
                               if self.instruments.sample_out else ())):
            try:
                action()
            except Exception as failure:  # report, and go on making the rest safe
                log.critical("during abort, %s failed: %s", what, failure)
                self._event(f"abort: {what} failed: {failure}")
        if self._writer is not None:
            self._event(f"scan aborted: {reason}")
            try:
                self._record_at_close()
            except Exception as failure:
                log.critical("during abort, recording the pixel mask and saturation count failed: %s", failure)
            try:
                self._close("aborted")
            except Exception as failure:
                log.critical("during abort, closing %s failed: %s", self.output, failure)
        try:
            self.instruments.close()
        except Exception as failure:
            log.critical("during abort, closing the instruments failed: %s", failure)

    def _beam_off_at_abort(self) -> None:
        """``source.beam_off()``, tried again after a transient error (link lost, no reply, garbled:
        ``microct.policies.TRANSIENT``) as a step is: ``recovery.retries`` times, waiting ``backoff_s``,
        doubling. A link that drops and comes back (Channel Access re-connects a closed circuit at the
        next tick of libca's 10 s disconnect governor) must not leave the tube on because the scan gave
        up in the gap. Raises the last error."""
        policy, source = self.scan.recovery, self.instruments.source
        for attempt in range(policy.retries + 1):
            try:
                source.beam_off()
                return
            except TRANSIENT as error:
                if attempt == policy.retries:
                    raise
                wait = policy.backoff_s * 2 ** attempt
                log.critical("during abort, beam off failed (%s); trying again (%d of %d) in %g s", error,
                             attempt + 1, policy.retries, wait)
                self._event(f"abort: beam off failed ({type(error).__name__}: {error}); trying again "
                            f"({attempt + 1} of {policy.retries}) in {wait:g} s")
                self.clock.sleep(wait)

    # -- steps ------------------------------------------------------------------------------------
    def _open_file(self, interrupted: Interrupted | None) -> None:
        source, detector, scan = self.instruments.source, self.instruments.detector, self.scan
        if interrupted is not None:  # the first start's header, frames, events and read-backs
            header = ScanHeader(**scan_header_fields(interrupted.journal))
            if header.frame_shape != detector.shape:
                raise ConfigurationError(f"resume: the detector gives {detector.shape} frames, the interrupted "
                                         f"scan has {header.frame_shape}")
            self._writer = self._new_writer(header)
            replayed = replay(interrupted, self.writer)
            keys, gap_s = replayed.keys, max(self.clock.time() - replayed.last_time, 0.0)
            self._todo = self._plan_after(keys, gap_s)
            self.total = len(keys) + sum(self._todo)
            for kind, key in IMAGE_KEYS.items():
                self.counts[kind] = keys.count(key)
            aborted = any(kind == "event" and record["message"].startswith("scan aborted")
                          for kind, record in interrupted.journal.entries)
            how = "was aborted" if aborted else "stopped without closing the file (killed, crashed or power lost)"
            if replayed.dropped:
                self._event(f"resume: {replayed.dropped}", level=logging.WARNING, frame=len(keys))
            self._event(f"scan resumed after {len(keys)} frames, {gap_s:.0f} s after the previous run's last record: "
                        f"the previous run {how}; {sum(self._todo)} frames to take", frame=len(keys))
            self.writer.flush()  # the new journal names every replayed frame (on the disk) before the old pair goes
            discard(interrupted)
            return
        spot = source.capabilities.spot_modes[scan.spot_mode]
        header = ScanHeader(
            title=scan.title, start_time=self.clock.time(), clock="simulated" if self.clock.simulated else "real",
            frame_shape=detector.shape,
            pixel_pitch_um=detector.pixel_pitch_um, saturation_value=detector.saturation_value,
            geometry=self.config.geometry, voltage_kv=scan.voltage_kv, current_ua=scan.current_ua,
            focal_spot_mode=scan.spot_mode,
            focal_spot_size_um=spot.spot_size_at_um(scan.voltage_kv * scan.current_ua / 1000.0),
            configuration_toml=self.config_text, source_name=source.name,
            frames_linked=detector.writes_own_files, configuration=self.config.model_dump(mode="json"))
        self._writer = self._new_writer(header)
        self._event(f"scan started: {self.total} frames planned")

    @property
    def writer(self) -> NXtomoWriter:
        """The scan's file writer (there is one from the scan's start on)."""
        if self._writer is None:
            raise MicroCTError("the scan file is not open yet")
        return self._writer

    def _new_writer(self, header: ScanHeader) -> NXtomoWriter:
        return NXtomoWriter(self.output, header, self.scan.flush_interval_s, sync_to_disk=self.scan.sync_to_disk,
                            pixel_check=self.instruments.writer_check(self.output.name))

    def _plan(self) -> list[int]:
        """Frames per phase, in PHASES order."""
        scan = self.scan
        at_start, at_end = scan.references_at in ("start", "both"), scan.references_at in ("end", "both")
        flats = scan.n_flats if self.instruments.sample_out is not None else 0
        return [scan.n_darks * at_start, flats * at_start, scan.n_projections, flats * at_end, scan.n_darks * at_end]

    def _plan_after(self, keys: list[int], gap_s: float) -> list[int]:
        """Frames still to take per phase (PHASES order) after the image ``keys`` an interrupted run wrote,
        ``gap_s`` after its last record. While projections remain, a fresh set of darks and flats comes
        first when the gap exceeds ``scan.resume_references_after_s`` (or the start references were cut
        short by an earlier resume's fresh set); the old frames all stay. MicroCTError if ``keys`` do not fit
        this scan (more projections than planned, end references out of order)."""
        darks, flats, projections, end_flats, end_darks = self._plan()
        done = keys.count(IMAGE_KEYS["projection"])
        if done > projections:
            raise MicroCTError(f"resume: the interrupted scan has {done} projections; this one plans {projections}")
        if done == projections:  # what follows the last projection is end references: flats, then darks
            tail = keys[len(keys) - keys[::-1].index(IMAGE_KEYS["projection"]):] if projections else keys
            taken = _prefix_counts(tail, [("flat", end_flats), ("dark", end_darks)])
            if taken is None:
                raise MicroCTError(f"resume: the {len(tail)} frames after the last projection are not this scan's "
                                   f"end references ({end_flats} flats, then {end_darks} darks)")
            return [0, 0, 0, end_flats - taken[0], end_darks - taken[1]]
        after_s = self.scan.resume_references_after_s
        fresh = after_s == 0 or gap_s > after_s  # (a simulated clock's gap means little: 0 takes them always)
        if done == 0:
            taken = _prefix_counts(keys, [("dark", darks), ("flat", flats)])
            if taken is not None and not fresh:  # carry on with the start references
                return [darks - taken[0], flats - taken[1], projections, end_flats, end_darks]
            fresh = fresh or bool(keys)
        if not fresh:
            return [0, 0, projections - done, end_flats, end_darks]
        self._fresh_set = 1 + sum(1 for a, b in zip([None, *keys], keys) if b != 0 and a in (None, 0))
        set_flats = self.scan.n_flats if self.instruments.sample_out is not None else 0
        return [self.scan.n_darks, set_flats, projections - done, end_flats, end_darks]

    def _record_at_close(self) -> None:
        """What is known only at the end: the detector's mask of unusable pixels (it may learn them from
        frames) and how many frames had saturated pixels."""
        if self._saturated_frames:
            self._event(f"{self._saturated_frames} of {self.writer.frames_written} frames had saturated pixels",
                        level=logging.WARNING)
        mask = self.instruments.detector.pixel_mask
        if mask is not None and mask.shape == self.instruments.detector.shape:
            self.writer.set_pixel_mask(mask)

    def _check_interlock(self) -> None:
        if not self.instruments.source.read_interlock_closed():
            raise InterlockError("source: interlock is open; close the enclosure and start the scan again")

    def _warm_up_if_needed(self) -> None:
        source = self.instruments.source
        state = source.read_state()
        if state is SourceState.WARMUP_NEEDED:
            self._event("warm-up started")
            source.warm_up()
            state = SourceState.WARMING_UP
        if state is SourceState.WARMING_UP:  # (also when a retry finds the warm-up under way)
            state = self._wait_for_state(SourceState.STANDBY, self.scan.warmup_timeout_s, "warm-up")
            self._event("warm-up done")
        if state is SourceState.NOT_READY:  # the interlock was checked closed: the device says why
            raise DeviceStateError("source: not ready although the interlock is closed (e.g. preheating, a "
                                   "board fault, local mode); `microct check` shows the device's status")
        if state not in (SourceState.STANDBY, SourceState.BEAM_ON):
            raise DeviceFaultError(f"source: cannot scan in state {state.value!r}; reset the tube first")

    def _wait_for_state(self, wanted: SourceState, timeout_s: float, what: str) -> SourceState:
        source, clock = self.instruments.source, self.clock
        started = clock.monotonic()
        deadline = started + timeout_s
        while (state := source.read_state()) is not wanted:
            kv, ua = source.read_voltage_kv(), source.read_current_ua()
            left = source.read_warmup_remaining_s()
            self._report(what, f"{kv:.1f} kV, {ua:.1f} µA; {clock.monotonic() - started:.0f} s"
                               + (f", about {left:.0f} s left" if left is not None else "")
                               + f" (at most {timeout_s:g} s)")
            if state in (SourceState.FAULT, SourceState.NOT_READY):
                raise DeviceFaultError(f"source: {what} failed, state {state.value!r}")
            if clock.monotonic() > deadline:
                raise DeviceTimeoutError(f"source: {what} not finished within {timeout_s:g} s (state {state.value!r})")
            clock.sleep(POLL_S)
        return state

    def _beam_on_and_stabilise(self) -> None:
        source, scan, clock = self.instruments.source, self.scan, self.clock
        source.beam_on()
        self._event(f"beam on: {scan.voltage_kv:g} kV, {scan.current_ua:g} µA, spot {scan.spot_mode}")
        deadline = clock.monotonic() + scan.stable_timeout_s
        stable_since = None
        while True:
            kv, ua = source.read_voltage_kv(), source.read_current_ua()
            now = clock.monotonic()
            self.writer.log_reading(clock.time(), kv, ua, float("nan"))
            self._report("stabilising", f"{kv:.1f} of {scan.voltage_kv:g} kV, {ua:.1f} of {scan.current_ua:g} µA")
            if self._near(kv, scan.voltage_kv) and self._near(ua, scan.current_ua):
                stable_since = now if stable_since is None else stable_since
                if now - stable_since >= scan.stable_hold_s:
                    self._event(f"tube stable: {kv:.2f} kV, {ua:.2f} µA")
                    return
            else:
                stable_since = None
                if (state := source.read_state()) is not SourceState.BEAM_ON:
                    error = InterlockError if not source.read_interlock_closed() else BeamDropped
                    raise error(f"source: beam dropped while stabilising (state {state.value!r})")
            if now > deadline:
                raise DeviceTimeoutError(
                    f"source: read-backs {kv:.2f} kV / {ua:.2f} µA not within {scan.stable_tolerance:.1%} of "
                    f"{scan.voltage_kv:g} kV / {scan.current_ua:g} µA after {scan.stable_timeout_s:g} s")
            clock.sleep(POLL_S)

    def _near(self, measured: float, wanted: float) -> bool:
        return abs(measured - wanted) <= self.scan.stable_tolerance * max(abs(wanted), 1.0)

    def _darks(self, n: int) -> None:
        if not n:
            return
        self._start_phase("dark", n)
        self._retrying("beam off for darks", self.instruments.source.beam_off)
        angle = self._retrying("rotation read-back", self.instruments.rotation.read_position)
        for _ in range(n):
            self._step("dark", lambda: self._write(self._take(), "dark", angle, 0.0, 0.0))

    def _flats(self, n: int) -> None:
        sample_out, scan = self.instruments.sample_out, self.scan
        if sample_out is None and scan.n_flats:
            self._event("no sample_out axis configured: flats skipped", level=logging.WARNING)
        if not n:
            return
        assert sample_out is not None and scan.sample_out_position_mm is not None  # flats are planned only then
        self._start_phase("flat", n)
        position = scan.sample_out_position_mm
        sample_in = self._retrying("sample_out read-back", sample_out.read_position)
        self._retrying("sample out", lambda: sample_out.move_to(position, scan.move_timeout_s))
        self.clock.sleep(scan.settle_s)
        self._retrying("frames skipped", self._skip)
        angle = self._retrying("rotation read-back", self.instruments.rotation.read_position)

        def flat() -> None:
            frame = self._take()
            self._write(frame, "flat", angle, *self._tube_readbacks(), x_mm=position)

        for _ in range(n):
            self._step("flat", flat)
        self._retrying("sample in", lambda: sample_out.move_to(sample_in, scan.move_timeout_s))

    def _projections(self, n: int) -> None:
        scan = self.scan
        angles = scan.angles_deg()[len(scan.angles_deg()) - n:]
        if not n:
            return
        self._event(f"projections started: {len(angles)} angles from {angles[0]:g} to {angles[-1]:g} deg")
        self._start_phase("projection", n)
        self._pending_move = None
        for i, target in enumerate(angles):
            following = angles[i + 1] if i + 1 < len(angles) else None
            self._step(f"projection at {target:g} deg", functools.partial(self._projection, target, following))

    def _projection(self, target: float, following: float | None) -> None:
        """Move to ``target`` (unless the move is under way), settle, expose, check the tube, start the
        move to ``following`` and write the frame while it moves."""
        rotation, scan = self.instruments.rotation, self.scan
        move, self._pending_move = self._pending_move or rotation.start_move_to(target), None
        move.wait(scan.move_timeout_s)
        self.clock.sleep(scan.settle_s)
        self._skip()
        angle = rotation.read_position()
        frame = self._take()
        kv, ua = self._tube_readbacks()
        if following is not None:
            try:
                self._pending_move = rotation.start_move_to(following)  # moves while the frame is written
            except MicroCTError as error:  # the frame is good; the next step moves again (or reacts)
                self._event(f"starting the move to {following:g} deg failed: {error}", logging.WARNING,
                            self.writer.frames_written)
            except BaseException:
                self._write(frame, "projection", angle, kv, ua)  # the frame is good: keep it
                raise
        self._write(frame, "projection", angle, kv, ua)

    # -- recovery and pauses ----------------------------------------------------------------------------
    def _step(self, what: str, step: Callable[[], None]) -> None:
        """One frame, under the recovery policy; first a pause, if one is asked for (the pause file is
        looked for at most every PAUSE_CHECK_S of scan time: a stat per frame costs more than the rest)."""
        now = self.clock.monotonic()
        if now - self._pause_checked >= PAUSE_CHECK_S:
            self._pause_checked = now
            if self.pause_file.exists():
                self._pause()
        self.recovery.run(what, self.writer.frames_written, step)

    def _retrying(self, what: str, action: Callable[[], T]) -> T:
        """A step between frames (a move, a set-up, the beam coming on) under the recovery policy."""
        return self.recovery.run(what, self.writer.frames_written, action)

    def _after_arc(self) -> None:
        source = self.instruments.source
        self._retrying("beam off after a fault", source.beam_off)
        self._retrying("tube reset", source.reset)
        self.clock.sleep(self.scan.recovery.arc_wait_s)
        self._retrying("beam on after a fault", self._beam_on_and_stabilise)

    def _after_interlock(self, error: InterlockError) -> None:
        source, clock = self.instruments.source, self.clock
        self._retrying("beam off at the interlock", source.beam_off)
        timeout = self.scan.recovery.interlock_timeout_s
        deadline = clock.monotonic() + timeout
        while not self._retrying("interlock read-back", source.read_interlock_closed):
            if clock.monotonic() > deadline:
                raise InterlockError(f"source: the interlock stayed open for {timeout:g} s ({error})") from error
            clock.sleep(POLL_S)
        self._event("interlock closed: re-stabilising the beam", frame=self.writer.frames_written)
        if self._retrying("tube state", source.read_state) is SourceState.FAULT:
            self._retrying("tube reset", source.reset)
        self._retrying("beam on after the interlock", self._beam_on_and_stabilise)

    def _pause(self) -> None:
        """Wait while the pause file exists; a long pause switches the beam off (back on, stable, after)."""
        source, clock, frame = self.instruments.source, self.clock, self.writer.frames_written
        self._event(f"paused on request: delete {self.pause_file.name} to resume", frame=frame)
        beam_on = self._retrying("tube state", source.read_state) is SourceState.BEAM_ON
        since, switched_off = clock.monotonic(), False
        while self.pause_file.exists():
            self._report("paused", f"on request: delete {self.pause_file} to go on"
                                   + ("; beam off" if switched_off else ""))
            if beam_on and not switched_off and clock.monotonic() - since > self.scan.recovery.pause_beam_off_s:
                self._retrying("beam off for a long pause", source.beam_off)
                switched_off = True
                self._event(f"paused for over {self.scan.recovery.pause_beam_off_s:g} s: beam off", frame=frame)
            clock.sleep(POLL_S)
        self._event(f"resumed after {clock.monotonic() - since:.1f} s", frame=frame)
        self._report(FRAME_PHASES.get(self._phase[0], self._phase[0]))
        if switched_off:
            self._retrying("beam on after the pause", self._beam_on_and_stabilise)

    # -- frames -------------------------------------------------------------------------------------
    def _skip(self) -> None:
        if self.scan.frames_skipped:
            self.instruments.detector.skip(self.scan.frames_skipped)

    def _take(self) -> Frame:
        """One frame, or the mean of ``frames_averaged`` (timestamp: the first one's start, epoch s);
        RetakeFrame if the detector lost a frame or did not deliver it in time."""
        try:
            frames: list[Frame] = self.instruments.detector.acquire(self.scan.frames_averaged)
        except (FrameLostError, DeviceTimeoutError) as error:
            raise RetakeFrame(str(error)) from error
        if len(frames) == 1:
            return frames[0]
        mean = np.mean([f.data for f in frames if f.data is not None], axis=0, dtype=np.float64)
        return Frame(np.rint(mean).astype(np.uint16), frames[0].frame_number, frames[0].timestamp)

    def _tube_readbacks(self) -> tuple[float, float]:
        """Measured (kV, µA) after a frame; InterlockError or BeamDropped (arc, overload) if the beam has
        dropped. The state is read anew (no reply from before the frame), so a frame exposed during a
        fault is not kept (as far as the device reports the fault by the time the frame ends)."""
        source = self.instruments.source
        source.refresh()
        state = source.read_state()
        kv, ua = source.read_voltage_kv(), source.read_current_ua()
        if state is not SourceState.BEAM_ON:
            error = InterlockError if not source.read_interlock_closed() else BeamDropped
            raise error(f"source: beam dropped during the frame (state {state.value!r})")
        return kv, ua

    def _write(self, frame: Frame, kind: str, angle: float, kv: float, ua: float, x_mm: float = 0.0) -> None:
        info = FrameInfo(IMAGE_KEYS[kind], angle, self.scan.exposure_s, frame.timestamp, kv, ua, x_mm)
        if frame.data is None:  # in the detector's own file: linked, not inspected
            if frame.file is None:
                raise MicroCTError(f"frame {frame.frame_number}: the detector gave neither pixels nor a file")
            self.writer.append_linked(frame.file, info)
            self._references.unseen += kind != "projection"
        else:
            self._write_pixels(frame.data, kind, info)
        self.counts[kind] += 1
        name, done, total = self._phase
        self._phase = (name, done + 1, total)
        self._report(FRAME_PHASES[kind])

    def _write_pixels(self, frame: np.ndarray, kind: str, info: FrameInfo) -> None:
        saturated = frame.max() >= self.instruments.detector.saturation_value  # before the write evicts it from cache
        if kind != "projection":  # a sample of the pixels is enough to tell dark from lit
            sample = frame[::4, ::4]
            if kind == "dark":
                self._references.darks.append((float(sample.mean()), float(sample.std())))
            else:
                self._references.flats.append(float(sample.mean()))
        index = self.writer.append(frame, info)
        if saturated:
            self._saturated_frames += 1
            if self._saturated_frames == 1:
                self._event(f"saturated pixels in {kind} frame {index}: lower µA or exposure",
                            level=logging.WARNING, frame=index)

    # -- what the operator sees -------------------------------------------------------------------------
    def _start_phase(self, kind: str, n: int) -> None:
        self._phase = (kind, 0, n)

    def _report(self, phase: str, detail: str = "") -> None:
        """Tell the progress callback where the scan is (``ScanProgress``)."""
        if self.progress is None:
            return
        name, done, total = self._phase
        frames = self._writer.frames_written if self._writer is not None else 0
        in_phase = phase == FRAME_PHASES.get(name)
        self.progress(ScanProgress(phase, done if in_phase else 0, total if in_phase else None, frames, self.total,
                                   detail, self._eta_s() if self._writer is not None else None))

    def _eta_s(self) -> float:
        """The planner's time (s) for the frames still to take: each projection ``projection_interval_s``,
        each reference frame its exposures (moves of the sample-out axis and the tube's ramps not counted)."""
        scan = self.scan
        projections = scan.n_projections - self.counts["projection"]
        references = max(self.total - self.writer.frames_written - projections, 0)
        return projections * self._interval_s + references * scan.frames_averaged * scan.exposure_s

    def _check_references(self, at_end: bool) -> None:
        """Compare the darks and flats of the set just taken (``scan.reference_check``): flats no brighter
        than the darks, or lit darks, stop the scan before its projections (ReferenceCheckError); at the end
        of a scan (references_at = "end") the projections are taken already: a warning event instead."""
        stats, check, self._references = self._references, self.scan.reference_check, _ReferenceStats()
        if stats.unseen and check.enabled:
            self._event(f"reference check skipped: the detector wrote these {stats.unseen} references to its own "
                        f"files, whose pixels this scan does not read", level=logging.WARNING)
        if not (stats.darks and stats.flats and check.enabled):
            return
        dark = sum(mean for mean, _ in stats.darks) / len(stats.darks)
        sigma = sum(std for _, std in stats.darks) / len(stats.darks)
        flat = sum(stats.flats) / len(stats.flats)
        needed = max(check.min_flat_signal_sigma * sigma, 1.0)
        lit = dark > check.max_dark_fraction * self.instruments.detector.saturation_value
        saturation = self.instruments.detector.saturation_value
        figures = (f"darks {dark:.1f} counts (σ {sigma:.1f}), flats {flat:.1f} counts; the flats must exceed the "
                   f"darks by {needed:.1f} (scan.reference_check.min_flat_signal_sigma = "
                   f"{check.min_flat_signal_sigma:g} σ) and the darks stay below {check.max_dark_fraction:g} × "
                   f"{saturation} (max_dark_fraction)")
        if lit:
            problem = ("the darks look lit: X-rays or light reached the detector with the beam off (the tube did "
                       "not switch off, a second source, a light leak)")
        elif flat - dark < needed:
            problem = ("the flats are dark: no X-rays reached the detector with the beam on (the tube does not "
                       "emit, a shutter or collimator is closed, a filter is far too thick)")
        else:
            self._event(f"references look right: {figures}")
            return
        if at_end:
            self._event(f"reference check: {problem}; {figures}", level=logging.WARNING)
            return
        raise ReferenceCheckError(f"reference check: {problem}; {figures}. Nothing more was exposed. Set "
                                  f"scan.reference_check.enabled = false to scan anyway")

    def _close(self, status: str) -> None:
        """Store the log in the file and close it as ``status``; times: the wall clock's (a simulated clock's
        end is recorded beside it)."""
        self.writer.set_log(self.log.text())
        simulated_end = self.clock.time() if self.clock.simulated else None
        self.writer.close("complete" if status == "complete" else "aborted", time.time(), simulated_end)

    def _event(self, message: str, level: int = logging.INFO, frame: int = -1) -> None:
        log.log(level, message)
        if self._writer is not None:
            self.writer.log_event(self.clock.time(), message, frame)


def _prefix_counts(keys: list[int], runs: list[tuple[str, int]]) -> tuple[int, ...] | None:
    """How many frames of each run (kind, size) ``keys`` holds if it is a prefix of those runs in order
    (e.g. 3 darks of 10, then 0 flats); None if it is not."""
    counts, position = [], 0
    for kind, size in runs:
        n = 0
        while position < len(keys) and n < size and keys[position] == IMAGE_KEYS[kind]:
            n, position = n + 1, position + 1
        counts.append(n)
        if n < size:
            break
    counts += [0] * (len(runs) - len(counts))
    return tuple(counts) if position == len(keys) else None


def run_scan(config: ScanConfig, instruments: Instruments, output: str | Path, config_text: str = "",
             progress: ProgressCallback | None = None, resume: bool = False, replace: bool = False,
             log_level: int = logging.INFO) -> ScanResult:
    """Run one scan; see ``Sequencer``. ``resume``: continue the interrupted scan of ``output``
    (``microct.resume``) after checking that ``config`` is the one it started with. ``replace``: delete an
    existing ``output`` once the scan owns it (never one another live scan owns). ``log_level``: of the log
    kept beside the file and in it."""
    return Sequencer(config, instruments, output, config_text, progress, resume, replace, log_level).run()
