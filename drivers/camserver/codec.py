"""The DECTRIS camserver protocol, both ends of the socket; pure, no I/O.

Driver side: commands (``encode_command``) and replies parsed (``parse_reply``, ``reply_code``);
simulator side: command words resolved as camserver does (``resolve_command``) and replies formatted
(``format_reply`` and the reply texts). Also the series file names, the TIFF layout of the image files
(``encode_tiff`` for the simulator, ``parse_tiff_header`` for the driver) and the pixel values.
Detector sizes and module gaps are in ``models``. Errors: ProtocolError quoting a reply or header that
is not what the protocol allows; LimitError for a command that cannot be sent (not ASCII).

Facts come from the repository's protocol notes, docs/protocols/dectris-camserver.md ("notes", with the
section in quotes), which follow the PILATUS3 user manual; what the notes do not say and this project
chose or inferred is marked [I].
"""

from __future__ import annotations

import posixpath
import re
import struct
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from microct.driverkit import LimitError, ProtocolError

# -- framing ---------------------------------------------------------------------------------------------
REPLY_TERMINATOR = b"\x18"
"""Every reply ends with CAN, no newline (notes, "Transport and framing")."""
REQUEST_TERMINATOR = b"\n"
"""What clients end a command with; the server takes any control character (same section)."""
CONTROL_CHARACTERS = bytes(range(0x20))
DEFAULT_PORT = 41234
"""camserver's TCP port (same section)."""

# -- commands and the code of their replies (notes, "Replies" and "Commands") -----------------------------
GENERIC = 15
"""The reply code of most set commands, and of the immediate reply to an exposure."""
REPLY_CODES: dict[str, int] = {"CamCmd": 1, "CamSetup": 2, "Df": 5, "ExpEnd": 6, "Exposure": 7, "ImgPath": 10,
                               "K": 13, "ShowPID": 16, "Telemetry": 18, "Version": 24, "THread": 215}
UNRECOGNIZED_CODE = 1
"""An unknown command is answered ``1 ERR *** Unrecognized command: ...`` (notes, "Replies")."""
COMMANDS: tuple[str, ...] = (
    "Exposure", "ExtTrigger", "ExtMTrigger", "ExtEnable", "ExpTime", "ExpPeriod", "NImages", "NExpFrame",
    "Delay", "ImgPath", "HeaderString", "MXsettings", "SetThreshold", "SetEnergy", "LdBadPixMap",
    "LdFlatField", "RateCorrLUTDir", "GapFill", "SetAckInt", "ReadoutTime", "THread", "ResetCam", "K",
    "CamCmd", "CamSetup", "Version", "Exit", "Df", "ExpEnd", "ShowPID", "Telemetry")
"""Every command name of the notes: an abbreviation must be unambiguous among all of them."""

MAX_IMAGES = 65535                 # NImages (notes, "Commands")
MIN_PERIOD_S = 0.002               # ExpPeriod: at least 2 ms ... (notes, "Commands")
MIN_READOUT_S = 0.00095            # ... and at least ExpTime + 0.95 ms
MAX_DELAY_S = 64.0                 # Delay < 64 s
ACCESS_DENIED = "access denied"    # "1 ERR access denied" to a read-only client (notes, "Transport and framing")
KILL = "kill"                      # "13 ERR kill" when K stops a series (notes, "Replies")
VERSION = "Code release: 7.9.0"    # "24 OK Code release: 7.9.0" (notes, "Replies")


QUERIES: tuple[str, ...] = ("Version", "Df", "ShowPID", "Telemetry")
"""Commands that report and set nothing (notes, "Replies": the version, the free disk space, the process
id, the telemetry); every other command sets a variable, starts or stops something."""


def is_query(line: bytes) -> bool:
    """True if the request ``line`` (no terminator) only reports: a word naming one of ``QUERIES`` (as
    camserver resolves it, ``resolve_command``), without an argument."""
    words = line.decode("latin-1").split()
    return len(words) == 1 and resolve_command(words[0]) in QUERIES


def reply_code(name: str) -> int:
    """The code of the reply to command ``name`` (a full name of COMMANDS): 15 unless the table says."""
    return REPLY_CODES.get(name, GENERIC)


def resolve_command(word: str) -> str | None:
    """The command ``word`` names: case-insensitive, a full name or an unambiguous prefix (notes,
    "Transport and framing"); None for an unknown or ambiguous word."""
    lowered = word.lower()
    exact = [name for name in COMMANDS if name.lower() == lowered]
    if exact:
        return exact[0]
    matches = [name for name in COMMANDS if name.lower().startswith(lowered)]
    return matches[0] if len(matches) == 1 and lowered else None


def format_seconds(seconds: float) -> str:
    """A time as the camserver writes and reads it: seconds with 7 decimals (``0.9970000``)."""
    return f"{seconds:.7f}"


def encode_command(name: str, *arguments: object) -> bytes:
    """``name`` and its arguments separated by spaces (the transport adds the newline); LimitError
    naming the command if it is not ASCII (an ImgPath such as ``/données``)."""
    command = " ".join([name, *(str(a) for a in arguments)])
    if not command.isascii():
        raise LimitError(f"{command!r}: camserver takes ASCII only")
    return command.encode("ascii")


# -- replies ---------------------------------------------------------------------------------------------
_REPLY = re.compile(r"(\d{1,9}) (OK|ERR)(?: (.*))?", re.DOTALL)  # codes have 1-3 digits; int() refuses thousands


@dataclass(frozen=True)
class Reply:
    """``<code> OK <text>`` or ``<code> ERR <text>``; ``str()`` gives it back as it came."""

    code: int
    ok: bool
    text: str = ""

    def __str__(self) -> str:
        return f"{self.code} {'OK' if self.ok else 'ERR'} {self.text}"


def parse_reply(raw: bytes) -> Reply:
    """A reply without its terminator; ProtocolError quoting it if it is not ``<code> OK|ERR <text>``.
    The text keeps everything after the separating space (``15 OK  Starting`` keeps one space)."""
    match = _REPLY.fullmatch(raw.decode("latin-1").rstrip("\n"))
    if match is None:
        raise ProtocolError(f"garbled reply {raw!r}: expected '<code> OK <text>' or '<code> ERR <text>'")
    return Reply(int(match[1]), match[2] == "OK", match[3] or "")


def format_reply(reply: Reply) -> bytes:
    """The reply's bytes as the server sends them, with the terminator."""
    return str(reply).encode("latin-1") + REPLY_TERMINATOR


def n_images_text(n: int) -> str:
    return f"N images set to: {n}"


def exposure_time_text(seconds: float) -> str:
    return f"Exposure time set to: {format_seconds(seconds)} sec"


def exposure_period_text(seconds: float) -> str:
    return f"Exposure period set to: {format_seconds(seconds)} sec"


def delay_text(seconds: float) -> str:
    return f"Delay time set to: {format_seconds(seconds)} sec"  # [I] by analogy with the two above


def starting_text(exposure_s: float, when: datetime) -> str:
    """The text of ``15 OK  Starting ...``: it starts with a space, so the reply has two after OK."""
    stamp = when.strftime("%Y-%b-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}"
    return f" Starting {format_seconds(exposure_s)} second background: {stamp}"


def unrecognized_text(word: str) -> str:
    return f"*** Unrecognized command: {word}"


def image_path_text(path: str) -> str:
    """ImgPath's reply names the folder with a trailing slash (notes: ``10 OK /ramdisk/x/``)."""
    return posixpath.normpath(path).rstrip("/") + "/"


# -- series file names (notes, "Images") -----------------------------------------------------------------
DEFAULT_WIDTH, MIN_WIDTH = 5, 3


def series_names(name: str, n: int) -> list[str]:
    """The files an exposure of ``n`` images writes for ``name``: ``scan.tif`` → ``scan_00000.tif``,
    ``scan_00001.tif``, ...; digits after the last underscore set the first number and the width (min 3,
    default 5). One image is written under ``name`` itself [I]."""
    if n == 1:
        return [name]
    stem, dot, extension = name.rpartition(".")
    if not dot or "/" in extension:
        stem, extension = name, ""
    else:
        extension = "." + extension
    base, underscore, digits = stem.rpartition("_")
    if underscore and digits.isdigit() and digits.isascii():
        first, width = int(digits), max(MIN_WIDTH, len(digits))
    else:
        base, first, width = stem, 0, DEFAULT_WIDTH
    return [f"{base}_{first + i:0{width}d}{extension}" for i in range(n)]


# -- TIFF files: a 4096-byte header, then int32 pixels row-major (notes, "Images") -------------------------
TIFF_HEADER_BYTES = 4096
_TAG_TYPES = {3: ("H", 2), 4: ("I", 4), 2: ("s", 1)}  # SHORT, LONG, ASCII
(_WIDTH, _HEIGHT, _BITS, _COMPRESSION, _PHOTOMETRIC, _DESCRIPTION, _STRIP_OFFSETS, _SAMPLES, _ROWS_PER_STRIP,
 _STRIP_BYTES, _SAMPLE_FORMAT) = 256, 257, 258, 259, 262, 270, 273, 277, 278, 279, 339
SIGNED_INTEGER = 2  # SampleFormat


def tiff_size(rows: int, columns: int) -> int:
    """Bytes of a complete image file of this size."""
    return TIFF_HEADER_BYTES + rows * columns * 4


def encode_tiff(counts: np.ndarray, description: str = "") -> bytes:
    """A camserver-layout TIFF of ``counts`` (int32, rows × columns): little-endian header, one IFD and
    the description within the first 4096 bytes, then the pixels. ValueError if the description does
    not fit."""
    rows, columns = counts.shape
    text = description.encode("latin-1") + b"\0"
    entries = [(_WIDTH, 4, 1, columns), (_HEIGHT, 4, 1, rows), (_BITS, 3, 1, 32), (_COMPRESSION, 3, 1, 1),
               (_PHOTOMETRIC, 3, 1, 1), (_DESCRIPTION, 2, len(text), None),
               (_STRIP_OFFSETS, 4, 1, TIFF_HEADER_BYTES), (_SAMPLES, 3, 1, 1), (_ROWS_PER_STRIP, 4, 1, rows),
               (_STRIP_BYTES, 4, 1, rows * columns * 4), (_SAMPLE_FORMAT, 3, 1, SIGNED_INTEGER)]
    ifd_offset = 8
    text_offset = ifd_offset + 2 + 12 * len(entries) + 4
    if text_offset + len(text) > TIFF_HEADER_BYTES:
        raise ValueError(f"TIFF description of {len(text)} bytes does not fit in the {TIFF_HEADER_BYTES}-byte header")
    ifd = bytearray(struct.pack("<2sHI", b"II", 42, ifd_offset) + struct.pack("<H", len(entries)))
    for tag, kind, count, value in entries:
        if value is None:  # the description: in the field if it fits in 4 bytes, else after the IFD
            field = text if len(text) <= 4 else struct.pack("<I", text_offset)
        else:
            field = struct.pack("<" + _TAG_TYPES[kind][0], value)
        ifd += struct.pack("<HHI", tag, kind, count) + field.ljust(4, b"\0")
    ifd += struct.pack("<I", 0) + text
    return bytes(ifd.ljust(TIFF_HEADER_BYTES, b"\0")) + np.ascontiguousarray(counts, dtype="<i4").tobytes()


@dataclass(frozen=True)
class TiffLayout:
    rows: int
    columns: int
    data_offset: int


def parse_tiff_header(head: bytes) -> TiffLayout:
    """Check the first IFD of a camserver image (the first 4096 bytes, or more) and return its layout.

    ProtocolError saying what is wrong: not a TIFF, not one uncompressed strip of 32-bit signed
    pixels, or an IFD outside the bytes given.
    """
    order = {b"II": "<", b"MM": ">"}.get(head[:2])
    if order is None or len(head) < 8 or struct.unpack(order + "H", head[2:4])[0] != 42:
        raise ProtocolError(f"not a TIFF file (starts with {head[:4]!r})")
    (offset,) = struct.unpack(order + "I", head[4:8])
    try:
        (count,) = struct.unpack_from(order + "H", head, offset)
        tags = {}
        for i in range(count):
            tag, kind, n, raw = struct.unpack_from(order + "HHI4s", head, offset + 2 + 12 * i)
            if kind in (3, 4) and n == 1:
                code, size = _TAG_TYPES[kind]
                tags[tag] = struct.unpack(order + code, raw[:size])[0]
    except struct.error:
        raise ProtocolError(f"TIFF header: the directory at byte {offset} lies beyond the {len(head)} bytes read") \
            from None
    wanted = {_BITS: 32, _COMPRESSION: 1, _SAMPLES: 1, _SAMPLE_FORMAT: SIGNED_INTEGER}
    wrong = {tag: tags.get(tag) for tag, value in wanted.items() if tags.get(tag, value) != value}
    missing = [tag for tag in (_WIDTH, _HEIGHT, _STRIP_OFFSETS) if tag not in tags]
    if wrong or missing or tags.get(_ROWS_PER_STRIP, tags.get(_HEIGHT)) < tags.get(_HEIGHT, 0):
        raise ProtocolError(f"TIFF header: not one uncompressed strip of 32-bit signed pixels (tags {tags})")
    return TiffLayout(tags[_HEIGHT], tags[_WIDTH], tags[_STRIP_OFFSETS])


# -- pixels (notes, "Images": 32-bit signed from a 20-bit counter; bad pixels -2, module gaps 0 or -1) ----
GAP_VALUE, BAD_VALUE = -1, -2
MASK_GAP, MASK_DEAD = 1, 2
"""NeXus NXdetector/pixel_mask bits: bit 0 gap, bit 1 dead."""
FRAME_MAX = 65535


def frame_from_counts(counts: np.ndarray) -> np.ndarray:
    """uint16 frame: negative (masked) pixels 0, counts above 65535 clipped to 65535."""
    frame = np.empty(counts.shape, np.uint16)
    np.clip(counts, 0, FRAME_MAX, out=frame, casting="unsafe")  # one pass, no int32 temporary
    return frame


def mask_from_counts(counts: np.ndarray) -> np.ndarray | None:
    """NeXus mask bits of the marked pixels: −1 gap (bit 0), −2 and any other negative value dead
    (bit 1) [I: the notes name only −1 and −2]; None when no pixel is marked."""
    marked = counts < 0
    if not marked.any():
        return None
    return np.where(counts == GAP_VALUE, MASK_GAP, np.where(marked, MASK_DEAD, 0)).astype(np.uint32)
