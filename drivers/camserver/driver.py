"""The ``camserver`` driver: ``CamserverOptions`` and ``CamserverDetector`` (protocol in ``codec``, PILATUS
sizes in ``models``; docs/protocols/dectris-camserver.md, "notes"). Images never cross the socket:
camserver writes one TIFF file per image into its ImgPath (often a ramdisk or an NFS export), which
this PC reads at ``local_image_path`` through the kit's ``FolderReader``.
"""

from __future__ import annotations

import logging
import math
import os
import posixpath
import re
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, field_validator, model_validator

from microct.driverkit import (
    Clock,
    CommunicationError,
    ConfigurationError,
    Detector,
    DetectorCapabilities,
    DeviceStateError,
    DeviceTimeoutError,
    DriverOptions,
    ErrorReply,
    Finding,
    FolderReader,
    Frame,
    MicroCTError,
    ProtocolError,
    Transport,
    TriggerMode,
    VisaSettings,
    VisaTransport,
)
from microct.drivers.camserver import codec, models

log = logging.getLogger("microct.drivers.camserver")

MAX_KILL_REPLIES = 8  # replies read while waiting for K's and the series' end


class CamserverOptions(DriverOptions):
    """``[detector.options]`` of the ``camserver`` driver."""

    model: models.Model = Field(default="300K", description="detector size (notes): " + ", ".join(models.SIZES))
    pixel_pitch_um: float = Field(default=models.PIXEL_PITCH_UM, gt=0,
                                  description="pixel pitch, for the recorded pixel and voxel size; default: 172 µm, "
                                  "every PILATUS model (DECTRIS data sheets; each image header's Pixel_size)")
    image_path: str = Field(description="ImgPath: the image folder as the camserver sees it (absolute)")
    local_image_path: str | None = Field(default=None, description="the same folder as this PC reads it "
                                         "(an NFS mount, say); default: image_path")
    file_stem: str = Field(default="microct", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                           description="image files are <file_stem>_<counter, 5 digits>.tif")
    exposure_range_s: tuple[float, float] = Field(default=(0.001, 3600.0), description="allowed ExpTime (s)")
    readout_s: float = Field(default=codec.MIN_READOUT_S, ge=codec.MIN_READOUT_S,
                             description="ExpPeriod = exposure + readout_s, and at least 2 ms (s)")
    reply_timeout_s: float = Field(default=1.0, gt=0, description="for each reply (s)")
    start_timeout_s: float = Field(default=2.0, gt=0, description="for '15 OK' after Exposure (s)")
    margin_s: float = Field(default=10.0, gt=0, description="beyond the series' own time, for each file and "
                            "the final '7 OK' (s)")
    poll_s: float = Field(default=0.01, gt=0, description="how often to look for the next file (s)")
    keep_files: bool = Field(default=False, description="false: delete each image file once read")
    visa: VisaSettings = Field(default_factory=VisaSettings, description="the VISA link; terminators default "
                               "to CAN in and newline out, the timeout to reply_timeout_s")

    @field_validator("image_path")
    @classmethod
    def _absolute(cls, path: str) -> str:
        if not path.startswith("/") or any(c.isspace() for c in path):
            raise ValueError(f"{path!r}: needs an absolute path without spaces (camserver's ImgPath)")
        return path

    @model_validator(mode="after")
    def _consistent(self):
        low, high = self.exposure_range_s
        if not 1e-7 <= low <= high:
            raise ValueError(f"exposure_range_s=({low}, {high}): need 1e-07 <= low <= high (camserver takes "
                             f"times to 7 decimals)")
        return self

    def visa_settings(self) -> VisaSettings:
        """The link: what ``visa`` sets, camserver's terminators and ``reply_timeout_s`` for the rest."""
        return self.visa.with_defaults(read_terminator=codec.REPLY_TERMINATOR.decode(),
                                       write_terminator=codec.REQUEST_TERMINATOR.decode(),
                                       timeout_s=self.reply_timeout_s)


class CamserverDetector(Detector):
    """A PILATUS detector run by camserver: exposures by command, images read from the files it writes.

    Frames are uint16 (the Detector interface), so ``bit_depth`` is 16: the detector's 20-bit counts
    above 65535 are clipped to 65535, and masked pixels (−1 module gap, −2 bad) read 0 and are marked
    in ``pixel_mask`` (NeXus bits: 0 gap, 1 dead), which also holds the module gaps of the model from
    the start. Binning 1 only. SOFTWARE and INTERNAL trigger modes both expose with ``Exposure``
    (internal timing); external triggers are not supported.

    ``acquire(n)`` sends NImages, ExpTime and ExpPeriod when they changed, then
    ``Exposure <file_stem>_<counter>.tif``; waits ``start_timeout_s`` for ``15 OK``, reads each file as
    soon as it is complete (full size; looked for every ``poll_s`` on the device's clock), then waits
    for ``7 OK`` naming the last file. Errors: ErrorReply (a ProtocolError; ``code`` and ``meaning`` are
    camserver's) naming the command for an ``ERR`` reply (``1 ERR access denied``: another client has
    control); DeviceTimeoutError naming the file that did not appear or stayed short; ProtocolError for a
    wrong file or reply; CommunicationError for a folder that cannot be read. On any error, on ``stop()``
    and on ``close()`` during a series, ``K`` is sent to stop it.
    """

    backend = "VISA"
    Options = CamserverOptions

    def __init__(self, name: str, options: CamserverOptions, connection: str | None = None, *,
                 transport: Transport | None = None, clock: Clock | None = None) -> None:
        self.options = options
        width, height = models.SIZES[options.model]
        super().__init__(name, DetectorCapabilities(
            shape=(height, width), pixel_pitch_um=options.pixel_pitch_um, bit_depth=16,
            exposure_range_s=options.exposure_range_s, binnings=(1,),
            trigger_modes=(TriggerMode.SOFTWARE, TriggerMode.INTERNAL)), clock)
        if transport is None:
            if not connection:
                raise ConfigurationError(f"{name}.connection: the camserver driver needs a VISA resource, e.g. "
                                         f"TCPIP::192.168.1.10::{codec.DEFAULT_PORT}::SOCKET")
            transport = VisaTransport(connection, options.visa_settings(), name=f"detector {name!r}")
        self._transport = transport
        self.local_image_path = Path(options.local_image_path or options.image_path)
        self._images = FolderReader(self.local_image_path, clock=self.clock, poll_s=options.poll_s,
                                    description=f"image folder {self.local_image_path}")
        self._file_bytes = codec.tiff_size(height, width)
        self._image_path = codec.image_path_text(options.image_path)
        self._file_pattern = re.compile(re.escape(options.file_stem) + r"_(\d+)\.tif")
        self._sent: dict[str, str] = {}
        self._counter = 0
        self._series_running = False
        self._stopped_by = ""  # "stop()" or "close()" once either has ended the running series
        self._marked: np.ndarray | None = None
        self._counts: np.ndarray | None = None
        self.version = ""

    def stop(self) -> None:
        """Stop a running ``acquire()`` (from another thread): it sends K and raises DeviceStateError.
        Nothing happens when no acquisition runs."""
        if self._series_running:
            self._stopped_by = "stop()"

    # -- exchanges -----------------------------------------------------------------------------------
    def _command(self, name: str, *arguments: object) -> codec.Reply:
        """One command and its reply, checked (ErrorReply for ERR, ProtocolError for another code)."""
        message = codec.encode_command(name, *arguments)
        return self._check(self._transport.query(message)[0], message.decode(), codec.reply_code(name))

    def _check(self, raw: bytes, sent: str, code: int) -> codec.Reply:
        try:
            reply = codec.parse_reply(raw)
        except ProtocolError as error:
            raise self._error(ProtocolError, f"'{sent}': {error}") from None
        if not reply.ok:
            hint = ("; another client has control of the camserver (only the first connection may change "
                    "settings)" if reply.text == codec.ACCESS_DENIED else "")
            raise ErrorReply(reply.code, reply.text, sent,
                             message=f"{self.who}: '{sent}' was refused: '{reply}'{hint}")
        if reply.code != code:
            raise self._error(ProtocolError, f"'{sent}': the reply '{reply}' has code {reply.code}, expected {code}")
        return reply

    def _set(self, name: str, value: str) -> None:
        """Send ``name value`` unless it was the last value sent; the reply must echo the value."""
        if self._sent.get(name) == value:
            return
        self._sent.pop(name, None)
        reply = self._command(name, value)
        if value not in reply.text.split():
            raise self._error(ProtocolError, f"'{name} {value}': the reply '{reply}' does not echo {value}")
        self._sent[name] = value

    def _period_s(self, exposure_s: float) -> float:
        """ExpPeriod for ``exposure_s``: exposure + readout_s, at least 2 ms, up to the 7th decimal."""
        period = max(codec.MIN_PERIOD_S, exposure_s + self.options.readout_s)
        return math.ceil(round(period * 1e7, 3)) / 1e7

    # -- hooks ---------------------------------------------------------------------------------------
    def _do_connect(self) -> None:
        """Open the link and read the version (a query: connect sets nothing); ImgPath is set, and this PC's
        view of the folder checked, at the first use (``_do_prepare``)."""
        self._transport.open()
        self._sent.clear()
        self._series_running = False
        self.version = self._command("Version").text
        width, height = models.SIZES[self.options.model]
        self._report_pixel_mask(np.where(models.gap_mask(width, height), codec.MASK_GAP, 0))
        self._marked = None

    def _do_prepare(self) -> None:
        """``ImgPath <image_path>``, checked by its reply: where camserver writes the images. At the first
        setter or acquisition after connect, which sets nothing."""
        reply = self._command("ImgPath", self.options.image_path)
        if codec.image_path_text(reply.text) != self._image_path:
            raise self._error(ProtocolError, f"'ImgPath {self.options.image_path}': camserver answered "
                                             f"'{reply}', expected {self._image_path}")
        if not self.local_image_path.is_dir():  # camserver creates ImgPath if it can (notes, "Commands")
            raise self._error(ConfigurationError, f"local_image_path={str(self.local_image_path)!r} is not a "
                                                  f"folder here, although camserver has ImgPath "
                                                  f"{self._image_path}: mount that folder here and name it")

    def _do_check(self) -> list[Finding]:
        """Whether this PC sees the image folder yet (camserver creates it at the first use's ImgPath)."""
        if self.local_image_path.is_dir():
            seen = Finding("ok", "local_image_path", f"{self.local_image_path}: a folder here")
        else:
            seen = Finding("warning", "local_image_path", f"{self.local_image_path} is not a folder here (yet): "
                                                          f"camserver creates ImgPath {self._image_path} at the first "
                                                          f"use; if it is still missing then, mount it here")
        return [*super()._do_check(), seen]

    def _do_close(self) -> None:
        try:
            if self._series_running:  # close() from another thread during acquire(): stop the series
                self._series_running = False
                self._stopped_by = "close()"
                try:
                    self._transport.write(b"K")
                except MicroCTError as error:
                    log.warning("detector %r: sending K at close failed: %s", self.name, error)
        finally:
            self._transport.close()

    def _do_set_exposure_s(self, exposure_s: float) -> None:
        self._set("ExpTime", codec.format_seconds(exposure_s))
        self._set("ExpPeriod", codec.format_seconds(self._period_s(exposure_s)))

    def _do_set_binning(self, binning: int) -> None:
        pass  # binning 1 only: nothing to send

    def _do_set_trigger_mode(self, mode: TriggerMode) -> None:
        pass  # SOFTWARE and INTERNAL both expose with Exposure

    def _do_describe(self) -> dict[str, Any]:
        return {"model": self.options.model, "version": self.version, "image_path": self._image_path,
                "local_image_path": str(self.local_image_path), **super()._do_describe()}

    # -- acquisition ---------------------------------------------------------------------------------
    def _do_acquire(self, n: int) -> list[Frame]:
        names = self._file_names(n)
        first_number = self._counter
        self._counter += n  # the names are used once, whatever happens
        self._set("NImages", str(n))
        exposure_s, period_s = self.exposure_s, self._period_s(self.exposure_s)
        sent = f"Exposure {names[0]}"
        self._stopped_by = ""
        self._series_running = True
        try:
            self._start(sent)
            start, start_epoch = self.clock.monotonic(), self.clock.time()
            frames = []
            for i, name in enumerate(names):
                counts = self._read_image(name, start, i * period_s + exposure_s, f"frame {i + 1} of {n} of '{sent}'")
                self._update_mask(counts)
                frames.append(Frame(codec.frame_from_counts(counts), first_number + i, start_epoch + i * period_s))
            self._wait_for_end(sent, names[-1], start + (n - 1) * period_s + exposure_s + self.options.margin_s)
        except BaseException:
            if self._series_running:
                self._kill_series()
            raise
        finally:
            if not self.options.keep_files:
                self._images.remove(*names)
        return frames

    def _file_names(self, n: int) -> list[str]:
        """The n files of the next series; past any file already there (left by an earlier session)."""
        names = codec.series_names(f"{self.options.file_stem}_{self._counter:05d}.tif", n)
        if any(self._images.path(name).exists() for name in names):
            matches = (self._file_pattern.fullmatch(name) for name in self._images.names())
            numbers = [int(m[1]) for m in matches if m]
            self._counter = max(numbers, default=-1) + 1
            names = codec.series_names(f"{self.options.file_stem}_{self._counter:05d}.tif", n)
        return names

    def _start(self, sent: str) -> None:
        """Send the exposure command; its ``15 OK`` must come within start_timeout_s. A refused one
        started nothing (no K needed)."""
        deadline = self.clock.monotonic() + self.options.start_timeout_s
        try:
            raw = self._transport.query(sent.encode("ascii"))[0]
        except DeviceTimeoutError:
            raw = self._next_reply(sent, deadline, f"no '15 OK' within {self.options.start_timeout_s:g} s")
        try:
            self._check(raw, sent, codec.GENERIC)
        except ErrorReply:
            self._series_running = False
            raise

    def _next_reply(self, sent: str, deadline: float, late: str) -> bytes:
        """The next reply, waiting in reply_timeout_s steps until ``deadline`` (monotonic s); then
        DeviceTimeoutError (after K) saying ``late``. A ``stop()`` ends the wait."""
        while True:
            self._raise_if_stopped(sent)
            try:
                return self._transport.read_reply(sent)
            except DeviceTimeoutError:
                if self.clock.monotonic() >= deadline:
                    raise self._abort(DeviceTimeoutError, f"'{sent}': {late}") from None

    def _read_image(self, name: str, start: float, due_s: float, which: str) -> np.ndarray:
        """The counts of image file ``name`` once complete; it is due ``due_s`` after the series' start
        (``start``, monotonic s), given margin_s more. After K: DeviceTimeoutError naming the file if it
        does not appear or stays short, ProtocolError if it is not an image of this model."""
        try:
            return self._images.read(name, partial(self._decode, which=which), timeout_s=due_s + self.options.margin_s,
                                     since=start, expected_bytes=self._file_bytes,
                                     what=f"image file {self._images.path(name)} ({which})",
                                     check=partial(self._raise_if_stopped, which))
        except DeviceTimeoutError as error:
            raise self._abort(DeviceTimeoutError, f"{error} of the start") from None
        except (CommunicationError, ProtocolError) as error:
            raise self._abort(type(error), str(error)) from None

    def _decode(self, path: Path, which: str) -> np.ndarray:
        """int32 counts of a complete camserver TIFF (in a buffer the next file overwrites); ProtocolError
        naming the file if it is not one of this model's size and layout."""
        rows, columns = self.capabilities.shape
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            if size != self._file_bytes:
                raise ProtocolError(f"image file {path} ({which}) has {size} bytes; a {self.options.model} image "
                                    f"file has {self._file_bytes}")
            try:
                layout = codec.parse_tiff_header(file.read(codec.TIFF_HEADER_BYTES))
            except ProtocolError as error:
                raise ProtocolError(f"image file {path}: {error}") from None
            if (layout.rows, layout.columns, layout.data_offset) != (rows, columns, codec.TIFF_HEADER_BYTES):
                raise ProtocolError(f"image file {path}: {layout.columns} × {layout.rows} pixels from byte "
                                    f"{layout.data_offset}; a {self.options.model} image is {columns} × {rows} "
                                    f"from byte {codec.TIFF_HEADER_BYTES}")
            if self._counts is None:
                self._counts = np.empty((rows, columns), "<i4")
            read = file.readinto(memoryview(self._counts).cast("B"))  # one reused buffer: no page faults
            if read != self._counts.nbytes:
                raise ProtocolError(f"image file {path}: only {read} of {self._counts.nbytes} bytes of pixels could "
                                    f"be read")
            return self._counts

    def _update_mask(self, counts: np.ndarray) -> None:
        """Add the pixels this frame marks (−1, −2) to pixel_mask; cheap while the marks stay the same."""
        marked = counts < 0
        if self._marked is not None and np.array_equal(marked, self._marked):
            return
        self._marked = marked
        if marked.any():
            self._report_pixel_mask(codec.mask_from_counts(counts), merge=True)

    def _wait_for_end(self, sent: str, last: str, deadline: float) -> None:
        """The series' final reply: ``7 OK`` naming the last file, by ``deadline`` (monotonic s)."""
        raw = self._next_reply(sent, deadline, "no final '7 OK' in time")
        self._series_running = False
        reply = self._check(raw, sent, codec.reply_code("Exposure"))
        expected = posixpath.join(self._image_path, last)
        if posixpath.normpath(reply.text.strip()) != expected:
            raise self._error(ProtocolError, f"'{sent}' ended with '{reply}', expected the last file {expected}")

    def _raise_if_stopped(self, what: str) -> None:
        if self._stopped_by:
            message = f"acquisition stopped by {self._stopped_by} ({what})"
            if self._series_running:
                raise self._abort(DeviceStateError, message)
            raise self._error(DeviceStateError, f"{message}; K sent")  # by close()

    def _abort(self, cls: type[MicroCTError], message: str) -> MicroCTError:
        """Stop the running series with K; the error to raise, saying how the K went."""
        return self._error(cls, f"{message}; {self._kill_series()}")

    def _kill_series(self) -> str:
        """Send K and read replies until K's (13) and the series' end (7) came; what happened, in words."""
        self._series_running = False
        try:
            self._transport.write(b"K")
            seen: set[int] = set()
            for _ in range(MAX_KILL_REPLIES):
                try:
                    seen.add(codec.parse_reply(self._transport.read_reply("K")).code)
                except ProtocolError as error:
                    log.warning("detector %r: after K: %s", self.name, error)
                if {codec.reply_code("K"), codec.reply_code("Exposure")} <= seen:
                    return "K sent: camserver stopped the series"
        except DeviceTimeoutError:
            pass
        except CommunicationError as error:
            return f"sending K failed: {error}"
        return (f"K sent, but camserver did not confirm the series' end within {self.options.reply_timeout_s:g} s "
                f"(is the link lost?)")
