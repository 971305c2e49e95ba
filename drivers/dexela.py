"""Varex (Dexela) CMOS flat panels: registers over a serial line, frames from a frame-grabber channel.

The register protocol is the one in /work/shared/protocols/dexela-serial.md ("the sheet"). It is
derived from open-source drivers (a Python driver for the Dexela 2923 and the MX control system's
Aviex PCCD driver), not from a vendor document. Frames never travel over the serial link (sheet,
"Pixels"): they come through a Camera Link frame grabber, for which this module defines a small
**frame channel** of its own (not from the sheet): a folder the grabber writes frame files into, or a
TCP stream. Both carry the software trigger, as a grabber does: the sheet documents no trigger
command over serial.

Three parts: the register **codec** and the frame-channel **codec** (pure functions, shared with the
wire simulator ``microct.simulators.dexela``), the frame-channel clients, and the driver
``DexelaDetector``.

Frame channel (this project's definition):

- Frames carry whole numbers. A software trigger names the number the frame must carry (the host
  counts); frames of the external trigger input are numbered by the grabber, on from its last frame.
- Folder: the host asks for frame N by creating ``frame_NNNNNN.trigger`` (empty) in the folder; the
  grabber removes it, exposes, and writes ``frame_NNNNNN.raw``: rows × columns uint16 little-endian,
  row-major, no header (exactly rows × columns × 2 bytes), written under another name and renamed,
  so that a frame file is always complete. In external mode the host only waits for the next file.
- TCP: the host sends a line ``T<N>`` + CR (software trigger of frame N) or ``N<ms>`` + CR (the next
  frame an external trigger exposes, waiting up to <ms> milliseconds for it); the grabber answers
  each with a 16-byte header (``b"DXFR"``, then frame number, rows, columns as uint32 little-endian)
  and the pixels as in a frame file, or, when no external trigger came in time, a header of 0 rows
  and 0 columns. The host sends a request only once the previous one is answered.
"""

from __future__ import annotations

import abc
import logging
import os
import re
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from microct.clock import Clock
from microct.devices.detector import Detector, DetectorCapabilities, Frame, TriggerMode
from microct.errors import CommunicationError, ConfigurationError, DeviceTimeoutError, LimitError, ProtocolError
from microct.devices.base import DriverContext
from microct.transport import SerialSettings, SerialTransport, Transport

log = logging.getLogger("microct.drivers.dexela")

# =====================================================================================================
# Register codec (sheet): no I/O
# =====================================================================================================

BAUDRATE = 115200
"""115200 baud, 8N1; commands and replies end with CR (sheet, "Transport")."""

WAKE = b"WC1"
"""Wakes the detector before use (sheet)."""

WRITE_SENSOR, READ_SENSOR = 0, 1
"""The public driver writes with sensor digit 0 and reads with 1 (sheet, "Register access")."""

OK, ERROR, VALUE = b"X", b"E", b"S"
"""Replies: success, error, and a read value ``S`` + 5 characters (sheet)."""

WORD_MAX = 0xFFFF
"""Registers hold 16-bit words (the exposure is split into a low and a high word); 5 decimal digits."""

TRIGGER_REGISTER = 0
TRIGGER_KEEP_MASK = 0x071F
"""Register 0: the bits the trigger mode leaves as they are (sheet: "mask 0x071F keeps the other bits")."""
TRIGGER_CODES: dict[str, int] = {"software": 0x0000, "edge": 0x0060, "duration": 0x00A0}
FULL_WELL_REGISTER = 3
HIGH_FULL_WELL_BIT = 0x4
"""Register 3, bit 0x4: high full-well mode, else low noise (sheet)."""
EXPOSURE_LOW_REGISTER, EXPOSURE_HIGH_REGISTER = 11, 12
EXPOSURE_TICK_S = 10e-6
"""The exposure registers count 10 µs units (sheet)."""
EXPOSURE_TICKS_MAX = 2 ** 32 - 1
EXPOSURE_RANGE_S = (EXPOSURE_TICK_S, EXPOSURE_TICKS_MAX * EXPOSURE_TICK_S)
"""What two 16-bit words of 10 µs can hold: 10 µs to about 11.9 hours."""

REGISTER_NAMES = {TRIGGER_REGISTER: "trigger mode", FULL_WELL_REGISTER: "full-well mode",
                  EXPOSURE_LOW_REGISTER: "exposure, low word", EXPOSURE_HIGH_REGISTER: "exposure, high word"}
"""The registers known publicly; others (binning, readout mode) are not documented (sheet)."""


def register_name(register: int) -> str:
    return f"register {register} ({REGISTER_NAMES.get(register, 'undocumented')})"


def encode_write(register: int, value: int, sensor: int = WRITE_SENSOR) -> bytes:
    """``W`` sensor, register (3 digits), value (5 digits), e.g. ``W000300004`` (terminator not included).

    LimitError if the register or the value does not fit its field.
    """
    _check_field("register", register, 999)
    _check_field("value", value, WORD_MAX)
    return b"W%d%03d%05d" % (sensor, register, value)


def encode_read(register: int, sensor: int = READ_SENSOR) -> bytes:
    """``R`` sensor, register (3 digits), e.g. ``R1003``."""
    _check_field("register", register, 999)
    return b"R%d%03d" % (sensor, register)


def _check_field(what: str, value: int, high: int) -> None:
    if not 0 <= value <= high:
        raise LimitError(f"Dexela {what}={value}: allowed 0-{high}")


def parse_write_reply(line: bytes) -> bool:
    """True for ``X`` (done), False for ``E`` (refused); ProtocolError for anything else."""
    if line in (OK, ERROR):
        return line == OK
    raise ProtocolError(f"reply {line!r} is neither X (done) nor E (error)")


def parse_read_reply(line: bytes) -> int | None:
    """The value of an ``S`` + 5 digits reply, None for ``E``; ProtocolError for anything else."""
    if line == ERROR:
        return None
    match = re.fullmatch(rb"S(\d{5})", line)
    if match is None:
        raise ProtocolError(f"reply {line!r} is neither S + 5 digits (a value) nor E (error)")
    return int(match.group(1))


@dataclass(frozen=True)
class Request:
    """A command as the detector reads it (for the simulator): a wake-up, a write or a read."""

    kind: Literal["wake", "write", "read"]
    sensor: int = 0
    register: int = 0
    value: int = 0


def parse_request(line: bytes) -> Request:
    """Read one command line (no terminator); ProtocolError if it is not one of the sheet's forms."""
    if line == WAKE:
        return Request("wake")
    if match := re.fullmatch(rb"W(\d)(\d{3})(\d{5})", line):
        return Request("write", *map(int, match.groups()))
    if match := re.fullmatch(rb"R(\d)(\d{3})", line):
        return Request("read", *map(int, match.groups()))
    raise ProtocolError(f"not a Dexela command: {line!r}")


def format_reply(value: int | bool) -> bytes:
    """A reply with its CR: ``X`` for True, ``E`` for False, ``S`` + 5 digits for a read value."""
    if isinstance(value, bool):
        return (OK if value else ERROR) + b"\r"
    return b"S%05d\r" % value


def exposure_to_ticks(exposure_s: float) -> int:
    """Exposure (s) → the nearest whole number of 10 µs units; LimitError outside 1 to 2³²−1 units."""
    ticks = round(exposure_s / EXPOSURE_TICK_S)
    if not 1 <= ticks <= EXPOSURE_TICKS_MAX:
        low, high = EXPOSURE_RANGE_S
        raise LimitError(f"Dexela exposure_s={exposure_s:g}: the registers hold {low:g}-{high:g} s")
    return ticks


def split_words(ticks: int) -> tuple[int, int]:
    """An exposure count → (register 11 low word, register 12 high word)."""
    return ticks & WORD_MAX, ticks >> 16


def join_words(low: int, high: int) -> int:
    return (high << 16) | low


def with_trigger_code(register0: int, code: int) -> int:
    """Register 0 with its trigger field set to ``code``, the bits of TRIGGER_KEEP_MASK kept."""
    return (register0 & TRIGGER_KEEP_MASK) | code


def trigger_code(register0: int) -> int:
    """The trigger field of register 0 (compare with TRIGGER_CODES)."""
    return register0 & ~TRIGGER_KEEP_MASK & WORD_MAX


def with_full_well(register3: int, high_range: bool) -> int:
    """Register 3 with the high full-well bit set or cleared."""
    return register3 | HIGH_FULL_WELL_BIT if high_range else register3 & ~HIGH_FULL_WELL_BIT


# =====================================================================================================
# Frame-channel codec (this project's stand-in for the frame grabber; see the module docstring)
# =====================================================================================================

FRAME_MAGIC = b"DXFR"
FRAME_HEADER = struct.Struct("<4sIII")
"""Magic, frame number, rows, columns (16 bytes, little-endian)."""
FRAME_NUMBER_MAX = 2 ** 32 - 1
PIXEL_DTYPE = np.dtype("<u2")
FRAME_SUFFIX, TRIGGER_SUFFIX = ".raw", ".trigger"


def frame_file_name(number: int, suffix: str = FRAME_SUFFIX) -> str:
    """``frame_000012.raw`` (or, with TRIGGER_SUFFIX, the trigger file asking for that frame)."""
    return f"frame_{number:06d}{suffix}"


def frame_file_number(name: str, suffix: str = FRAME_SUFFIX) -> int | None:
    """The frame number in a file name made by ``frame_file_name(..., suffix)``, None for any other name."""
    match = re.fullmatch(r"frame_(\d+)" + re.escape(suffix), name)
    return int(match.group(1)) if match else None


def encode_frame_request(number: int | None, wait_s: float = 0.0) -> bytes:
    """``T<N>`` (software trigger of frame ``number``) or, for None, ``N<ms>`` (the next externally
    triggered frame, waiting up to ``wait_s``); no CR."""
    return b"N%d" % round(wait_s * 1000) if number is None else b"T%d" % number


def parse_frame_request(line: bytes) -> tuple[int | None, float]:
    """(frame number, 0) of a ``T<N>`` line, (None, wait in s) of ``N<ms>``; ProtocolError otherwise."""
    match = re.fullmatch(rb"([TN])(\d{1,18})", line)  # more digits: garbage (and int() refuses thousands)
    if match is None:
        raise ProtocolError(f"not a frame request: {line!r}")
    value = int(match.group(2))
    if match.group(1) == b"T" and value > FRAME_NUMBER_MAX:
        raise ProtocolError(f"frame request {line!r}: frame numbers are 0-{FRAME_NUMBER_MAX} (uint32 in the header)")
    return (value, 0.0) if match.group(1) == b"T" else (None, value / 1000)


NO_FRAME = FRAME_HEADER.pack(FRAME_MAGIC, 0, 0, 0)
"""The answer to ``N<ms>`` when no external trigger came within the wait."""


def encode_frame(number: int, pixels: np.ndarray) -> bytes:
    """Header and pixels of one frame on the TCP stream."""
    rows, columns = pixels.shape
    return FRAME_HEADER.pack(FRAME_MAGIC, number, rows, columns) + pixels.astype(PIXEL_DTYPE, copy=False).tobytes()


def parse_frame_header(header: bytes) -> tuple[int, int, int]:
    """(frame number, rows, columns); ProtocolError if the magic is wrong or the header is not 16 bytes."""
    if len(header) != FRAME_HEADER.size:
        raise ProtocolError(f"frame header {header!r} is not {FRAME_HEADER.size} bytes")
    magic, number, rows, columns = FRAME_HEADER.unpack(header)
    if magic != FRAME_MAGIC:
        raise ProtocolError(f"frame header {header!r} does not start with {FRAME_MAGIC!r}")
    return number, rows, columns


def decode_pixels(data: bytes, shape: tuple[int, int], where: str) -> np.ndarray:
    """Frame bytes → a uint16 array of ``shape``; ProtocolError naming ``where`` if the size differs."""
    expected = shape[0] * shape[1] * PIXEL_DTYPE.itemsize
    if len(data) != expected:
        raise ProtocolError(f"{where} has {len(data)} bytes, expected {expected} "
                            f"({shape[0]} × {shape[1]} uint16)")
    return np.frombuffer(data, PIXEL_DTYPE).reshape(shape).astype(np.uint16)


# =====================================================================================================
# Frame-channel clients
# =====================================================================================================


def next_free_frame_number(folder: Path) -> int:
    """The number after the highest frame file in ``folder`` (0 if none): frames already there are old."""
    numbers = (frame_file_number(entry.name) for entry in os.scandir(folder))
    return max((n for n in numbers if n is not None), default=-1) + 1


class FrameChannel(abc.ABC):
    """Where frames come from. Errors name the channel: CommunicationError (gone), DeviceTimeoutError
    (a frame did not come in time), ProtocolError (a frame of the wrong size or number)."""

    description: str

    @abc.abstractmethod
    def open(self) -> int:
        """Open the channel; returns the first frame number to use."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the channel; safe to call twice."""

    @abc.abstractmethod
    def request(self, number: int | None, wait_s: float = 0.0) -> None:
        """Software trigger of frame ``number``, or (None) ask for the next externally triggered frame,
        to come within ``wait_s``."""

    @abc.abstractmethod
    def receive(self, number: int, shape: tuple[int, int], timeout_s: float) -> tuple[int, np.ndarray]:
        """(frame number, uint16 pixels of ``shape``) of frame ``number``, or of the grabber's next one
        (external trigger; at least ``number``), within ``timeout_s``."""

    def _timeout(self, number: int, timeout_s: float, detail: str = "") -> DeviceTimeoutError:
        return DeviceTimeoutError(f"frame {number} did not come on the {self.description} within "
                                  f"{timeout_s:g} s{detail}")


class FolderChannel(FrameChannel):
    """Frame files in a folder (see the module docstring), polled every ``poll_interval_s``."""

    def __init__(self, folder: str | Path, keep_files: bool = False, poll_interval_s: float = 0.002) -> None:
        self.folder = Path(folder)
        self.keep_files = keep_files
        self.poll_interval_s = poll_interval_s
        self.description = f"frame folder {self.folder}"

    def open(self) -> int:
        """The first number after any frame file already there (older frames are never read)."""
        if not self.folder.is_dir():
            raise CommunicationError(f"{self.description} does not exist (the frame grabber writes there)")
        return next_free_frame_number(self.folder)

    def close(self) -> None:
        pass  # nothing held open

    def request(self, number: int | None, wait_s: float = 0.0) -> None:
        if number is not None:
            try:
                (self.folder / frame_file_name(number, TRIGGER_SUFFIX)).touch()
            except OSError as error:
                raise CommunicationError(f"{self.description}: cannot write the trigger for frame {number}: "
                                         f"{error}") from None

    def receive(self, number: int, shape: tuple[int, int], timeout_s: float) -> tuple[int, np.ndarray]:
        """Frame ``number``: the grabber numbers on from its last frame, in either trigger mode."""
        path = self.folder / frame_file_name(number)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                data = path.read_bytes()
                break
            except FileNotFoundError:
                if time.monotonic() >= deadline:
                    (self.folder / frame_file_name(number, TRIGGER_SUFFIX)).unlink(missing_ok=True)  # no late frame
                    raise self._timeout(number, timeout_s, f" (no file {path.name})") from None
                time.sleep(self.poll_interval_s)
            except OSError as error:
                raise CommunicationError(f"{self.description}: reading {path.name} failed: {error}") from None
        pixels = decode_pixels(data, shape, f"{self.description}: {path.name}")
        if not self.keep_files:
            try:
                path.unlink()
            except OSError as error:
                log.warning("%s: could not delete %s: %s", self.description, path.name, error)
        return number, pixels


class StreamChannel(FrameChannel):
    """Frames over TCP from ``host:port`` (see the module docstring). A connection that fails
    (CommunicationError) or falls out of step (ProtocolError: a header that is not one) is closed, and
    the next request connects anew, as the serial and VISA transports re-open a lost link: a retry
    recovers once the grabber is reachable."""

    CHUNK = 1 << 20

    def __init__(self, address: str, connect_timeout_s: float = 2.0) -> None:
        host, _, port = address.rpartition(":")
        self.address = (host, int(port))
        self.connect_timeout_s = connect_timeout_s
        self.description = f"frame stream {address}"
        self._socket: socket.socket | None = None
        self._lost = False
        self._buffer = bytearray()

    def open(self) -> int:
        try:
            self._socket = socket.create_connection(self.address, timeout=self.connect_timeout_s)
        except OSError as error:
            raise CommunicationError(f"{self.description}: cannot connect: {error}") from None
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer.clear()
        self._lost = False
        return 0

    def close(self) -> None:
        sock, self._socket = self._socket, None
        self._lost = False
        if sock is not None:
            sock.close()

    def request(self, number: int | None, wait_s: float = 0.0) -> None:
        what = "the next frame" if number is None else f"frame {number}"
        if self._lost:
            try:
                self.open()
            except CommunicationError as error:
                raise CommunicationError(f"{error} (re-opening it for {what})") from None
            log.info("%s: re-opened for %s", self.description, what)
        try:
            self._connected().sendall(encode_frame_request(number, wait_s) + b"\r")
        except OSError as error:
            raise self._drop(CommunicationError(f"{self.description}: sending the request for {what} failed: "
                                                f"{error}")) from None

    def receive(self, number: int, shape: tuple[int, int], timeout_s: float) -> tuple[int, np.ndarray]:
        """The next frame numbered ``number`` or above (a late one below, after a time-out, is skipped)."""
        try:
            return self._receive(number, shape, timeout_s)
        except (CommunicationError, ProtocolError) as error:
            raise self._drop(error) from None

    def _drop(self, error: CommunicationError | ProtocolError) -> CommunicationError | ProtocolError:
        """Close the open connection (the next request opens a new one); returns ``error`` to raise."""
        if self._socket is not None:
            self.close()
            self._lost = True
        return error

    def _receive(self, number: int, shape: tuple[int, int], timeout_s: float) -> tuple[int, np.ndarray]:
        deadline = time.monotonic() + timeout_s
        header_size = FRAME_HEADER.size
        while True:
            self._fill(header_size, number, timeout_s, deadline)
            header = bytes(self._buffer[:header_size])
            if header == NO_FRAME:
                del self._buffer[:header_size]
                raise self._timeout(number, timeout_s, " (the grabber saw no trigger)")
            try:
                got, rows, columns = parse_frame_header(header)
            except ProtocolError as error:
                raise ProtocolError(f"{self.description}: {error}") from None
            if (rows, columns) != shape:  # checked before reading: a garbled header may announce gigabytes
                raise ProtocolError(f"{self.description}: frame {got} is {rows} × {columns}, expected "
                                    f"{shape[0]} × {shape[1]}")
            size = header_size + rows * columns * PIXEL_DTYPE.itemsize
            self._fill(size, number, timeout_s, deadline)  # a frame cut short by a time-out stays for the next call
            data = bytes(self._buffer[header_size:size])
            del self._buffer[:size]
            if got < number:
                log.warning("%s: skipped late frame %d", self.description, got)
                continue
            return got, decode_pixels(data, shape, f"{self.description}: frame {got}")

    def _connected(self) -> socket.socket:
        if self._socket is None:
            raise CommunicationError(f"{self.description} is not open")
        return self._socket

    def _fill(self, size: int, number: int, timeout_s: float, deadline: float) -> None:
        """Receive until the buffer holds ``size`` bytes, by ``deadline``."""
        sock = self._connected()
        while len(self._buffer) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._timeout(number, timeout_s)
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(max(self.CHUNK, size - len(self._buffer)))
            except TimeoutError:
                raise self._timeout(number, timeout_s) from None
            except OSError as error:
                raise CommunicationError(f"{self.description}: receiving frame {number} failed: {error}") from None
            if not chunk:
                raise CommunicationError(f"{self.description}: the grabber closed the connection while frame "
                                         f"{number} was awaited")
            self._buffer += chunk


# =====================================================================================================
# Driver
# =====================================================================================================


class DexelaOptions(BaseModel):
    """``[detector.options]`` of the ``dexela`` driver. ``serial`` fields left out: 115200 baud, CR both ways."""

    model_config = ConfigDict(extra="forbid")
    rows: int = Field(default=1024, ge=1, le=16384, description="frame rows (default: one 1024 × 1024 sensor "
                                                                "tile of a Dexela 2923, sheet)")
    columns: int = Field(default=1024, ge=1, le=16384)
    pixel_pitch_um: float = Field(default=74.8, gt=0)
    exposure_range_s: tuple[float, float] = Field(default=(0.001, 60.0), description="allowed exposures (s); "
                                                  "intersected with the registers' 10 µs to 2³²−1 × 10 µs")
    full_well: Literal["low-noise", "high-range"] = "low-noise"
    external_trigger: Literal["edge", "duration"] = Field(default="edge", description="register 0 code for "
                                                          "TriggerMode.EXTERNAL")
    verify_writes: bool = Field(default=False, description="read each written register back (real units "
                                                           "have been seen to read zeros: off by default)")
    serial: SerialSettings = Field(default_factory=lambda: SerialSettings(baudrate=BAUDRATE))
    frame_channel: Literal["folder", "tcp"] = "folder"
    frame_folder: str | None = Field(default=None, description="folder the frame grabber writes into")
    frame_address: str | None = Field(default=None, description="host:port of the frame stream")
    keep_files: bool = Field(default=False, description="keep frame files after reading them")
    readout_margin_s: float = Field(default=2.0, gt=0, description="time allowed beyond the exposure for a frame "
                                                                   "to be read out and arrive (s)")
    external_timeout_s: float = Field(default=60.0, gt=0, description="wait per frame in external-trigger "
                                                                      "mode (s)")
    poll_interval_s: float = Field(default=0.002, gt=0, description="frame-folder polling period (s)")

    @field_validator("serial", mode="before")
    @classmethod
    def _dexela_baud_by_default(cls, value: Any) -> Any:
        return {"baudrate": BAUDRATE, **value} if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _consistent(self):
        self.exposure_range()
        if self.frame_channel == "folder" and not self.frame_folder:
            raise ValueError("frame_channel='folder' needs frame_folder (the folder the frame grabber writes into)")
        if self.frame_channel == "tcp":
            host, _, port = (self.frame_address or "").rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"frame_address={self.frame_address!r}: frame_channel='tcp' needs 'host:port'")
        return self

    def exposure_range(self) -> tuple[float, float]:
        """The configured range within what the registers hold; ValueError if they do not overlap."""
        low, high = max(self.exposure_range_s[0], EXPOSURE_RANGE_S[0]), min(self.exposure_range_s[1],
                                                                             EXPOSURE_RANGE_S[1])
        if not 0 < low <= high:
            raise ValueError(f"exposure_range_s={self.exposure_range_s}: must lie within {EXPOSURE_RANGE_S[0]:g}-"
                             f"{EXPOSURE_RANGE_S[1]:g} s (the exposure registers), low <= high")
        return low, high

    def frame_channel_client(self) -> FrameChannel:
        if self.frame_channel == "tcp":
            return StreamChannel(self.frame_address)
        return FolderChannel(self.frame_folder, self.keep_files, self.poll_interval_s)


class DexelaDetector(Detector):
    """A Dexela CMOS flat panel: settings in registers over a serial line (a port or a ``socket://`` URL),
    frames from the frame channel.

    The driver keeps its own record of every register it wrote and writes a register only when its
    value changes (the sheet: read-back is unreliable on real units). Register 0 and 3 are
    read-modified-written from that record, which starts at 0 on each connect. Exposures are whole
    10 µs units: ``exposure_s`` holds the value asked for, ``describe()["exposure_ticks"]`` what was
    written. Binning: 1 only (the binning register is not documented publicly). Trigger modes:
    SOFTWARE (a trigger per frame through the frame channel) and EXTERNAL (edge or duration, option
    ``external_trigger``; frames come when the trigger input fires). Frames: uint16, 16 bits.
    """

    backend = "serial"
    Options = DexelaOptions

    def __init__(self, name: str, options: DexelaOptions, connection: str = "",
                 transport: Transport | None = None, frames: FrameChannel | None = None,
                 clock: Clock | None = None) -> None:
        self.options = opts = options
        super().__init__(name, DetectorCapabilities(
            shape=(opts.rows, opts.columns), pixel_pitch_um=opts.pixel_pitch_um, bit_depth=16,
            exposure_range_s=opts.exposure_range(), binnings=(1,),
            trigger_modes=(TriggerMode.SOFTWARE, TriggerMode.EXTERNAL)), clock)
        if transport is None and not connection:
            raise ConfigurationError(f"detector {name!r}: a Dexela needs a connection (serial port or URL)")
        self._transport = transport or SerialTransport(connection, opts.serial, connection)
        self._frames = frames or opts.frame_channel_client()
        self._registers: dict[int, int] = {}
        self._next_frame = 0

    @classmethod
    def from_config(cls, name: str, options: DexelaOptions, connection: str | None,
                    context: DriverContext) -> DexelaDetector:
        return cls(name, options, connection or "", clock=context.clock)

    # -- protocol --------------------------------------------------------------------------------------
    def _query(self, message: bytes, what: str) -> bytes:
        """One command, one reply line; link errors name the command and ``what`` it was for."""
        try:
            return self._transport.query(message)[0]
        except (CommunicationError, DeviceTimeoutError) as error:
            raise self._error(type(error), f"Dexela {message.decode()!r} ({what}) failed: {error}") from None

    def _write(self, register: int, value: int) -> None:
        """Write ``register`` unless the record shows it already holds ``value``; ProtocolError on ``E``."""
        if self._registers.get(register) == value:
            return
        message = encode_write(register, value)
        what = f"{register_name(register)} = {value}"
        try:
            done = parse_write_reply(self._query(message, what))
        except ProtocolError as error:
            raise self._error(ProtocolError, f"Dexela {message.decode()!r} ({what}): {error}") from None
        if not done:
            raise self._error(ProtocolError, f"Dexela refused {message.decode()!r}: {what} (reply E)")
        self._registers[register] = value
        if self.options.verify_writes:
            self._verify(register, value)

    def _verify(self, register: int, value: int) -> None:
        message = encode_read(register)
        try:
            read = parse_read_reply(self._query(message, f"read-back of {register_name(register)}"))
        except ProtocolError as error:
            raise self._error(ProtocolError, f"Dexela {message.decode()!r}: {error}") from None
        if read != value:
            raise self._error(ProtocolError, f"Dexela {register_name(register)} reads back "
                                             f"{'E' if read is None else read} after writing {value} "
                                             f"(read-back is unreliable on some units: verify_writes = false)")

    # -- hooks -----------------------------------------------------------------------------------------
    def _do_connect(self) -> None:
        self._registers.clear()  # the detector may have been power-cycled: write everything again
        self._transport.open()
        try:
            self._next_frame = self._frames.open()
        except BaseException:
            self._transport.close()
            raise

    def _after_connect(self) -> None:
        """Wake the detector, set the full-well mode, then the held settings."""
        reply = self._query(WAKE, "wake-up")
        if reply != OK:
            raise self._error(ProtocolError, f"Dexela {WAKE.decode()!r} (wake-up) answered {reply!r}, not X")
        self._write(FULL_WELL_REGISTER, with_full_well(self._registers.get(FULL_WELL_REGISTER, 0),
                                                       self.options.full_well == "high-range"))
        super()._after_connect()

    def _do_close(self) -> None:
        try:
            self._frames.close()
        finally:
            self._transport.close()

    def _do_set_exposure_s(self, exposure_s: float) -> None:
        low, high = split_words(exposure_to_ticks(exposure_s))
        self._write(EXPOSURE_LOW_REGISTER, low)
        self._write(EXPOSURE_HIGH_REGISTER, high)

    def _do_set_binning(self, binning: int) -> None:
        pass  # 1 only: nothing to write (the binning register is not documented publicly, sheet)

    def _do_set_trigger_mode(self, mode: TriggerMode) -> None:
        code = TRIGGER_CODES["software" if mode is TriggerMode.SOFTWARE else self.options.external_trigger]
        self._write(TRIGGER_REGISTER, with_trigger_code(self._registers.get(TRIGGER_REGISTER, 0), code))

    def _do_acquire(self, n: int) -> list[Frame]:
        """Per frame: trigger it (SOFTWARE) or await it (EXTERNAL) on the frame channel, then read it.

        A frame not there within ``readout_margin_s`` after its exposure (EXTERNAL: after
        ``external_timeout_s``) is a DeviceTimeoutError naming the frame and the channel.
        """
        software = self.trigger_mode is TriggerMode.SOFTWARE
        wait_s = self.exposure_ticks * EXPOSURE_TICK_S if software else self.options.external_timeout_s
        timeout_s = wait_s + self.options.readout_margin_s
        taken = []
        for _ in range(n):
            wanted = self._next_frame
            try:
                self._frames.request(wanted if software else None, wait_s)
                number, pixels = self._frames.receive(wanted, self.shape, timeout_s)
            except (CommunicationError, DeviceTimeoutError, ProtocolError) as error:
                if software:
                    self._next_frame = wanted + 1  # a triggered number is not reused, even if its frame is lost
                raise self._error(type(error), str(error)) from None
            if software and number != wanted:
                raise self._error(ProtocolError, f"{self._frames.description}: got frame {number} for the "
                                                 f"trigger of frame {wanted}")
            self._next_frame = number + 1
            taken.append(Frame(pixels, number, self.clock.time()))
        return taken

    @property
    def exposure_ticks(self) -> int:
        """The exposure as written: whole 10 µs units."""
        return exposure_to_ticks(self.exposure_s)

    def _do_describe(self) -> dict[str, Any]:
        return {**super()._do_describe(), "full_well": self.options.full_well,
                "exposure_ticks": self.exposure_ticks, "frame_channel": self._frames.description}
