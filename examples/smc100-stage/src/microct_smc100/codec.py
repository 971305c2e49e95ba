"""The SMC100 ASCII protocol, pure: no I/O, used by the driver and by the wire simulator alike.

Both sides: commands are encoded (driver) and parsed (simulator); replies are parsed (driver) and
formatted (simulator). Every fact is from Newport's "SMC100CC & SMC100PP Single-Axis Motion
Controller/Driver for DC or Stepper Motor" User's Manual (V3.0.x, EDH0206En2054, 06/23), cited by
section title ("manual, Command Syntax"); PROTOCOL.md sums them up. Parsers raise ProtocolError for what
the protocol does not allow.

A message is ``[address]AA[value]`` and CR LF: ``1PA10.5`` moves controller 1 to 10.5 units. Setters
(PA, PR, VA, OR, ST, RS) get no reply; a query gets the command echoed with its value (``1TP`` →
``1TP10.5``, ``1VA?`` → ``1VA20``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from microct.driverkit import ProtocolError

TERMINATOR = b"\r\n"
"""Commands and replies end with CR LF (manual, Serial Communication Settings: "Terminator CRLF";
Command Syntax: a command runs when CR LF arrives)."""
BAUDRATE = 57600
"""57,600 bit/s, 8 data bits, no parity, 1 stop bit, XON/XOFF flow control, preset in the controller
(manual, Serial Communication Settings)."""

NO_ERROR = "@"
COMMAND_ERRORS: dict[str, str] = {
    # The command error a TE query returns, and what TB explains it as (manual, "TE — Get last command
    # error", list of errors). TE returns the memorised error once, then @ until a command fails again.
    "@": "No error",
    "A": "Unknown message code or floating point controller address",
    "B": "Controller address not correct",
    "C": "Parameter missing or out of range",
    "D": "Command not allowed",
    "E": "Home sequence already started",
    "F": "ESP stage name unknown",
    "G": "Displacement out of limits",
    "H": "Command not allowed in NOT REFERENCED state",
    "I": "Command not allowed in CONFIGURATION state",
    "J": "Command not allowed in DISABLE state",
    "K": "Command not allowed in READY state",
    "L": "Command not allowed in HOMING state",
    "M": "Command not allowed in MOVING state",
    "N": "Current position out of software limit",
    "S": "Communication Time Out",
    "U": "Error during EEPROM access",
    "V": "Error during command execution",
    "W": "Command not allowed for PP version",
    "X": "Command not allowed for CC version",
}

POSITIONER_ERRORS: dict[int, str] = {
    # The positioner error bits of a TS reply, its first four hex digits (manual, "TS — Get positioner
    # error and controller state"; bits 10 to 15 are not used). Checked against the manual's examples:
    # 0013 = short circuit, positive and negative end of run; 004C = homing time-out, RMS and peak current.
    0: "negative end of run",
    1: "positive end of run",
    2: "peak current limit",
    3: "RMS current limit",
    4: "short circuit detection",
    5: "following error",
    6: "homing time out",
    7: "wrong ESP stage",
    8: "DC voltage too low",
    9: "80 W output power exceeded",
}
NEGATIVE_END_OF_RUN = 1 << 0
POSITIVE_END_OF_RUN = 1 << 1
END_OF_RUN = NEGATIVE_END_OF_RUN | POSITIVE_END_OF_RUN

STATES: dict[str, str] = {
    # The controller state of a TS reply, its last two characters (manual, TS, "Controller states").
    "0A": "NOT REFERENCED from reset",
    "0B": "NOT REFERENCED from HOMING",
    "0C": "NOT REFERENCED from CONFIGURATION",
    "0D": "NOT REFERENCED from DISABLE",
    "0E": "NOT REFERENCED from READY",
    "0F": "NOT REFERENCED from MOVING",
    "10": "NOT REFERENCED ESP stage error",
    "11": "NOT REFERENCED from JOGGING",
    "14": "CONFIGURATION",
    "1E": "HOMING commanded from RS-232-C",
    "1F": "HOMING commanded by Keypad",
    "28": "MOVING",
    "32": "READY from HOMING",
    "33": "READY from MOVING",
    "34": "READY from DISABLE",
    "35": "READY from JOGGING",
    "3C": "DISABLE from READY",
    "3D": "DISABLE from MOVING",
    "3E": "DISABLE from JOGGING",
    "46": "JOGGING from READY",
    "47": "JOGGING from DISABLE",
}
NOT_REFERENCED = frozenset({"0A", "0B", "0C", "0D", "0E", "0F", "10", "11"})
CONFIGURATION = frozenset({"14"})
HOMING = frozenset({"1E", "1F"})
MOVING = frozenset({"28"})
READY = frozenset({"32", "33", "34", "35"})
DISABLE = frozenset({"3C", "3D", "3E"})
JOGGING = frozenset({"46", "47"})


@dataclass(frozen=True)
class ControllerStatus:
    """A TS reply: the positioner error bits and the controller state (manual, TS). Reading it clears
    the positioner errors in the controller (manual, TS, notes)."""

    errors: int
    state: str

    @property
    def busy(self) -> bool:
        """A home search or a move runs (HOMING, MOVING)."""
        return self.state in HOMING or self.state in MOVING

    @property
    def ready(self) -> bool:
        return self.state in READY

    @property
    def referenced(self) -> bool:
        """False until a home search has ended well: NOT REFERENCED (or CONFIGURATION) refuses moves
        (manual, State Diagram)."""
        return self.state not in NOT_REFERENCED and self.state not in CONFIGURATION

    @property
    def error_names(self) -> list[str]:
        return [name for bit, name in POSITIONER_ERRORS.items() if self.errors & (1 << bit)] + \
            (["undocumented error bits"] if self.errors & ~((1 << len(POSITIONER_ERRORS)) - 1) else [])

    def describe(self) -> str:
        """``state 33 (READY from MOVING)``, with the errors if any: ``errors 0002 (positive end of run), ...``."""
        state = f"state {self.state} ({STATES.get(self.state, 'undocumented state')})"
        if not self.errors:
            return state
        return f"errors {self.errors:04X} ({', '.join(self.error_names)}), {state}"


# -- numbers ---------------------------------------------------------------------------------------------
def format_number(value: float) -> str:
    """A value as the controller reads it: a dot as decimal separator (manual, Command Syntax), fixed
    point with at most 6 decimals (10.5, -0.25, 360); ValueError for a value that is not finite."""
    if not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number")
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def parse_number(text: str, what: str) -> float:
    """A finite number from a reply value; ProtocolError naming ``what`` otherwise."""
    try:
        value = float(text)
    except ValueError:
        raise ProtocolError(f"{text!r} in the reply to {what!r} is not a number") from None
    if not math.isfinite(value):
        raise ProtocolError(f"{text!r} in the reply to {what!r} is not a finite number")
    return value


# -- the driver's side: commands out, replies in -----------------------------------------------------------
def encode_command(address: int, command: str, value: float | str = "") -> bytes:
    """``1PA10.5``: the controller address, the two-letter command and its value (a number, "?" for a
    query, or nothing), without the terminator the transport adds (manual, Command Syntax)."""
    if not 0 <= address <= 31:
        raise ValueError(f"address={address}: 1 to 31 (0 or none: every controller)")
    if not re.fullmatch(r"[A-Z]{2}", command):
        raise ValueError(f"command={command!r}: two upper-case letters")
    text = format_number(value) if isinstance(value, (int, float)) else value
    return f"{address or ''}{command}{text}".encode("ascii")


def parse_reply(line: bytes, address: int, command: str) -> str:
    """The value of a reply to ``command`` sent to ``address``: the reply echoes both, the value follows
    (manual, Command Set: "1VA?" → "1VA10"). ProtocolError for a line that is not that echo."""
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolError(f"garbled reply {line!r} (not ASCII)") from None
    echo = f"{address}{command}"
    if not text.startswith(echo) or not text.isprintable():
        raise ProtocolError(f"unexpected reply {line!r} (expected {echo!r} and a value)")
    return text[len(echo):]


def parse_status(value: str) -> ControllerStatus:
    """The value of a TS reply, ``abcdef``: four hex digits of positioner errors, two characters of
    state (manual, TS: "1TS00000A"). ProtocolError for anything else."""
    if not re.fullmatch(r"[0-9A-Fa-f]{4}[0-9A-Za-z]{2}", value):
        raise ProtocolError(f"{value!r} is not a TS status (four hex digits of errors and a two-character state)")
    return ControllerStatus(int(value[:4], 16), value[4:].upper())


def parse_error_code(value: str) -> str:
    """The value of a TE reply: one character, ``@`` for none (manual, TE: "1TE@")."""
    if len(value) != 1 or not (value == NO_ERROR or "A" <= value <= "Z"):
        raise ProtocolError(f"{value!r} is not a TE error code (@ or a letter)")
    return value


def parse_error_text(value: str, code: str) -> str:
    """The explanation in a TB reply to ``TB<code>``: the code, a space, the text (manual, TB:
    "1TB@ No error")."""
    if not value.startswith(code) or not value[len(code):].strip():
        raise ProtocolError(f"{value!r} is not a TB explanation of error {code!r}")
    return value[len(code):].strip()


# -- the simulator's side: commands in, replies out --------------------------------------------------------
@dataclass(frozen=True)
class Request:
    """A command as the controller reads it: ``address`` None when the line has none."""

    address: int | None
    command: str
    value: str

    @property
    def query(self) -> bool:
        return self.value == "?"


def parse_request(line: bytes) -> Request:
    """A command line without its terminator. Blanks are ignored anywhere and letters may be lower case
    (manual, Command Syntax). ProtocolError for a line that is not a command."""
    try:
        text = line.decode("ascii").replace(" ", "")
    except UnicodeDecodeError:
        raise ProtocolError(f"{line!r} is not ASCII") from None
    match = re.fullmatch(r"(\d*)([A-Za-z]{2})(.*)", text)
    if match is None:
        raise ProtocolError(f"{line!r} is not a command (address, two letters, value)")
    address, command, value = match.groups()
    return Request(int(address) if address else None, command.upper(), value)


def format_reply(address: int, command: str, value: str) -> bytes:
    """The reply to a query: the address and command echoed, then the value, then CR LF."""
    return f"{address}{command}{value}".encode("ascii") + TERMINATOR


def format_status(status: ControllerStatus) -> str:
    """The value of a TS reply: ``000033``."""
    return f"{status.errors:04X}{status.state}"
