"""The Spellman XRV / uX protocol, both ends of the link; pure, no I/O.

A frame is STX, the body "cc,arg,...," and, on serial links, the checksum; the transport adds and strips
the ETX terminator. Driver side: ``Codec.encode`` (a ``Request`` to a frame) and ``Codec.parse_*`` (replies
to values); simulator side: ``Codec.decode`` and ``Codec.read_request`` (a request frame read and checked
as the generator does) and ``Codec.format_*`` (replies). Also the per-family command table
``COMMAND_SETS``, the status layouts, and the DAC-count scaling. Errors: ``ErrorReply`` (the generator's
error code and its meaning) for a refusal; ``FrameError`` / ProtocolError naming command and reply for
anything else the protocol does not allow; LimitError for an argument the protocol cannot carry.

Sources cited below: "notes" are the repository's protocol notes, docs/protocols/spellman-xrv.md
(sections "Framing", "Commands"); "PyMeasure" is the public PyMeasure XRV driver and its tests
(pymeasure.instruments.spellmanhv, spellmanXRV.py and test_spellmanXRV.py), read for the reply layouts of
22, 19, 68 and 28 and for checksum examples; "uX scripts" are public lab scripts for uX generators
(MollerSBU/xray_scan_control, setup_xRayGun.sh and importantCommands.md; a uxMAN host class), read for
the uX replies.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from microct.driverkit import ErrorReply, LimitError, ProtocolError, SourceState

STX, ETX = b"\x02", b"\x03"
DAC_MAX = 4095
"""Set-points and read-backs are 12-bit counts, 0-4095 (notes, "Framing")."""

# Error codes in place of "$" (notes, "Replies and errors"); what backs each, per family:
# - 1 "out of range": the uX manual (6.5: "Error codes TBD, 1 = out of range"), and a uxMAN host class
#   ("E#1: out of range"). No XRV document gives any code (the XRV interface manual was not available;
#   PyMeasure's XRV driver only tells "$" from anything else).
# - 2: the uxMAN host class (public host code for a uX, not a manual) reads it as "interlock enabled";
#   the uX manual leaves it "TBD"; on the XRB011, a product outside this table, 2 is "unrecognised
#   command" (its manual 4.15.1). No document for the XRV or the uX is clear, so the meaning below stays
#   the host class's: check it on the unit.
# - 3: this project's choice for the wire simulator's unknown command.
# A real unit's other codes are reported by number.
OUT_OF_RANGE, REFUSED, UNKNOWN_COMMAND = 1, 2, 3
ERROR_CODES: dict[int, str] = {OUT_OF_RANGE: "out of range",
                               REFUSED: "refused in the present state (interlock open or fault latched)",
                               UNKNOWN_COMMAND: "unknown command"}

# "68": 27 fault flags in reply order (notes: "27 flags: arc, over-temperature, kV/mA difference, ...";
# order and names: PyMeasure's ErrorCode, bit n = n-th value).
FAULT_FLAGS: tuple[str, ...] = (
    "filament select fault", "over-temperature approach", "over-voltage", "under-voltage", "over-current",
    "under-current", "anode over-temperature", "cathode over-temperature", "anode inverter fault",
    "cathode inverter fault", "filament feedback fault", "anode arc", "cathode arc", "anode cable connect fault",
    "cathode cable connect fault", "anode AC line monitor fault", "cathode AC line monitor fault",
    "anode DC rail monitor fault", "cathode DC rail monitor fault", "-15 V supply fault", "+15 V supply fault",
    "watchdog fault", "board over-temperature", "overpower fault", "kV difference", "mA difference",
    "inverter not ready")

WATCHDOG_FAULT = "watchdog fault"
"""The ``68`` flag (bit 21, PyMeasure's ``WATCH_DOG_FAULT``) a tripped communication watchdog sets: with no
message within its time the generator shuts high voltage down and declares a watchdog fault (Spellman XRB011
manual 118150-001 Rev. B, 4.15.9, a sibling product; the XRV manual was not available). The XRV's watchdog
time is part of its user configuration (PyMeasure reads it as the last value of ``27``); no documented
command arms or disarms it, and any message feeds it (notes, "Communication watchdog")."""


class FrameError(ProtocolError):
    """Bytes that are not a well-formed frame: no STX, no trailing comma, a wrong or missing checksum."""


@dataclass(frozen=True)
class Request:
    """One command: its number and whole-number arguments; ``str()`` is its text, e.g. ``10,2047``."""

    command: int
    arguments: tuple[int, ...] = ()

    def __str__(self) -> str:
        return ",".join([f"{self.command:02d}", *(str(a) for a in self.arguments)])


@dataclass(frozen=True)
class GeneratorStatus:
    """The status reply (``22``) of either family, in the terms the driver needs.

    ``open_interlocks`` names each open interlock; the uX reports no filament, local mode or ready
    flags (they read as large_filament False, filament_enabled True, local_mode False, ready True).
    """

    hv_on: bool
    open_interlocks: tuple[str, ...] = ()
    fault: bool = False
    large_filament: bool = False
    filament_enabled: bool = True
    local_mode: bool = False
    ready: bool = True

    @property
    def interlock_closed(self) -> bool:
        return not self.open_interlocks


@dataclass(frozen=True)
class Scaling:
    """``28``: the generator's full scale (kV, mA) and polarity (False unipolar, True bipolar)."""

    full_scale_kv: float
    full_scale_ma: float
    bipolar: bool


# -- status layouts per family ---------------------------------------------------------------------------
# XRV "22": 17 values, 0/1, in this order (notes: "bit flags (HV enabled, interlock 1 closed, ...,
# large filament, X-rays imminent, supply ready)"; order: PyMeasure's StatusCode, bit n = n-th value).
XRV_STATUS = ("hv_enabled", "interlock_1_closed", "interlock_2_closed", "ecr_mode", "fault", "local_mode",
              "filament_enabled", "large_filament", "xrays_imminent", "large_filament_confirmed",
              "small_filament_confirmed", "reserved_11", "reserved_12", "reserved_13", "reserved_14",
              "supply_ready", "internal_interlock_closed")
_XRV_INTERLOCKS = {"interlock_1_closed": "interlock 1", "interlock_2_closed": "interlock 2",
                   "internal_interlock_closed": "internal interlock"}
# uX "22": HV on, interlock open, fault (notes; uX scripts: "22,0,1,0," = HV off, interlock open, no fault).
UX_STATUS = ("hv_on", "interlock_open", "fault")


def _xrv_status(flags: Mapping[str, bool]) -> GeneratorStatus:
    # X-rays imminent is the pre-warning after HV on: counted as beam on.
    return GeneratorStatus(
        hv_on=flags["hv_enabled"] or flags["xrays_imminent"],
        open_interlocks=tuple(name for key, name in _XRV_INTERLOCKS.items() if not flags[key]),
        fault=flags["fault"], large_filament=flags["large_filament"], filament_enabled=flags["filament_enabled"],
        local_mode=flags["local_mode"], ready=flags["supply_ready"])


def _xrv_flags(status: GeneratorStatus) -> dict[str, bool]:
    flags = dict.fromkeys(XRV_STATUS, False)
    flags.update({key: name not in status.open_interlocks for key, name in _XRV_INTERLOCKS.items()})
    flags.update(hv_enabled=status.hv_on, fault=status.fault, local_mode=status.local_mode,
                 filament_enabled=status.filament_enabled, large_filament=status.large_filament,
                 large_filament_confirmed=status.large_filament, small_filament_confirmed=not status.large_filament,
                 supply_ready=status.ready)
    return flags


def _ux_status(flags: Mapping[str, bool]) -> GeneratorStatus:
    return GeneratorStatus(hv_on=flags["hv_on"], open_interlocks=("interlock",) if flags["interlock_open"] else (),
                           fault=flags["fault"])


def _ux_flags(status: GeneratorStatus) -> dict[str, bool]:
    return {"hv_on": status.hv_on, "interlock_open": not status.interlock_closed, "fault": status.fault}


# -- per-family command table ----------------------------------------------------------------------------
@dataclass(frozen=True)
class CommandSet:
    """A family's command numbers and reply layouts (notes, "Commands"). None: the family has no such
    command. The filament limit and preheat (12/13, swapped between the families) and the power limits
    (97) are commissioning settings: the driver never sends them."""

    name: str
    set_kv: int
    set_ma: int
    read_kv: int
    read_ma: int
    monitors: int
    monitor_fields: tuple[str, ...]
    """The monitor reply's values in order; "kV" and "mA" are the output read-backs."""
    status: int
    status_fields: tuple[str, ...]
    decode_status: Callable[[Mapping[str, bool]], GeneratorStatus]
    encode_status: Callable[[GeneratorStatus], dict[str, bool]]
    hv: int
    filament_select: int | None
    filament_enable: int | None
    faults: int | None
    reset: int | None
    scaling: int | None

    @property
    def queries(self) -> frozenset[int]:
        """The commands that only read: set-points (14, 15), monitors, status, faults and full scale (notes,
        "Commands"); every other command sets or switches something (the reset 31 included)."""
        return frozenset(c for c in (self.read_kv, self.read_ma, self.monitors, self.status, self.faults,
                                     self.scaling) if c is not None)

    @property
    def without_argument(self) -> frozenset[int]:
        """The commands that take no argument: the queries and the reset."""
        return frozenset(c for c in (self.read_kv, self.read_ma, self.monitors, self.status, self.faults,
                                     self.scaling, self.reset) if c is not None)

    def argument_max(self, command: int) -> int | None:
        """The largest value of ``command``'s one argument: a count (set kV, set mA) up to ``DAC_MAX``, a
        switch (HV, filament select and enable) 1; None for a command that takes one argument in no way
        (no argument, or not in this family's table)."""
        if command in (self.set_kv, self.set_ma):
            return DAC_MAX
        if command in {self.hv, self.filament_select, self.filament_enable} - {None}:
            return 1
        return None

    def describe(self, command: int) -> str:
        """What ``command`` does in this family, for messages."""
        names = {self.set_kv: "set kV", self.set_ma: "set mA", self.read_kv: "kV set-point",
                 self.read_ma: "mA set-point", self.monitors: "monitors", self.status: "status", self.hv: "HV on/off",
                 self.filament_select: "filament select", self.filament_enable: "filament enable",
                 self.faults: "faults", self.reset: "reset faults", self.scaling: "full scale"}
        return names.get(command, f"not in the {self.name} command table")


COMMAND_SETS: dict[str, CommandSet] = {
    # XRV: notes; 19 layout (8 values) and 28 reply: PyMeasure. "32,1" large filament, "70,1" filament on.
    "XRV": CommandSet(
        name="XRV", set_kv=10, set_ma=11, read_kv=14, read_ma=15, monitors=19,
        monitor_fields=("kV", "mA", "filament", "local kV set-point", "local mA set-point", "filament limit",
                        "filament preheat", "anode mA"),
        status=22, status_fields=XRV_STATUS, decode_status=_xrv_status, encode_status=_xrv_flags,
        hv=98, filament_select=32, filament_enable=70, faults=68, reset=31, scaling=28),
    # uX: notes (no faults, reset or filament select; 99 switches HV); 20 layout (7 values): uX scripts.
    "uX": CommandSet(
        name="uX", set_kv=10, set_ma=11, read_kv=14, read_ma=15, monitors=20,
        monitor_fields=("control board temperature", "low-voltage supply", "kV", "mA", "filament current",
                        "filament voltage", "HV board temperature"),
        status=22, status_fields=UX_STATUS, decode_status=_ux_status, encode_status=_ux_flags,
        hv=99, filament_select=None, filament_enable=None, faults=None, reset=None, scaling=None),
}


# -- framing ---------------------------------------------------------------------------------------------
def checksum(body: bytes) -> bytes:
    """The checksum character of ``body`` (every byte after STX up to and including the last comma):
    (0x100 - sum) AND 0x7F OR 0x40, one character in 0x40-0x7F (notes, "Framing")."""
    return bytes([((0x100 - sum(body)) & 0x7F) | 0x40])


def is_whole_number(token: bytes) -> bool:
    """True for ASCII digits only (the protocol's numbers have no sign, point or spaces), at most 9 of
    them: its numbers have 4 at most (counts 0-4095); thousands are garbage that int() refuses."""
    return token.isdigit() and token.isascii() and len(token) <= 9


@dataclass(frozen=True)
class Codec:
    """Frames and replies of one family, with or without the checksum.

    ``checksum`` on: every frame carries it and a frame without the right one is refused (serial
    links). Off (TCP/IP, where public clients leave it out, notes): frames carry none, but a received
    frame that still ends in one is accepted when that character is the right checksum.
    """

    commands: CommandSet
    checksum: bool

    # -- frames ------------------------------------------------------------------------------------------
    def frame(self, command: int, *fields: bytes) -> bytes:
        """STX, ``cc,field,...,`` and the checksum when on (no ETX: the transport or server adds it)."""
        body = b",".join([b"%02d" % command, *fields]) + b","
        return STX + body + (checksum(body) if self.checksum else b"")

    def encode(self, request: Request) -> bytes:
        """The frame of ``request``; LimitError for a negative argument (the protocol has no sign)."""
        if request.arguments and min(request.arguments) < 0:
            raise LimitError(f"'{request}' ({self.commands.describe(request.command)}): the arguments must be "
                             f"whole numbers >= 0")
        return self.frame(request.command, *(b"%d" % argument for argument in request.arguments))

    def decode(self, frame: bytes) -> tuple[int, list[bytes]]:
        """(command number, fields) of a frame; FrameError naming what is wrong with it."""
        if not frame.startswith(STX):
            raise FrameError("it does not start with STX")
        body = frame[1:]
        if self.checksum:
            if len(body) < 2 or body[-1:] == b",":
                raise FrameError("the checksum is missing")
            body, given = body[:-1], body[-1:]
            if given != checksum(body):
                raise FrameError(f"checksum {given.decode('latin-1')!r}, expected {checksum(body).decode()!r}")
        elif body[-1:] != b"," and body[-1:] == checksum(body[:-1]):
            body = body[:-1]  # a checksum after all (see the class docstring)
        if not body.endswith(b","):
            raise FrameError("it does not end with a comma")
        command, *fields = body[:-1].split(b",")
        if not is_whole_number(command):
            raise FrameError(f"{command.decode('latin-1')!r} is not a command number")
        return int(command), fields

    # -- replies (driver side) ---------------------------------------------------------------------------
    def _garbled(self, request: Request, reply: bytes, why: str) -> ProtocolError:
        return ProtocolError(f"'{request}' ({self.commands.describe(request.command)}): garbled reply {reply!r} "
                             f"({why})")

    def fields(self, request: Request, reply: bytes, count: int | None = None) -> list[bytes]:
        """The reply's values after its command number; ProtocolError unless it answers ``request``
        with ``count`` values."""
        try:
            command, fields = self.decode(reply)
        except FrameError as error:
            raise self._garbled(request, reply, str(error)) from None
        if command != request.command:
            raise self._garbled(request, reply, f"it answers command {command:02d}")
        if count is not None and len(fields) != count:
            raise self._garbled(request, reply, f"expected {count} value(s), got {len(fields)}")
        return fields

    def error_reply(self, request: Request, code: int) -> ErrorReply:
        """The refusal of ``request`` with error ``code``: ``ErrorReply`` with the code, its meaning
        (``ERROR_CODES``), and the command as sent."""
        meaning = ERROR_CODES.get(code, "not in the error table")
        what = self.commands.describe(request.command)
        return ErrorReply(code, meaning, str(request),
                          message=f"'{request}' ({what}) was answered with error code {code} ({meaning})")

    def parse_ack(self, request: Request, reply: bytes) -> None:
        """``$``: done. An error code in its place: ErrorReply naming the command and the code's meaning."""
        fields = self.fields(request, reply)
        if fields == [b"$"]:
            return
        if len(fields) == 1 and is_whole_number(fields[0]):
            raise self.error_reply(request, int(fields[0]))
        raise self._garbled(request, reply, "expected '$' or an error code")

    def _counts(self, request: Request, reply: bytes, token: bytes) -> int:
        if not is_whole_number(token) or int(token) > DAC_MAX:
            raise self._garbled(request, reply, f"{token.decode('latin-1')!r} is not a count 0-{DAC_MAX}")
        return int(token)

    def parse_counts(self, request: Request, reply: bytes) -> int:
        """A set-point read-back (``14``, ``15``): one count 0-4095."""
        return self._counts(request, reply, self.fields(request, reply, 1)[0])

    def parse_monitors(self, reply: bytes) -> tuple[int, int]:
        """The monitor reply (XRV ``19``, uX ``20``) → (kV counts, mA counts) of the output."""
        names = self.commands.monitor_fields
        request = Request(self.commands.monitors)
        values = self.fields(request, reply, len(names))
        return (self._counts(request, reply, values[names.index("kV")]),
                self._counts(request, reply, values[names.index("mA")]))

    def _bits(self, request: Request, reply: bytes, names: tuple[str, ...]) -> dict[str, bool]:
        values = self.fields(request, reply, len(names))
        bad = [v.decode("latin-1") for v in values if v not in (b"0", b"1")]
        if bad:
            raise self._garbled(request, reply, f"{bad[0]!r} is not a flag 0 or 1")
        return {name: value == b"1" for name, value in zip(names, values, strict=True)}

    def parse_status(self, reply: bytes) -> GeneratorStatus:
        """The status reply (``22``) of this family."""
        commands = self.commands
        return commands.decode_status(self._bits(Request(commands.status), reply, commands.status_fields))

    def parse_faults(self, reply: bytes) -> tuple[str, ...]:
        """``68`` (XRV) → the names of the faults set, in reply order."""
        request = Request(self._present(self.commands.faults, "faults"))
        flags = self._bits(request, reply, FAULT_FLAGS)
        return tuple(name for name, on in flags.items() if on)

    def parse_scaling(self, reply: bytes) -> Scaling:
        """``28`` (XRV) → full scale kV, mA and polarity (PyMeasure: ``28,160,30,0,`` is 160 kV, 30 mA, unipolar)."""
        request = Request(self._present(self.commands.scaling, "full scale"))
        kv, ma, polarity = self.fields(request, reply, 3)
        try:
            full_kv, full_ma = float(kv), float(ma)
        except ValueError:
            raise self._garbled(request, reply, "the full scale is not a number") from None
        if not (math.isfinite(full_kv) and math.isfinite(full_ma) and full_kv > 0 and full_ma > 0):
            raise self._garbled(request, reply, "the full scale must be positive")
        if polarity not in (b"0", b"1"):
            raise self._garbled(request, reply, f"polarity {polarity.decode('latin-1')!r} is not 0 or 1")
        return Scaling(full_kv, full_ma, polarity == b"1")

    def _present(self, command: int | None, what: str) -> int:
        if command is None:
            raise ProtocolError(f"the {self.commands.name} family has no {what} command")
        return command

    # -- requests (simulator side) ----------------------------------------------------------------------
    def read_request(self, command: int, fields: list[bytes]) -> Request:
        """The request of a decoded frame (``decode``), checked as the generator checks it: ErrorReply with
        ``UNKNOWN_COMMAND`` for a command not in this family's table (the commissioning commands 12, 13
        and 97 included), ``OUT_OF_RANGE`` for an argument where none belongs or, on a command taking one,
        for anything but one whole number within its range (``CommandSet.argument_max``)."""
        commands = self.commands
        if command in commands.without_argument:
            if fields:
                raise self.error_reply(Request(command), OUT_OF_RANGE)
            return Request(command)
        largest = commands.argument_max(command)
        if largest is None:
            raise self.error_reply(Request(command), UNKNOWN_COMMAND)
        if len(fields) != 1 or not is_whole_number(fields[0]) or int(fields[0]) > largest:
            raise self.error_reply(Request(command), OUT_OF_RANGE)
        return Request(command, (int(fields[0]),))

    def is_query(self, frame: bytes) -> bool:
        """True if the request ``frame`` (no ETX) only reads (``CommandSet.queries``, no argument); False for
        anything else, a frame the generator would not read included."""
        try:
            command, fields = self.decode(frame)
        except FrameError:
            return False
        return command in self.commands.queries and not fields

    def parse_request(self, frame: bytes) -> Request:
        """``read_request`` of ``decode(frame)``: FrameError for bytes that are not a frame (the generator
        ignores them), ErrorReply for a request it refuses."""
        return self.read_request(*self.decode(frame))

    # -- replies (simulator side) ------------------------------------------------------------------------
    def format_ack(self, command: int) -> bytes:
        """``cc,$,``: done."""
        return self.frame(command, b"$")

    def format_error(self, command: int, code: int) -> bytes:
        """``cc,<code>,``: refused with an error code."""
        return self.frame(command, b"%d" % code)

    def format_counts(self, command: int, counts: int) -> bytes:
        """``cc,<counts>,``: a set-point read-back."""
        return self.frame(command, b"%d" % counts)

    def format_monitors(self, kv_counts: int, ma_counts: int) -> bytes:
        """The monitor reply with the output kV and mA counts (the other monitors read 0)."""
        values = {"kV": kv_counts, "mA": ma_counts}
        return self.frame(self.commands.monitors,
                          *(b"%d" % values.get(name, 0) for name in self.commands.monitor_fields))

    def format_status(self, status: GeneratorStatus) -> bytes:
        """The status reply (``22``) of this family."""
        commands = self.commands
        flags = commands.encode_status(status)
        return self.frame(commands.status, *(b"1" if flags[name] else b"0" for name in commands.status_fields))

    def format_faults(self, faults: tuple[str, ...]) -> bytes:
        """``68,f0,...,f26,`` with the named faults set."""
        unknown = set(faults) - set(FAULT_FLAGS)
        if unknown:
            raise ValueError(f"not fault flags: {sorted(unknown)}")
        return self.frame(self._present(self.commands.faults, "faults"),
                          *(b"1" if name in faults else b"0" for name in FAULT_FLAGS))

    def format_scaling(self, scaling: Scaling) -> bytes:
        """``28,<kV>,<mA>,<polarity>,``."""
        return self.frame(self._present(self.commands.scaling, "full scale"), b"%g" % scaling.full_scale_kv,
                          b"%g" % scaling.full_scale_ma, b"1" if scaling.bipolar else b"0")


def state_of(status: GeneratorStatus) -> SourceState:
    """The source state a status reply means. These generators run no warm-up programme, so
    WARMUP_NEEDED and WARMING_UP never occur: ready and not emitting is STANDBY."""
    if status.fault:
        return SourceState.FAULT
    if status.open_interlocks:
        return SourceState.NOT_READY
    if status.hv_on:
        return SourceState.BEAM_ON
    if status.local_mode or not status.ready:
        return SourceState.NOT_READY
    return SourceState.STANDBY


def not_ready_reason(status: GeneratorStatus) -> str:
    """Why the status is not STANDBY or BEAM_ON, in words ("" if nothing stops it)."""
    reasons = [f"{name} open" for name in status.open_interlocks]
    if status.local_mode:
        reasons.append("in local mode (switch the generator to remote)")
    if not status.ready:
        reasons.append("supply not ready")
    return "; ".join(reasons)


# -- DAC-count scaling -----------------------------------------------------------------------------------
def setpoint_counts(value: float, full_scale: float, what: str = "value") -> int:
    """The DAC count for a set-point ``value`` (same unit as ``full_scale``), rounded down so that the
    generator never gets more than asked: 4095 counts = full scale (notes). LimitError outside 0-full scale."""
    if not 0 <= value <= full_scale:
        raise LimitError(f"{what}={value:g} is outside the allowed range 0-{full_scale:g}")
    return min(DAC_MAX, math.floor(value / full_scale * DAC_MAX + 1e-9))


def setpoint_value(counts: int, full_scale: float) -> float:
    """The set-point a DAC count stands for (unit of ``full_scale``)."""
    return counts * full_scale / DAC_MAX


def readback_value(counts: int, full_scale: float, over_range: float) -> float:
    """A monitor read-back count in the unit of ``full_scale``: 4095 counts = ``over_range`` × full scale
    (XRV: 1.2, notes and PyMeasure)."""
    return counts * over_range * full_scale / DAC_MAX


def readback_counts(value: float, full_scale: float, over_range: float) -> int:
    """The monitor count nearest ``value`` (the simulator's ADC), clamped to 0-4095."""
    return max(0, min(DAC_MAX, round(value / (over_range * full_scale) * DAC_MAX)))



def checksum_default(resource: str) -> bool:
    """Whether frames carry the checksum on ``resource``: not on a TCPIP SOCKET (public clients leave it
    out over TCP/IP, notes), on everywhere else (ASRL serial and USB links)."""
    parts = resource.upper().split("::")
    return not (parts[0].startswith("TCPIP") and parts[-1] == "SOCKET")


