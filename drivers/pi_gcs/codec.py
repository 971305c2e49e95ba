"""The PI GCS 2 command set, pure: no I/O, used by the driver and by the wire simulator alike.

Both sides: commands are encoded (driver) and parsed (simulator); replies are split and parsed (driver)
and formatted (simulator); controller error codes map to microct's errors.

Facts come from docs/protocols/pi-gcs.md (the repository's protocol fact sheet, cited as "sheet") and from
PI's public Python client PIPython 2.13 (cited as "PIPython": ``gcsmessages.py`` for the end-of-reply rule
and the error check, ``gcserror.py`` for error numbers, ``gcs2commands.py`` for the single-byte commands).
Parsers raise ProtocolError for what the protocol does not allow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from microct.driverkit import (
    DeviceFaultError,
    DeviceStateError,
    FindingLevel,
    LimitError,
    MicroCTError,
    ProtocolError,
)

TERMINATOR = b"\n"
"""Commands and reply lines end with LF (sheet, "Transport")."""

MOVING_MASK = b"\x05"
"""Single byte: the reply is the bit mask of moving axes in hex, bit 0 for the first axis (sheet; PIPython)."""
READY_QUERY = b"\x07"
"""Single byte: the reply is one byte, READY or BUSY (sheet)."""
STOP_ALL = b"\x18"
"""Single byte: stop all axes; sets error 10; no reply (sheet)."""
READY = b"\xb1"
"""The reply byte to 0x07 when the controller is ready (sheet)."""
BUSY = b"\xb0"
"""The reply byte to 0x07 when the controller is busy (sheet)."""

# Controller error codes (sheet, "Error codes"; 8 from PIPython's gcserror.py; 216 from PI's GCS error list).
PARAMETER_SYNTAX = 1
UNKNOWN_COMMAND = 2
NO_REFERENCE_OR_SERVO = 5
POSITION_OUT_OF_LIMITS = 7
VELOCITY_OUT_OF_LIMITS = 8
STOPPED = 10
"""The code HLT, STP and byte 0x18 leave in the error register (sheet; PIPython: "Error code 10 is set")."""
INVALID_AXIS = 15
PARAMETER_OUT_OF_RANGE = 17
ON_LIMIT_SWITCH = 216
"""PI_CNTR_ON_LIMIT_SWITCH in PI's GCS error list (not on the sheet)."""

ERRORS: dict[int, tuple[type[MicroCTError], str]] = {
    # Controller error code → the error it raises and its meaning.
    PARAMETER_SYNTAX: (ProtocolError, "parameter syntax error"),
    UNKNOWN_COMMAND: (ProtocolError, "unknown command"),
    NO_REFERENCE_OR_SERVO: (DeviceStateError, "move without reference or with servo off"),
    POSITION_OUT_OF_LIMITS: (LimitError, "position out of limits"),
    VELOCITY_OUT_OF_LIMITS: (LimitError, "velocity out of limits"),
    STOPPED: (DeviceStateError, "controller was stopped by command (HLT, STP or byte 0x18)"),
    INVALID_AXIS: (ProtocolError, "invalid axis identifier"),
    PARAMETER_OUT_OF_RANGE: (LimitError, "parameter out of range"),
    ON_LIMIT_SWITCH: (DeviceFaultError, "the connected stage has driven into a limit switch"),
}
"""Any other non-zero code is a DeviceFaultError ("controller error N")."""


def error_for(code: int) -> tuple[type[MicroCTError], str]:
    """The error class and meaning of a non-zero controller error code."""
    return ERRORS.get(code, (DeviceFaultError, f"controller error {code}"))


def error_level(code: int) -> FindingLevel:
    """How a commissioning report judges the code ``ERR?`` reads: 0 (none) and 10 (a stop's mark) "ok",
    a fault (a DeviceFaultError code: a limit switch, an unknown code) "error", an earlier refused
    command (syntax, range, state) "warning"."""
    if code in (0, STOPPED):
        return "ok"
    return "error" if issubclass(error_for(code)[0], DeviceFaultError) else "warning"


# -- commands --------------------------------------------------------------------------------------------
def format_number(value: float) -> str:
    """A finite number as GCS takes it: up to 12 significant digits, always with a decimal point or an
    exponent (sheet: ``MOV 1 10.0``; PIPython formats floats with ``.12g``)."""
    text = format(float(value), ".12g")
    return text if "." in text or "e" in text else text + ".0"


def encode_command(name: str, *args: str | float) -> bytes:
    """One command without its terminator, e.g. ``encode_command("MOV", "1", 10.0)`` → ``b"MOV 1 10.0"``.
    Numbers (int or float) are formatted with ``format_number``; strings (axis identifiers) pass as they are."""
    words = [name] + [arg if isinstance(arg, str) else format_number(arg) for arg in args]
    return " ".join(words).encode("ascii")


def encode_batch(commands: list[bytes]) -> bytes:
    """Several commands in one write, separated by LF (the transport adds the final LF)."""
    return TERMINATOR.join(commands)


def is_query(command: bytes) -> bool:
    """True for a command that has a reply and sets nothing: its name ends in '?' (``POS?``, ``ERR?``,
    ``*IDN?``; sheet, "Commands"), or the single bytes 0x05 and 0x07 (moving mask, ready); False for a
    setter, a motion command and byte 0x18 (stop all)."""
    return command in (MOVING_MASK, READY_QUERY) or command.split(b" ", 1)[0].endswith(b"?")


def _text(line: bytes) -> str:
    try:
        return line.decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolError(f"garbled reply {line!r}: not ASCII") from None


def parse_command(line: bytes) -> tuple[str, list[str]]:
    """A request line (no terminator) → (command name, arguments); ProtocolError if empty or not ASCII."""
    words = _text(line).split()
    if not words:
        raise ProtocolError("empty command")
    return words[0], words[1:]


def parse_pairs(args: list[str]) -> list[tuple[str, float]]:
    """The arguments ``axis value [axis value ...]`` of a setter (``MOV``, ``VEL``, ``SVO`` ...) → (axis,
    value) pairs; ProtocolError (the controller's error 1, parameter syntax) for an empty or odd list or a
    value that is not a number. Whether the axes exist is the caller's to check."""
    if not args or len(args) % 2:
        raise ProtocolError(f"expected axis value pairs, got {' '.join(args)!r}")
    try:
        values = [float(value) for value in args[1::2]]
    except ValueError:
        raise ProtocolError(f"expected numbers in axis value pairs, got {' '.join(args)!r}") from None
    return list(zip(args[0::2], values, strict=True))


# -- replies ---------------------------------------------------------------------------------------------
def is_last_line(line: bytes) -> bool:
    """True if ``line`` (its LF already stripped) ends a reply: a reply is complete when a line ends in
    LF without a space before it; continuation lines end in " LF" (sheet; PIPython ``eol``)."""
    return not line.endswith(b" ")


def reply_end_counter(replies: int) -> Callable[[bytes], bool]:
    """A predicate for ``Transport.query_until``, fed every line in order: true at the line that
    completes the ``replies``-th reply."""
    ended = 0

    def last(line: bytes) -> bool:
        nonlocal ended
        ended += is_last_line(line)
        return ended >= replies

    return last


def split_replies(lines: list[bytes]) -> list[list[bytes]]:
    """Group reply lines (LF stripped) into replies by the end-of-reply rule; ProtocolError if the last
    reply is incomplete."""
    replies: list[list[bytes]] = []
    current: list[bytes] = []
    for line in lines:
        current.append(line)
        if is_last_line(line):
            replies.append(current)
            current = []
    if current:
        raise ProtocolError(f"incomplete reply {b''.join(current)!r}: its last line ends in a space")
    return replies


def parse_axis_values(reply: list[bytes]) -> dict[str, str]:
    """``[b"1=10.0 ", b"2=3.5"]`` → ``{"1": "10.0", "2": "3.5"}`` (sheet: replies are ``axis=value``);
    ProtocolError for a line that is not ``axis=value``."""
    values: dict[str, str] = {}
    for line in reply:
        axis, sep, value = _text(line).strip().partition("=")
        if not sep or not axis.strip() or not value.strip():
            raise ProtocolError(f"garbled reply {line!r}: expected axis=value")
        values[axis.strip()] = value.strip()
    return values


def parse_error_code(reply: list[bytes]) -> int:
    """The integer of an ``ERR?`` reply; ProtocolError if it is not one line holding an integer."""
    text = " ".join(_text(line).strip() for line in reply)
    try:
        return int(text)
    except ValueError:
        raise ProtocolError(f"garbled reply {b' '.join(reply)!r}: expected an error code (integer)") from None


def format_values(values: Mapping[str, str]) -> bytes:
    """A reply as the controller sends it: ``axis=value`` lines, every one but the last ending in " LF"."""
    return b" \n".join(f"{axis}={value}".encode("ascii") for axis, value in values.items()) + TERMINATOR


def format_line(text: str) -> bytes:
    """A one-line reply (``ERR?``, ``*IDN?``, the moving mask) with its LF."""
    return text.encode("ascii") + TERMINATOR


def format_moving_mask(moving: list[bool]) -> bytes:
    """The reply to byte 0x05: bit i set if the i-th axis moves, in hex (PIPython reads it base 16)."""
    return format_line(f"{sum(1 << i for i, flag in enumerate(moving) if flag):X}")


def format_ready(busy: bool) -> bytes:
    """The reply to byte 0x07: 0xB0 while busy (a reference move runs), 0xB1 when ready (sheet), with LF."""
    return (BUSY if busy else READY) + TERMINATOR
