"""Spellman X-ray generators (XRV and uX families) over VISA: TCPIP SOCKET, or ASRL with the checksum.

Two parts: the **codec** (pure: frames out, replies parsed in, replies formatted for the wire
simulator, DAC-count scaling) with the per-family command table ``COMMAND_SETS`` and the model table
``MODELS``, and the **driver** ``SpellmanSource``.

Sources cited below: "sheet" is the project's fact sheet (shared/protocols/spellman-xrv.md);
"PyMeasure" is the public PyMeasure XRV driver and its tests (pymeasure.instruments.spellmanhv,
spellmanXRV.py and test_spellmanXRV.py), read for the reply layouts of 22, 19, 68 and 28 and for
checksum examples; "uX notes" are public lab scripts for uX generators (MollerSBU/xray_scan_control,
setup_xRayGun.sh and importantCommands.md; a uxMAN host class), read for the uX replies.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from microct.clock import Clock
from microct.options import model_from_table, validation_message
from microct.devices.source import SourceCapabilities, SourceState, SpotMode, XRaySource
from microct.errors import ConfigurationError, DeviceStateError, LimitError, ProtocolError
from microct.devices.base import DriverContext
from microct.transport import Transport, VisaSettings, VisaTransport

log = logging.getLogger("microct.drivers.spellman")

T = TypeVar("T")

# =====================================================================================================
# Codec: no I/O. A frame is STX, the body "cc,arg,...," and, on serial links, the checksum; the
# transport adds and strips the ETX terminator.
# =====================================================================================================

STX, ETX = b"\x02", b"\x03"
DAC_MAX = 4095
"""Set-points and read-backs are 12-bit counts, 0-4095 (sheet, "Framing")."""

# Error codes in place of "$" (sheet: "1 = out of range"). Only 1 is documented for the XRV; 2 is how
# a uxMAN host class reads the uX's refusal with the interlock open ("E#2: interlock enabled"); 3 is
# this project's choice for the wire simulator. A real unit's other codes are reported by number.
ERROR_CODES: dict[int, str] = {1: "out of range",
                               2: "refused in the present state (interlock open or fault latched)",
                               3: "unknown command"}

# "68": 27 fault flags in reply order (sheet: "27 flags: arc, over-temperature, kV/mA difference, ...";
# order and names: PyMeasure's ErrorCode, bit n = n-th value).
FAULT_FLAGS: tuple[str, ...] = (
    "filament select fault", "over-temperature approach", "over-voltage", "under-voltage", "over-current",
    "under-current", "anode over-temperature", "cathode over-temperature", "anode inverter fault",
    "cathode inverter fault", "filament feedback fault", "anode arc", "cathode arc", "anode cable connect fault",
    "cathode cable connect fault", "anode AC line monitor fault", "cathode AC line monitor fault",
    "anode DC rail monitor fault", "cathode DC rail monitor fault", "-15 V supply fault", "+15 V supply fault",
    "watchdog fault", "board over-temperature", "overpower fault", "kV difference", "mA difference",
    "inverter not ready")


class FrameError(ProtocolError):
    """Bytes that are not a well-formed frame: no STX, no trailing comma, a wrong or missing checksum."""


class ErrorReply(ProtocolError):
    """The generator answered a command with an error code in place of ``$``."""


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
# XRV "22": 17 values, 0/1, in this order (sheet: "bit flags (HV enabled, interlock 1 closed, ...,
# large filament, X-rays imminent, supply ready)"; order: PyMeasure's StatusCode, bit n = n-th value).
XRV_STATUS = ("hv_enabled", "interlock_1_closed", "interlock_2_closed", "ecr_mode", "fault", "local_mode",
              "filament_enabled", "large_filament", "xrays_imminent", "large_filament_confirmed",
              "small_filament_confirmed", "reserved_11", "reserved_12", "reserved_13", "reserved_14",
              "supply_ready", "internal_interlock_closed")
_XRV_INTERLOCKS = {"interlock_1_closed": "interlock 1", "interlock_2_closed": "interlock 2",
                   "internal_interlock_closed": "internal interlock"}
# uX "22": HV on, interlock open, fault (sheet; uX notes: "22,0,1,0," = HV off, interlock open, no fault).
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
    """A family's command numbers and reply layouts (sheet, "Commands"). None: the family has no such
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

    def describe(self, command: int) -> str:
        """What ``command`` does in this family, for messages."""
        names = {self.set_kv: "set kV", self.set_ma: "set mA", self.read_kv: "kV set-point",
                 self.read_ma: "mA set-point", self.monitors: "monitors", self.status: "status", self.hv: "HV on/off",
                 self.filament_select: "filament select", self.filament_enable: "filament enable",
                 self.faults: "faults", self.reset: "reset faults", self.scaling: "full scale"}
        return names.get(command, f"not in the {self.name} command table")


COMMAND_SETS: dict[str, CommandSet] = {
    # XRV: sheet; 19 layout (8 values) and 28 reply: PyMeasure. "32,1" large filament, "70,1" filament on.
    "XRV": CommandSet(
        name="XRV", set_kv=10, set_ma=11, read_kv=14, read_ma=15, monitors=19,
        monitor_fields=("kV", "mA", "filament", "local kV set-point", "local mA set-point", "filament limit",
                        "filament preheat", "anode mA"),
        status=22, status_fields=XRV_STATUS, decode_status=_xrv_status, encode_status=_xrv_flags,
        hv=98, filament_select=32, filament_enable=70, faults=68, reset=31, scaling=28),
    # uX: sheet (no faults, reset or filament select; 99 switches HV); 20 layout (7 values): uX notes.
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
    (0x100 - sum) AND 0x7F OR 0x40, one character in 0x40-0x7F (sheet, "Framing")."""
    return bytes([((0x100 - sum(body)) & 0x7F) | 0x40])


def is_whole_number(token: bytes) -> bool:
    """True for ASCII digits only (the protocol's numbers have no sign, point or spaces), at most 9 of
    them: its numbers have 4 at most (counts 0-4095); thousands are garbage that int() refuses."""
    return token.isdigit() and token.isascii() and len(token) <= 9


@dataclass(frozen=True)
class Codec:
    """Frames and replies of one family, with or without the checksum.

    ``checksum`` on: every frame carries it and a frame without the right one is refused (serial
    links). Off (TCP/IP, where public clients leave it out, sheet): frames carry none, but a received
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

    def parse_ack(self, request: Request, reply: bytes) -> None:
        """``$``: done. An error code in its place: ErrorReply naming the command and the code's meaning."""
        fields = self.fields(request, reply)
        if fields == [b"$"]:
            return
        if len(fields) == 1 and is_whole_number(fields[0]):
            code = int(fields[0])
            raise ErrorReply(f"'{request}' ({self.commands.describe(request.command)}) was answered with error "
                             f"code {code} ({ERROR_CODES.get(code, 'not in the error table')})")
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

    # -- replies (simulator side; requests are read with decode()) ---------------------------------------
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
    generator never gets more than asked: 4095 counts = full scale (sheet). LimitError outside 0-full scale."""
    if not 0 <= value <= full_scale:
        raise LimitError(f"{what}={value:g} is outside the allowed range 0-{full_scale:g}")
    return min(DAC_MAX, math.floor(value / full_scale * DAC_MAX + 1e-9))


def setpoint_value(counts: int, full_scale: float) -> float:
    """The set-point a DAC count stands for (unit of ``full_scale``)."""
    return counts * full_scale / DAC_MAX


def readback_value(counts: int, full_scale: float, over_range: float) -> float:
    """A monitor read-back count in the unit of ``full_scale``: 4095 counts = ``over_range`` × full scale
    (XRV: 1.2, sheet and PyMeasure)."""
    return counts * over_range * full_scale / DAC_MAX


def readback_counts(value: float, full_scale: float, over_range: float) -> int:
    """The monitor count nearest ``value`` (the simulator's ADC), clamped to 0-4095."""
    return max(0, min(DAC_MAX, round(value / (over_range * full_scale) * DAC_MAX)))


# -- model table -----------------------------------------------------------------------------------------
class Filament(BaseModel):
    """One spot mode: which filament (``large``; ``32,1`` selects the large one), the generator's power
    limit for it (W), the focal-spot floor (µm) and growth (µm/W) of the tube it drives."""

    model_config = ConfigDict(extra="forbid")
    large: bool = False
    power_limit_w: float = Field(gt=0)
    spot_size_um: float = Field(gt=0)
    growth_um_per_w: float = Field(default=0.0, ge=0)


class GeneratorModel(BaseModel):
    """A generator model: family, full scale (kV, mA), read-back over-range, spot modes by name, baud;
    optional tighter kV and µA ranges for the tube (default: 0 to full scale)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    family: Literal["XRV", "uX"]
    full_scale_kv: float = Field(gt=0)
    full_scale_ma: float = Field(gt=0)
    readback_over_range: float = Field(ge=1.0, description="monitor full count / set-point full scale")
    spot_modes: dict[str, Filament]
    baudrate: int = Field(default=9600, gt=0)
    voltage_range_kv: tuple[float, float] | None = None
    current_range_ua: tuple[float, float] | None = None

    @property
    def full_scale_ua(self) -> float:
        return self.full_scale_ma * 1000.0

    @property
    def commands(self) -> CommandSet:
        return COMMAND_SETS[self.family]

    @model_validator(mode="after")
    def _consistent(self):
        caps = self.capabilities()  # ranges ordered, at least one mode
        for label, (_, high), full, unit in (("voltage_range_kv", caps.voltage_range_kv, self.full_scale_kv, "kV"),
                                             ("current_range_ua", caps.current_range_ua, self.full_scale_ua, "µA")):
            if high > full:
                raise ValueError(f"{label}: {high:g} {unit} is above the full scale {full:g} {unit}")
        if self.commands.filament_select is None and len(self.spot_modes) != 1:
            raise ValueError(f"spot_modes: the {self.family} family has one filament, so exactly one spot mode; "
                             f"got {sorted(self.spot_modes)}")
        filaments = [mode.large for mode in self.spot_modes.values()]
        if len(set(filaments)) != len(filaments):
            raise ValueError(f"spot_modes: each filament (large, small) serves one mode, got {sorted(self.spot_modes)}")
        return self

    def capabilities(self) -> SourceCapabilities:
        return SourceCapabilities(self.voltage_range_kv or (0.0, self.full_scale_kv),
                                  self.current_range_ua or (0.0, self.full_scale_ua),
                                  {name: SpotMode(power_limit_w=m.power_limit_w, spot_size_um=m.spot_size_um, growth_um_per_w=m.growth_um_per_w)
                                   for name, m in self.spot_modes.items()})


# Where each figure comes from (see the module docstring for "sheet", "PyMeasure" and "uX notes"):
# - families, 9600 baud: sheet. XRV read-back over-range 1.2: sheet and PyMeasure; the uX has none
#   documented (1.0 assumed).
# - XRV160 full scale 160 kV / 30 mA: the "28" reply of PyMeasure's XRV tests ("28,160,30,0,").
# - uX50 50 kV / 2 mA: uX notes README ("50 kV", "1 mA (4095 = 2 mA)"); another of their scripts reads
#   4095 as 65 kV and 5 mA ("manual is wrong"): check the scaling of each unit (sheet).
# EXAMPLE FIGURES, to check against the generator's and tube's documents before use: every power limit
# (a 160 kV industrial tube with 0.4 / 1.0 mm focal spots, 800 W / 1800 W, on the XRV160; 50 W on the
# uX50) and every spot size (the generator has none: the tube's).
MODELS: dict[str, GeneratorModel] = {
    "XRV160": GeneratorModel(
        name="XRV160", family="XRV", full_scale_kv=160, full_scale_ma=30, readback_over_range=1.2,
        spot_modes={"small": Filament(large=False, power_limit_w=800, spot_size_um=400),
                    "large": Filament(large=True, power_limit_w=1800, spot_size_um=1000)}),
    "uX50": GeneratorModel(
        name="uX50", family="uX", full_scale_kv=50, full_scale_ma=2, readback_over_range=1.0,
        spot_modes={"fixed": Filament(power_limit_w=50, spot_size_um=50)}),
}


def generator_model(model: str, overrides: Mapping[str, Any] | None = None) -> GeneratorModel:
    """The table entry ``model`` with ``overrides`` replacing its fields one by one (spot modes by name,
    field by field). ConfigurationError naming the key and value for an unknown model or a bad field."""
    return model_from_table(MODELS, "model", model, overrides)


def checksum_default(resource: str) -> bool:
    """Whether frames carry the checksum on ``resource``: not on a TCPIP SOCKET (public clients leave it
    out over TCP/IP, sheet), on everywhere else (ASRL serial and USB links)."""
    parts = resource.upper().split("::")
    return not (parts[0].startswith("TCPIP") and parts[-1] == "SOCKET")


# =====================================================================================================
# Driver
# =====================================================================================================
class SpellmanOptions(BaseModel):
    """``[source.options]`` of the ``spellman`` driver."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field(default="XRV160", description="a key of the model table: " + ", ".join(MODELS))
    family: Literal["XRV", "uX"] | None = Field(default=None, description="command set; default: the model's")
    overrides: dict[str, Any] = Field(default_factory=dict, description="model-table fields to replace, "
                                      "e.g. {spot_modes = {small = {power_limit_w = 600.0}}}")
    checksum: bool | None = Field(default=None, description="frames carry the checksum; default: off on a "
                                  "TCPIP SOCKET resource, on otherwise (ASRL)")
    timeout_s: float = Field(default=2.0, gt=0, description="for a whole reply (s); 2 s as public clients")
    visa: dict[str, Any] = Field(default_factory=dict, description="VisaSettings fields; terminators default "
                                 "to ETX, the timeout to timeout_s, an ASRL baud to the model's")
    readback_max_age_s: float = Field(default=0.05, ge=0, description="how long one status reply serves "
                                      "read_state and read_interlock_closed, and one monitor reply "
                                      "read_voltage_kv and read_current_ua (s); 0: never reused")

    @model_validator(mode="after")
    def _resolvable(self):
        self.generator()
        self.visa_settings("")
        return self

    def generator(self) -> GeneratorModel:
        overrides = self.overrides if self.family is None else {**self.overrides, "family": self.family}
        return generator_model(self.model, overrides)

    def visa_settings(self, resource: str) -> VisaSettings:
        """The VISA settings for ``resource``: ETX terminators, the timeout, the model's baud on ASRL."""
        defaults: dict[str, Any] = {"read_terminator": ETX.decode(), "write_terminator": ETX.decode(),
                                    "timeout_s": self.timeout_s}
        if resource.upper().startswith("ASRL"):
            defaults["baudrate"] = self.generator().baudrate
        try:
            return VisaSettings(**{**defaults, **self.visa})
        except ValidationError as error:
            raise ConfigurationError(validation_message(error, "visa.")) from None


class SpellmanSource(XRaySource):
    """A Spellman XRV or uX X-ray generator and its tube, on a VISA resource.

    Set-points go out as DAC counts, rounded down (the resolution is full scale / 4095: 0.039 kV
    and 7.3 µA on the XRV160). The status reply (``22``) gives state and interlock, the monitor reply (XRV
    ``19``, uX ``20``) kV and µA; each is reused for ``readback_max_age_s``, and any command discards
    both, so a frame of the scan (state, kV, µA) costs two exchanges. No warm-up programme: the state
    is STANDBY when the supply is ready, never WARMUP_NEEDED or WARMING_UP, and ``warm_up()`` is refused.
    A fault (XRV: ``68`` names it) is cleared by ``reset()`` (``31``; the uX has no such command).
    Spot modes are filaments: the XRV selects the large one with ``32,1``; beam on enables the filament
    (``70,1``) before HV on (``98,1``).

    ``connection`` is a VISA resource (``TCPIP::host::port::SOCKET``, ``ASRL/dev/ttyUSB0::INSTR``);
    ``transport`` (instead) a ready one, for tests: then the checksum defaults to on.
    """

    backend = "VISA"
    Options = SpellmanOptions

    def __init__(self, name: str, options: SpellmanOptions | None = None, connection: str | None = None, *,
                 transport: Transport | None = None, clock: Clock | None = None) -> None:
        self.options = options or SpellmanOptions()
        self.generator = self.options.generator()
        super().__init__(name, self.generator.capabilities(), clock)
        if transport is None:
            if not connection:
                raise ConfigurationError(f"{name}.connection: the spellman driver needs a VISA resource, e.g. "
                                         f"TCPIP::192.168.1.4::50001::SOCKET or ASRL/dev/ttyUSB0::INSTR")
            transport = VisaTransport(connection, self.options.visa_settings(connection), name=f"source {name!r}")
        with_checksum = self.options.checksum
        if with_checksum is None:
            with_checksum = checksum_default(connection) if connection else True
        self.codec = Codec(self.generator.commands, with_checksum)
        self._transport = transport
        self._status_cache: tuple[float, GeneratorStatus] | None = None
        self._monitor_cache: tuple[float, tuple[int, int]] | None = None
        self._reported_reason = ""

    @classmethod
    def from_config(cls, name: str, options: SpellmanOptions, connection: str | None,
                    context: DriverContext) -> SpellmanSource:
        return cls(name, options, connection, clock=context.clock)

    def fault_flags(self) -> tuple[str, ...]:
        """The faults the XRV reports (``68``), by name; DeviceStateError on a family without it."""
        self._require_connected()
        if self.codec.commands.faults is None:
            raise self._error(DeviceStateError, f"the {self.generator.family} family reports no fault detail")
        return self._ask(Request(self.codec.commands.faults), lambda _, reply: self.codec.parse_faults(reply))

    # -- exchanges -----------------------------------------------------------------------------------
    def _ask(self, request: Request, parse: Callable[[Request, bytes], T]) -> T:
        """One exchange through the transport; codec errors get this device's name."""
        reply = self._transport.query(self.codec.encode(request))[0]
        try:
            return parse(request, reply)
        except ProtocolError as error:
            raise self._error(type(error), str(error)) from None

    def _act(self, request: Request, sent: str = "") -> None:
        """A command answered by ``$``. An error code is reported with what was sent and the state."""
        self._status_cache = self._monitor_cache = None
        try:
            self._ask(request, self.codec.parse_ack)
        except ErrorReply as error:
            status = self._read_status()
            reason = not_ready_reason(status) or ("fault" if status.fault else "")
            detail = f"{sent}; " if sent else ""
            raise ErrorReply(f"{error}; {detail}the generator is in state {state_of(status).value!r}"
                             f"{f' ({reason})' if reason else ''}") from None

    def _read_status(self) -> GeneratorStatus:
        return self._ask(Request(self.codec.commands.status), lambda _, reply: self.codec.parse_status(reply))

    def _status(self) -> GeneratorStatus:
        """The last status reply, read again once older than ``readback_max_age_s``."""
        now = self.clock.monotonic()
        if self._status_cache is None or now - self._status_cache[0] >= self.options.readback_max_age_s:
            self._status_cache = (now, self._read_status())
        return self._status_cache[1]

    def _monitors(self) -> tuple[int, int]:
        """The last monitor reply (kV, mA counts), read again once older than ``readback_max_age_s``."""
        now = self.clock.monotonic()
        if self._monitor_cache is None or now - self._monitor_cache[0] >= self.options.readback_max_age_s:
            self._monitor_cache = (now, self._ask(Request(self.codec.commands.monitors),
                                                  lambda _, reply: self.codec.parse_monitors(reply)))
        return self._monitor_cache[1]

    def _send_setpoint(self, command: int, value: float, full_scale: float, field: str, unit: str) -> None:
        counts = setpoint_counts(value, full_scale, field)
        self._act(Request(command, (counts,)), f"{field}={value:g} {unit} was sent as {counts} counts "
                                               f"(0-{DAC_MAX} = 0-{full_scale:g} {unit})")

    # -- hooks ---------------------------------------------------------------------------------------
    def _do_connect(self) -> None:
        """Open the link; on the XRV, check the generator's full scale (``28``) against the model's."""
        self._transport.open()
        self._status_cache = self._monitor_cache = None
        try:
            if self.codec.commands.scaling is not None:
                self._check_scaling(self._ask(Request(self.codec.commands.scaling),
                                              lambda _, reply: self.codec.parse_scaling(reply)))
        except BaseException:
            self._transport.close()
            raise

    def _check_scaling(self, scaling: Scaling) -> None:
        """Every kV and mA sent is scaled by the model's full scale: a generator reporting another is refused."""
        g = self.generator
        if not (math.isclose(scaling.full_scale_kv, g.full_scale_kv, rel_tol=1e-6)
                and math.isclose(scaling.full_scale_ma, g.full_scale_ma, rel_tol=1e-6)):
            raise self._error(ConfigurationError,
                              f"the generator reports a full scale of {scaling.full_scale_kv:g} kV / "
                              f"{scaling.full_scale_ma:g} mA ('28'), the model {g.name!r} has {g.full_scale_kv:g} kV "
                              f"/ {g.full_scale_ma:g} mA; choose the matching model or set overrides "
                              f"full_scale_kv and full_scale_ma")

    def _do_close(self) -> None:
        self._status_cache = self._monitor_cache = None
        self._transport.close()

    def _do_read_setpoints(self) -> tuple[float, float, str]:
        g, commands = self.generator, self.codec.commands
        voltage_kv = setpoint_value(self._ask(Request(commands.read_kv), self.codec.parse_counts), g.full_scale_kv)
        current_ua = setpoint_value(self._ask(Request(commands.read_ma), self.codec.parse_counts), g.full_scale_ua)
        if commands.filament_select is None:
            return voltage_kv, current_ua, next(iter(g.spot_modes))
        large = self._read_status().large_filament
        names = [name for name, mode in g.spot_modes.items() if mode.large == large]
        if not names:
            raise self._error(ProtocolError, f"the generator has the {'large' if large else 'small'} filament "
                                             f"selected; the {g.name} table has no spot mode for it "
                                             f"(modes: {', '.join(g.spot_modes)})")
        return voltage_kv, current_ua, names[0]

    def _do_set_voltage_kv(self, voltage_kv: float) -> None:
        self._send_setpoint(self.codec.commands.set_kv, voltage_kv, self.generator.full_scale_kv, "voltage_kv", "kV")

    def _do_set_current_ua(self, current_ua: float) -> None:
        self._send_setpoint(self.codec.commands.set_ma, current_ua, self.generator.full_scale_ua, "current_ua", "µA")

    def _do_set_spot_mode(self, spot_mode: str) -> None:
        """Select the mode's filament (reached only on a family with a filament select: the model table
        gives the others one spot mode)."""
        large = self.generator.spot_modes[spot_mode].large
        self._act(Request(self.codec.commands.filament_select, (int(large),)), f"spot_mode={spot_mode!r}")

    def _do_beam_on(self) -> None:
        commands = self.codec.commands
        if commands.filament_enable is not None:
            self._act(Request(commands.filament_enable, (1,)))
        self._act(Request(commands.hv, (1,)))

    def _do_beam_off(self) -> None:
        self._act(Request(self.codec.commands.hv, (0,)))

    def _do_warm_up(self) -> None:
        raise self._error(DeviceStateError, f"the {self.generator.family} generator runs no warm-up programme; "
                                            f"condition the tube as its maker prescribes (configure() and beam_on())")

    def _do_reset(self) -> None:
        if self.codec.commands.reset is None:
            raise self._error(DeviceStateError, f"the {self.generator.family} family has no reset-faults command; "
                                                f"clear the fault at the generator")
        self._act(Request(self.codec.commands.reset))

    def _do_refresh(self) -> None:
        self._status_cache = None
        self._monitor_cache = None

    def _do_read_state(self) -> SourceState:
        status = self._status()
        state = state_of(status)
        reason = ""
        if state is SourceState.FAULT and self.codec.commands.faults is not None:
            reason = f"fault: {', '.join(self.fault_flags()) or 'no fault flag set'}"
        elif state is SourceState.FAULT:
            reason = f"fault (the {self.generator.family} family reports no detail)"
        elif state is SourceState.NOT_READY:
            reason = f"not ready: {not_ready_reason(status)}"
        if reason and reason != self._reported_reason:
            log.warning("source %r: %s", self.name, reason)
        self._reported_reason = reason
        return state

    def _do_read_voltage_kv(self) -> float:
        g = self.generator
        return readback_value(self._monitors()[0], g.full_scale_kv, g.readback_over_range)

    def _do_read_current_ua(self) -> float:
        g = self.generator
        return readback_value(self._monitors()[1], g.full_scale_ua, g.readback_over_range)

    def _do_read_interlock_closed(self) -> bool:
        return self._status().interlock_closed

    def _do_describe(self) -> dict[str, Any]:
        g = self.generator
        description = {"model": g.name, "family": g.family, "full_scale": f"{g.full_scale_kv:g} kV / "
                       f"{g.full_scale_ma:g} mA", "checksum": self.codec.checksum, **super()._do_describe()}
        if self._reported_reason:
            description["reason"] = self._reported_reason
        return description
