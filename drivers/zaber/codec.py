"""The Zaber ASCII protocol, pure: no I/O, used by the driver and by the wire simulator alike.

Both sides: commands are encoded (driver) and parsed (simulator); replies are parsed (driver) and
formatted (simulator). Positions and speeds convert between the stage's unit and the device's native
units (microsteps, speed data units) with the figures of a ``StageModel``.

Facts come from docs/protocols/zaber-ascii.md (the repository's protocol fact sheet, cited as "sheet")
and from Zaber's ASCII protocol manual (cited as "manual"). Parsers raise ProtocolError for what the
protocol does not allow (a garbled line, a wrong checksum).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from microct.driverkit import FindingLevel, ProtocolError
from microct.drivers.zaber.models import StageModel

COMMAND_TERMINATOR = b"\n"
"""What the driver ends a command with: the device takes CR and/or LF (sheet, "Framing")."""
COMMAND_TERMINATORS = b"\r\n"
"""Either byte ends a command as the device reads it (sheet, "Framing")."""
REPLY_TERMINATOR = b"\r\n"
"""Every device message ends with CR LF (manual: "Message Footer")."""

WARNINGS: dict[str, str] = {
    # Warning flags, highest precedence first (manual, "Warning Flags"; the sheet lists WR, NI, FS, WL).
    # A reply shows only the highest one active; "--" is none. F: fault, W: warning, N: notice.
    "FD": "driver disabled (overheating)",
    "FQ": "encoder error",
    "FS": "stalled and stopped",
    "FT": "excessive twist",
    "FB": "stream bounds error",
    "FP": "interpolated path deviation",
    "FE": "limit sensor cannot be reached or is faulty",
    "WH": "device not homed (calibration disabled)",
    "WL": "unexpected limit trigger",
    "WP": "invalid calibration type",
    "WV": "supply voltage out of range",
    "WT": "controller temperature high",
    "WM": "displaced when stationary",
    "WR": "no reference position (home needed)",
    "NC": "manual control",
    "NI": "movement command interrupted",
    "ND": "stream discontinuity",
    "NU": "setting update pending",
    "NJ": "joystick calibrating",
}

REJECTIONS: dict[str, str] = {
    # Reasons in the data field of an RJ reply (manual, "Reply Flag").
    "AGAIN": "cannot be processed now, send again",
    "BADAXIS": "no such axis",
    "BADCOMMAND": "unknown or invalid command or setting",
    "BADDATA": "data incorrect or out of range",
    "BADMESSAGEID": "bad message id",
    "DEVICEONLY": "axis number given for a device-only command",
    "FULL": "storage full",
    "LOCKSTEP": "axis is in a lockstep group",
    "NOACCESS": "not available at this access level",
    "PARKED": "device is parked",
    "STATUSBUSY": "device is busy",
}


CLEARED_BY_WARNINGS_CLEAR = frozenset({"FQ", "FS", "FT", "FB", "FP", "FE", "WL"})
"""Flags that persist until ``warnings clear`` (sheet, "Warning flags"; manual, "Warning Flags": each of
them "persists until acknowledged and cleared by the user with the warnings command"). The others end with
their condition (FD, WV, WT), with homing (WR, WH) or with the next movement command (NI, NC, WM)."""


NOT_HOMED = frozenset({"WH", "WR"})
"""Flags that ask for a homing (manual, "Warning Flags"): WR, no reference position (after power-up, until
``home`` or a position is set); WH, a reference but not homed (calibration disabled)."""


def homed_from_flag(warning: str) -> bool | None:
    """What the flag a reply shows says of homing: False for WR or WH; True for none ("--") or a flag of lower
    precedence than both (the reply shows the highest active one: manual, "Warning Flags"); None when a flag
    of higher precedence may hide them (ask ``warnings``, which lists every active flag)."""
    if warning in NOT_HOMED:
        return False
    if warning == "--":
        return True
    order = list(WARNINGS)
    if warning in order and order.index(warning) > max(order.index(flag) for flag in NOT_HOMED):
        return True
    return None


def is_fault(warning: str) -> bool:
    """True for flags that end a move in failure: any fault (F*) and an unexpected limit trigger (WL)."""
    return warning.startswith("F") or warning == "WL"


def highest_warning(flags: set[str]) -> str:
    """The flag a reply shows when ``flags`` are active: the one of highest precedence, or "--"."""
    return next((flag for flag in WARNINGS if flag in flags), "--")


def format_warnings(flags: set[str]) -> str:
    """The data of the reply to ``warnings`` (and ``warnings clear``): the number of active flags, two
    digits, then the flags, highest precedence first: ``02 WL WR``, ``00`` for none (manual, command
    ``warnings``). Unknown flags go last, sorted."""
    ordered = [flag for flag in WARNINGS if flag in flags] + sorted(set(flags) - set(WARNINGS))
    return " ".join([f"{len(ordered):02d}", *ordered])


def parse_warnings(data: str) -> list[str]:
    """The flags in the data of a ``warnings`` reply (``02 WL WR`` → ["WL", "WR"]); ProtocolError if the
    count does not match or a flag is not two capitals."""
    count, *flags = data.split() or [""]
    if not re.fullmatch(r"\d{2}", count) or int(count) != len(flags) \
            or not all(re.fullmatch(r"[A-Z]{2}", flag) for flag in flags):
        raise ProtocolError(f"garbled warnings {data!r}: expected a count and that many two-letter flags")
    return flags


def checksum(body: bytes) -> int:
    """Checksum of a message body (the bytes after the type character '/', '@' or '#').

    Sheet: ((sum & 0xFF) ^ 0xFF) + 1, i.e. the 8-bit two's complement of the byte sum; masked here
    so that a sum ending in 0x00 gives 0x00, not 0x100.
    """
    return -sum(body) & 0xFF


_CHECKSUMMED = re.compile(rb"(.*):([0-9A-Fa-f]{2})", re.DOTALL)


def _split_checksum(line: bytes) -> bytes:
    """``line`` without its ':XX' checksum; ProtocolError if a checksum is present and wrong."""
    match = _CHECKSUMMED.fullmatch(line)
    if match is None:
        return line
    text, given = match.group(1), int(match.group(2), 16)
    if checksum(text[1:]) != given:
        raise ProtocolError(f"checksum mismatch in {line!r}: expected {checksum(text[1:]):02X}")
    return text


# -- commands --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Command:
    """A command as the device reads it: ``/device axis [id] text[:XX]``; device 0 addresses every device."""

    device: int
    axis: int
    text: str
    message_id: int | None = None
    has_checksum: bool = False


def encode_command(device: int, axis: int, text: str, message_id: int | None = None,
                   with_checksum: bool = False) -> bytes:
    """The bytes of a command, without the terminator (sheet: ``/1 1 move abs 1000``; ``/1 1`` polls status)."""
    parts = [f"/{device}", str(axis)] + ([str(message_id)] if message_id is not None else []) \
        + ([text] if text else [])
    message = " ".join(parts).encode("ascii")
    return message + b":%02X" % checksum(message[1:]) if with_checksum else message


def parse_command(line: bytes) -> Command:
    """Read a command line (no terminator); ProtocolError if it is not one or its checksum is wrong.

    Up to three leading numbers are the device, the axis and the message id (all optional).
    """
    text = _split_checksum(line)
    if not text.startswith(b"/"):
        raise ProtocolError(f"not a command: {line!r}")
    tokens = text[1:].decode("ascii", errors="replace").split()
    numbers: list[int | None] = []
    while tokens and len(numbers) < 3 and tokens[0].isdigit():
        if len(tokens[0]) > 9:  # addresses and ids have 1-2 digits; thousands are garbage that int() refuses
            raise ProtocolError(f"not a command: {line!r} (a number of {len(tokens[0])} digits)")
        numbers.append(int(tokens.pop(0)))
    device, axis, message_id = numbers + [None] * (3 - len(numbers))
    return Command(device or 0, axis or 0, " ".join(tokens), message_id, text != line)


# -- replies ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reply:
    """A ``@`` reply: ``@01 1 OK IDLE -- 0`` (sheet). ``data`` is the value, or the reason when rejected."""

    device: int
    axis: int
    flag: Literal["OK", "RJ"]
    status: Literal["BUSY", "IDLE"]
    warning: str
    data: str
    message_id: int | None = None

    @property
    def rejected(self) -> bool:
        return self.flag == "RJ"

    @property
    def busy(self) -> bool:
        return self.status == "BUSY"


@dataclass(frozen=True)
class Info:
    """A ``#`` info line (multi-line data). A message id, if the command had one, stays at the start of
    ``text``: it cannot be told from the text without knowing the command."""

    device: int
    axis: int
    text: str


_REPLY = re.compile(r"@(\d{2}) (\d) (?:(\d{1,2}) )?(OK|RJ) (BUSY|IDLE) ([A-Z-]{2}) (.*)")
_INFO = re.compile(r"#(\d{2}) (\d) ?(.*)")


def parse_reply(line: bytes) -> Reply | Info:
    """Parse one device message (terminator stripped); ProtocolError if garbled or its checksum is wrong."""
    text = _split_checksum(line).decode("ascii", errors="replace")
    if match := _REPLY.fullmatch(text):
        device, axis, message_id, flag, status, warning, data = match.groups()
        return Reply(int(device), int(axis), flag, status, warning, data,  # type: ignore[arg-type]
                     None if message_id is None else int(message_id))
    if match := _INFO.fullmatch(text):
        return Info(int(match.group(1)), int(match.group(2)), match.group(3))
    raise ProtocolError(f"garbled reply {line!r}")


def format_reply(reply: Reply, with_checksum: bool = False) -> bytes:
    """The reply as the device sends it, with its checksum if asked and the CR LF terminator."""
    message_id = "" if reply.message_id is None else f" {reply.message_id:02d}"
    message = (f"@{reply.device:02d} {reply.axis}{message_id} {reply.flag} {reply.status} "
               f"{reply.warning} {reply.data}").encode("ascii")
    if with_checksum:
        message += b":%02X" % checksum(message[1:])
    return message + REPLY_TERMINATOR


# -- native units (sheet, "Units and scaling") -----------------------------------------------------------
def position_to_steps(position: float, stage: StageModel) -> int:
    """Position (unit) → nearest whole microstep."""
    return round(position / stage.microstep_size)


def steps_to_position(steps: int, stage: StageModel) -> float:
    """Microsteps → position (unit)."""
    return steps * stage.microstep_size


def speed_to_data(speed: float, stage: StageModel) -> int:
    """Speed (unit/s) → ``maxspeed`` data units (at least 1)."""
    return max(1, round(speed / stage.microstep_size * stage.speed_factor))


def data_to_speed(data: int, stage: StageModel) -> float:
    """``maxspeed`` data units → speed (unit/s)."""
    return data / stage.speed_factor * stage.microstep_size


# -- read-only commands and the commissioning report -----------------------------------------------------
READ_ONLY_COMMANDS = ("get", "warnings")
"""Commands that change nothing on the device (manual, "Command Reference"): ``get <setting>`` reads a
setting, ``warnings`` lists the active flags (``warnings clear`` clears them: not read-only); an empty
command is the status poll."""


def is_query(line: bytes) -> bool:
    """True if the command ``line`` (no terminator) only reads: the status poll (``/1 1``), ``get ...`` or
    ``warnings``; False for anything else, a garbled line included (``microct check`` sends only these)."""
    try:
        words = parse_command(line).text.split()
    except ProtocolError:
        return False
    return not words or words[0] == "get" or words == ["warnings"]


def flag_level(flag: str) -> FindingLevel:
    """How a commissioning report judges an active warning flag: "error" for a fault (F*) and WL (they
    persist until ``warnings clear``, and the driver fails the next move on them: ``is_fault``),
    "warning" for the other W* flags, "ok" for a notice (N*: manual, "Warning Flags")."""
    if is_fault(flag):
        return "error"
    return "ok" if flag.startswith("N") else "warning"
