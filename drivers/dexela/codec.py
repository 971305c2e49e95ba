"""The Dexela protocols, both ends; pure, no I/O.

The **register protocol** on the serial line (the repository's notes docs/protocols/dexela-serial.md,
"notes" below, with the section in quotes; derived from open-source drivers, a Python driver for the
Dexela 2923 and the MX control system's Aviex PCCD driver, not from a vendor document): commands
(``encode_write``, ``encode_read``) and replies parsed (``parse_write_reply``, ``parse_read_reply``) for
the driver; requests parsed (``parse_request``) and replies formatted (``format_reply``) for the wire
simulator; exposure ticks and register bit fields.

The **frame channel** (this project's definition, not from the notes: frames never travel over the
serial link, notes "Pixels"; they come through a Camera Link frame grabber, which this channel stands
for). Both of its forms carry the software trigger, as a grabber does (the notes document no trigger
command over serial):

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

Errors: ProtocolError quoting a reply, request, header or frame that the protocol does not allow;
LimitError for a value a command cannot carry.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from microct.driverkit import LimitError, ProtocolError

# -- the register protocol (notes) ----------------------------------------------------------------------

BAUDRATE = 115200
"""115200 baud, 8N1; commands and replies end with CR (notes, "Transport")."""

WAKE = b"WC1"
"""Wakes the detector before use (notes, "Transport")."""

WRITE_SENSOR, READ_SENSOR = 0, 1
"""The public driver writes with sensor digit 0 and reads with 1 (notes, "Register access")."""

OK, ERROR, VALUE = b"X", b"E", b"S"
"""Replies: success, error, and a read value ``S`` + 5 characters (notes, "Register access")."""

WORD_MAX = 0xFFFF
"""Registers hold 16-bit words (the exposure is split into a low and a high word); 5 decimal digits."""

TRIGGER_REGISTER = 0
TRIGGER_KEEP_MASK = 0x071F
"""Register 0: the bits the trigger mode leaves as they are (notes, "Registers known": "mask 0x071F keeps
the other bits"); the trigger codes are from the same table."""
TRIGGER_CODES: dict[str, int] = {"software": 0x0000, "edge": 0x0060, "duration": 0x00A0}
FULL_WELL_REGISTER = 3
HIGH_FULL_WELL_BIT = 0x4
"""Register 3, bit 0x4: high full-well mode, else low noise (notes, "Registers known")."""
EXPOSURE_LOW_REGISTER, EXPOSURE_HIGH_REGISTER = 11, 12
EXPOSURE_TICK_S = 10e-6
"""The exposure registers count 10 µs units (notes, "Registers known")."""
EXPOSURE_TICKS_MAX = 2 ** 32 - 1
EXPOSURE_RANGE_S = (EXPOSURE_TICK_S, EXPOSURE_TICKS_MAX * EXPOSURE_TICK_S)
"""What two 16-bit words of 10 µs can hold: 10 µs to about 11.9 hours."""

REGISTER_NAMES = {TRIGGER_REGISTER: "trigger mode", FULL_WELL_REGISTER: "full-well mode",
                  EXPOSURE_LOW_REGISTER: "exposure, low word", EXPOSURE_HIGH_REGISTER: "exposure, high word"}
"""The registers known publicly; others (binning, readout mode) are not documented publicly (notes,
"Registers known")."""


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
    """Read one command line (no terminator); ProtocolError if it is not one of the forms of the notes."""
    if line == WAKE:
        return Request("wake")
    if match := re.fullmatch(rb"W(\d)(\d{3})(\d{5})", line):
        return Request("write", *map(int, match.groups()))
    if match := re.fullmatch(rb"R(\d)(\d{3})", line):
        return Request("read", *map(int, match.groups()))
    raise ProtocolError(f"not a Dexela command: {line!r}")


def is_query(line: bytes) -> bool:
    """True if the command ``line`` (no terminator) only reads: a register read ``R``; False for a write,
    the wake-up ``WC1`` (it changes the detector's state: notes, "Transport") and anything garbled."""
    try:
        return parse_request(line).kind == "read"
    except ProtocolError:
        return False


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


# -- the frame channel (this project's stand-in for the frame grabber; see the module docstring) ----------

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


def next_frame_number(names: Iterable[str]) -> int:
    """The number after the highest frame file among ``names`` (a folder's entries; 0 if none): frames
    already there are old."""
    numbers = (frame_file_number(name) for name in names)
    return max((n for n in numbers if n is not None), default=-1) + 1
