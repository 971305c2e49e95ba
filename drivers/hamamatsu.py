"""Hamamatsu microfocus X-ray sources L9181-02, L10711 and L12721 on RS-232.

Two parts: the **codec** (pure functions: command bytes out, replies parsed in, replies formatted
for the wire simulator) with the per-model table ``MODELS``, and the **driver** ``HamamatsuSource``.

Sources cited below: "sheet" is the project's fact sheet (shared/protocols/hamamatsu-microfocus.md);
"host code" is public vendor-integrator host software for these controllers (the CT30K micro-CT
control, XrayCtrl classes clsCtrlXrayL10711 and clsCtrlXrayL9181_02), read to check reply layouts.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from microct.clock import Clock
from microct.options import model_from_table, validation_message
from microct.devices.source import SourceCapabilities, SourceState, SpotMode, XRaySource
from microct.errors import ConfigurationError, LimitError, ProtocolError
from microct.devices.base import DriverContext
from microct.transport import SerialSettings, SerialTransport, Transport

log = logging.getLogger("microct.drivers.hamamatsu")

T = TypeVar("T")

# =====================================================================================================
# Codec: no I/O. Commands are bytes without the CR terminator (the transport adds and strips it).
# =====================================================================================================

# Actions and queries without an argument (sheet, "Commands").
XON, XOF, WUP, RST = b"XON", b"XOF", b"WUP", b"RST"
STS, SAR, SNR, SVI, SHV, SCU, SIN, SPH, SWE, SFC, TYP, SER = (
    b"STS", b"SAR", b"SNR", b"SVI", b"SHV", b"SCU", b"SIN", b"SPH", b"SWE", b"SFC", b"TYP", b"SER")

ERR = b"ERR"
ERROR_REPLIES = (ERR, b"ERROR")  # sheet, "Framing": ERR; older dialects ERROR

# STS codes (sheet, "Commands"). 6 (self-test, at power-on) cannot take XON either: not ready.
STATE_CODES: dict[int, SourceState] = {
    0: SourceState.WARMUP_NEEDED, 1: SourceState.WARMING_UP, 2: SourceState.STANDBY,
    3: SourceState.BEAM_ON, 4: SourceState.FAULT, 5: SourceState.NOT_READY, 6: SourceState.NOT_READY}
_CODE_OF_STATE = {state: code for code, state in STATE_CODES.items() if code != 6}

# SER / first SNR field (sheet, "Error codes").
BOARD_ERRORS = {3: "control-board fault", 4: "control-board fault", 200: "fan fault",
                201: "input supply voltage", 202: "input supply voltage", 208: "input supply voltage",
                203: "board fault", 204: "board fault", 206: "board fault", 207: "board fault",
                209: "temperature"}

# Fourth SNR field on open (pumped) tubes: vacuum level 0 (low) .. 5 (high), 6-7 gauge faults (host
# code, L10711 SVC); level 2 and above lets X-rays on (host code, L9191 vacuum notes).
VACUUM_READY = range(2, 6)


class ErrorReply(ProtocolError):
    """The device answered ``ERR``: unknown command, bad argument, or not allowed in the current state."""


@dataclass(frozen=True)
class BulkStatus:
    """``SAR``: state and measured read-backs in one reply (kV, µA)."""

    state: SourceState
    voltage_kv: float
    current_ua: float


@dataclass(frozen=True)
class NotReadyCauses:
    """``SNR``: board error code (0 none), interlock open, filament preheating, vacuum level."""

    board_error: int
    interlock_open: bool
    preheating: bool
    vacuum_level: int


# -- encoding --------------------------------------------------------------------------------------
def _encode_whole(word: bytes, value: int, unit: str) -> bytes:
    if value < 0:
        raise LimitError(f"{word.decode()}: {value} {unit} is negative; the device takes whole {unit} >= 0")
    return b"%s %03d" % (word, value)  # sheet: "HIV 080"; host code formats "000"


def encode_voltage(voltage_kv: int) -> bytes:
    """``HIV nnn``: tube voltage set-point in whole kV."""
    return _encode_whole(b"HIV", voltage_kv, "kV")


def encode_current(current_ua: int) -> bytes:
    """``CUR nnn``: tube current set-point in whole µA."""
    return _encode_whole(b"CUR", current_ua, "µA")


def encode_focus(code: int) -> bytes:
    """``CFS n``: focus mode by its model-table code."""
    return b"CFS %d" % code


# -- parsing -----------------------------------------------------------------------------------------
def _garbled(command: bytes, reply: bytes, why: str) -> ProtocolError:
    return ProtocolError(f"{command.decode()!r}: garbled reply {reply!r} ({why})")


def _fields(command: bytes, reply: bytes, count: int, at_least: bool = False) -> list[bytes]:
    """The values after the echoed command word; ErrorReply for ERR, ProtocolError for anything else."""
    if reply.strip() in ERROR_REPLIES:
        raise ErrorReply(f"{command.decode()!r} was answered {reply.decode(errors='replace')!r}: unknown "
                         f"command, bad argument, or not allowed in the current state")
    word, *values = reply.split() or [b""]
    if word != command.split()[0]:
        raise _garbled(command, reply, f"expected the reply to start with {command.split()[0].decode()!r}")
    if len(values) < count or (len(values) > count and not at_least):
        raise _garbled(command, reply, f"expected {'at least ' if at_least else ''}{count} value(s)")
    return values


def _number(command: bytes, reply: bytes, token: bytes) -> float:
    try:
        value = float(token)
    except ValueError:
        raise _garbled(command, reply, f"{token.decode(errors='replace')!r} is not a number") from None
    if not math.isfinite(value):
        raise _garbled(command, reply, f"{token.decode()!r} is not a finite number")
    return value


def _code(command: bytes, reply: bytes, token: bytes, allowed: range | Mapping[int, Any]) -> int:
    try:
        code = int(token) if token.isdigit() else None
    except ValueError:  # more digits than int() converts: garbage, not a code
        code = None
    if code is None or code not in allowed:
        raise _garbled(command, reply, f"{token.decode(errors='replace')!r} is not one of the codes "
                                       f"{min(allowed)}-{max(allowed)}")
    return code


def parse_echo(command: bytes, reply: bytes) -> None:
    """A setter or action is answered by its echo; the value in it, if any, must be the one sent
    (sheet: the L10711 echo carries the value, "HIV 100"; host code: other models echo the command)."""
    word, *argument = command.split()
    values = _fields(command, reply, 0, at_least=bool(argument))
    if len(values) > len(argument):
        raise _garbled(command, reply, "expected the echo of the command")
    if values and _number(command, reply, values[0]) != int(argument[0]):
        raise _garbled(command, reply, f"the device echoes {values[0].decode()}, {argument[0].decode()} was sent")


def parse_state(reply: bytes) -> SourceState:
    """``STS n`` → the source state."""
    return STATE_CODES[_code(STS, reply, _fields(STS, reply, 1)[0], STATE_CODES)]


def parse_status(reply: bytes) -> BulkStatus:
    """``SAR sts kV µA ...``: state, measured kV and µA (L9181-02 pads with zeros, the L10711 adds
    target current, filament and alignment states: host code; only the first three are read)."""
    sts, kv, ua = _fields(SAR, reply, 3, at_least=True)[:3]
    return BulkStatus(STATE_CODES[_code(SAR, reply, sts, STATE_CODES)], _number(SAR, reply, kv),
                  _number(SAR, reply, ua))


def parse_not_ready(reply: bytes) -> NotReadyCauses:
    """``SNR ser sin sph [svc]``: why the tube is not ready (sheet; host code: the L9181-02 sends 0 as svc)."""
    values = _fields(SNR, reply, 3, at_least=True)
    ser = _code(SNR, reply, values[0], range(1000))
    sin, sph = (_code(SNR, reply, v, range(2)) for v in values[1:3])
    svc = _code(SNR, reply, values[3], range(10)) if len(values) > 3 else 0
    return NotReadyCauses(ser, bool(sin), bool(sph), svc)


def parse_setpoints(reply: bytes) -> tuple[float, float]:
    """``SVI kV µA`` → the set-points (kV, µA)."""
    kv, ua = _fields(SVI, reply, 2)
    return _number(SVI, reply, kv), _number(SVI, reply, ua)


def parse_voltage(reply: bytes) -> float:
    """``SHV n`` → measured tube voltage (kV)."""
    return _number(SHV, reply, _fields(SHV, reply, 1)[0])


def parse_current(reply: bytes) -> float:
    """``SCU n`` → measured tube current (µA)."""
    return _number(SCU, reply, _fields(SCU, reply, 1)[0])


def parse_interlock_open(reply: bytes) -> bool:
    """``SIN n``: 0 closed, 1 open."""
    return bool(_code(SIN, reply, _fields(SIN, reply, 1)[0], range(2)))


def parse_preheating(reply: bytes) -> bool:
    """``SPH n``: 1 preheating, 0 done."""
    return bool(_code(SPH, reply, _fields(SPH, reply, 1)[0], range(2)))


def parse_warmup(reply: bytes) -> int:
    """``SWE n``: 0 done, 1 running, 2 not yet, 3 time over (L10711)."""
    return _code(SWE, reply, _fields(SWE, reply, 1)[0], range(4))


def parse_focus(reply: bytes) -> int:
    """``SFC n`` → the focus-mode code."""
    return _code(SFC, reply, _fields(SFC, reply, 1)[0], range(10))


def parse_model_name(reply: bytes) -> str:
    """``TYP name`` → the model name."""
    return b" ".join(_fields(TYP, reply, 1, at_least=True)).decode(errors="replace")


def parse_board_error(reply: bytes) -> int:
    """``SER n`` → board error code, 0 none."""
    return _code(SER, reply, _fields(SER, reply, 1)[0], range(1000))


def describe_not_ready(causes: NotReadyCauses, vacuum_gauge: bool) -> str:
    """The causes in words; the vacuum level only counts on tubes whose SNR reports one."""
    reasons = []
    if causes.interlock_open:
        reasons.append("interlock open")
    if causes.preheating:
        reasons.append("filament preheating")
    if causes.board_error:
        reasons.append(f"board error {causes.board_error} "
                       f"({BOARD_ERRORS.get(causes.board_error, 'code not in the error table')})")
    if vacuum_gauge and causes.vacuum_level not in VACUUM_READY:
        reasons.append(f"vacuum level {causes.vacuum_level} (X-rays need "
                       f"{VACUUM_READY.start}-{VACUUM_READY.stop - 1})")
    return "; ".join(reasons) or "SNR reports no cause"


# -- formatting (the wire simulator's replies) -------------------------------------------------------
def format_values(word: bytes, *values: float) -> bytes:
    """``WORD v1 v2 ...`` with each value as a whole number (``SVI 100 50``, ``SHV 100``, ``SIN 1``)."""
    return b" ".join([word, *(b"%d" % round(value) for value in values)])


def format_state(state: SourceState) -> bytes:
    """``STS n``."""
    return format_values(STS, _CODE_OF_STATE[state])


def format_status(state: SourceState, voltage_kv: float, current_ua: float) -> bytes:
    """``SAR sts kV µA 0 0 0 0`` (seven fields, as the host code reads them)."""
    return format_values(SAR, _CODE_OF_STATE[state], voltage_kv, current_ua, 0, 0, 0, 0)


def format_not_ready(causes: NotReadyCauses) -> bytes:
    """``SNR ser sin sph svc``."""
    return format_values(SNR, causes.board_error, causes.interlock_open, causes.preheating, causes.vacuum_level)


def format_model_name(name: str) -> bytes:
    """``TYP name``."""
    return b"TYP " + name.encode()


# -- model table -------------------------------------------------------------------------------------
class FocusMode(BaseModel):
    """One focus mode: its ``CFS`` code, power limit (W), spot floor (µm) and growth (µm/W)."""

    model_config = ConfigDict(extra="forbid")
    code: int = Field(ge=0, le=9)
    power_limit_w: float = Field(gt=0)
    spot_size_um: float = Field(gt=0)
    growth_um_per_w: float = Field(default=0.0, ge=0)


class TubeModel(BaseModel):
    """A model's figures: kV and µA ranges, focus modes by name, baud, whether SNR reports vacuum."""

    model_config = ConfigDict(extra="forbid")
    name: str
    voltage_range_kv: tuple[float, float]
    current_range_ua: tuple[float, float]
    focus_modes: dict[str, FocusMode]
    baudrate: int = Field(gt=0)
    vacuum_in_snr: bool = False

    @model_validator(mode="after")
    def _consistent(self):
        codes = [mode.code for mode in self.focus_modes.values()]
        if len(set(codes)) != len(codes):
            raise ValueError(f"focus_modes: each mode needs its own code, got {codes}")
        self.capabilities()  # ranges ordered, at least one mode
        return self

    def capabilities(self) -> SourceCapabilities:
        return SourceCapabilities(self.voltage_range_kv, self.current_range_ua,
                                  {name: SpotMode(power_limit_w=m.power_limit_w, spot_size_um=m.spot_size_um, growth_um_per_w=m.growth_um_per_w)
                                   for name, m in self.focus_modes.items()})


def _mode(code: int, power_limit_w: float, spot_size_um: float, growth_um_per_w: float) -> FocusMode:
    return FocusMode(code=code, power_limit_w=power_limit_w, spot_size_um=spot_size_um,
                     growth_um_per_w=growth_um_per_w)


# Where each figure comes from (see the module docstring for "sheet" and "host code"):
# - baud 38400 for all three: sheet, "Framing"; host code opens the L9181-02 and L10711 at 38400.
# - focus-mode names and CFS codes of the L9181-02 and L10711: sheet, "CFS n".
# - L9181-02 130 kV: sheet ("0-130 kV L9181-02LT"); 0-300 µA: a public CT-vendor source table
#   (Lumafield burn-in notes: "L9181-02 40-130 kV, 0-300 µA").
# - L10711 160 kV: host code ("160kV L10711"); small-focus floor 0.25 µm: Hamamatsu's X-ray imaging
#   Q&A page ("L10711 with a focal spot size down to 0.25 µm").
# - L12721 300 kV: host code ("300kV L12721"; one comment there says 130 kV); 1000 µA: sheet ("up to
#   1000 µA larger models").
# EXAMPLE FIGURES, to check against the datasheet before use: every power limit, every spot size
# other than the L10711 small-focus floor, every growth figure, the L10711 200 µA, the lower kV
# bounds (0: the protocol's, not the tube's), and the L12721 focus modes (codes as on the L10711).
MODELS: dict[str, TubeModel] = {
    "L9181-02": TubeModel(name="L9181-02", voltage_range_kv=(0, 130), current_range_ua=(0, 300), baudrate=38400,
                          focus_modes={"small": _mode(0, 8.0, 5.0, 0.6), "middle": _mode(1, 39.0, 20.0, 0.6)}),
    "L10711": TubeModel(name="L10711", voltage_range_kv=(0, 160), current_range_ua=(0, 200), baudrate=38400,
                        vacuum_in_snr=True,
                        focus_modes={"small": _mode(0, 4.0, 0.25, 0.5), "middle": _mode(1, 10.0, 1.0, 0.5),
                                     "large": _mode(2, 16.0, 5.0, 0.5)}),
    "L12721": TubeModel(name="L12721", voltage_range_kv=(0, 300), current_range_ua=(0, 1000), baudrate=38400,
                        focus_modes={"small": _mode(0, 10.0, 5.0, 0.5), "middle": _mode(1, 50.0, 20.0, 0.5),
                                     "large": _mode(2, 150.0, 50.0, 0.5)}),
}


def tube_model(model: str, overrides: Mapping[str, Any] | None = None) -> TubeModel:
    """The table entry ``model`` with ``overrides`` replacing its fields one by one (focus modes by
    name, field by field). ConfigurationError naming the key and value for an unknown model or bad field."""
    return model_from_table(MODELS, "model", model, overrides)


# =====================================================================================================
# Driver
# =====================================================================================================
class HamamatsuOptions(BaseModel):
    """``[source.options]`` of the ``hamamatsu`` driver."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field(default="L10711", description="a key of the model table: " + ", ".join(MODELS))
    overrides: dict[str, Any] = Field(default_factory=dict, description="model-table fields to replace, "
                                      "e.g. {focus_modes = {small = {power_limit_w = 5.0}}}")
    serial: dict[str, Any] = Field(default_factory=dict, description="SerialSettings fields; the baud "
                                   "defaults to the model's, the timeout to timeout_s")
    timeout_s: float = Field(default=1.0, gt=0, description="for a whole reply (s)")
    readback_max_age_s: float = Field(default=0.05, ge=0, description="how long one SAR reply serves "
                                      "read_state, read_voltage_kv and read_current_ua (s); 0: never reused")

    @model_validator(mode="after")
    def _resolvable(self):
        self.serial_settings()  # resolves the model too
        return self

    def tube(self) -> TubeModel:
        return tube_model(self.model, self.overrides)

    def serial_settings(self) -> SerialSettings:
        try:
            return SerialSettings(**{"baudrate": self.tube().baudrate, "timeout_s": self.timeout_s, **self.serial})
        except ValidationError as error:
            raise ConfigurationError(validation_message(error, "serial.")) from None


class HamamatsuSource(XRaySource):
    """A Hamamatsu microfocus source (L9181-02, L10711, L12721) on a serial line or URL.

    State machine as the sheet's vendor host code drives it: warm-up needed → ``WUP``; standby →
    ``XON``/``XOF``; overload → ``RST``; not ready → ``SNR`` says why (``not_ready_reason()``).
    ``read_state``, ``read_voltage_kv`` and ``read_current_ua`` share one ``SAR`` reply for
    ``readback_max_age_s``; any setter or action discards it (in state not-ready, ``read_state``
    adds an ``SNR`` and logs the cause when it changes). The device takes whole kV and µA:
    set-points are truncated (never rounded up, so its power never exceeds the power checked).

    ``connection`` is a serial port or pyserial URL; ``transport`` (instead) a ready one, for tests.
    """

    backend = "serial"
    Options = HamamatsuOptions

    def __init__(self, name: str, options: HamamatsuOptions | None = None, connection: str | None = None, *,
                 transport: Transport | None = None, clock: Clock | None = None) -> None:
        self.options = options or HamamatsuOptions()
        self.tube = self.options.tube()
        super().__init__(name, self.tube.capabilities(), clock)
        if transport is None:
            if not connection:
                raise ConfigurationError(f"{name}.connection: the hamamatsu driver needs a serial port or URL, "
                                         f"e.g. /dev/ttyUSB0 or socket://127.0.0.1:7001")
            transport = SerialTransport(connection, self.options.serial_settings(), name=f"source {name!r}")
        self._transport = transport
        self._status_cache: tuple[float, BulkStatus] | None = None
        self._reported_reason: str | None = None
        self.identity = ""
        """The model name the device reported (``TYP``) at connect."""

    @classmethod
    def from_config(cls, name: str, options: HamamatsuOptions, connection: str | None,
                    context: DriverContext) -> HamamatsuSource:
        return cls(name, options, connection, clock=context.clock)

    def not_ready_reason(self) -> str:
        """Why the tube is not ready, from ``SNR``: interlock, preheat, board error, vacuum."""
        self._require_connected()
        return describe_not_ready(self._ask(SNR, parse_not_ready), self.tube.vacuum_in_snr)

    # -- exchanges -----------------------------------------------------------------------------------
    def _ask(self, command: bytes, parse: Callable[[bytes], T]) -> T:
        """One exchange through the transport; codec errors get this device's name."""
        reply = self._transport.query(command)[0]
        try:
            return parse(reply)
        except ProtocolError as error:
            raise self._error(type(error), str(error)) from None

    def _act(self, command: bytes) -> None:
        """A setter or action, checked by its echo. An ERR says which state the device is in."""
        self._status_cache = None
        try:
            self._ask(command, partial(parse_echo, command))
        except ErrorReply as error:
            state = self._status().state
            detail = f": {self.not_ready_reason()}" if state is SourceState.NOT_READY else ""
            raise ErrorReply(f"{error}; the device is in state {state.value!r}{detail}") from None

    def _status(self) -> BulkStatus:
        """The last ``SAR`` reply, read again once older than ``readback_max_age_s``."""
        now = self.clock.monotonic()
        if self._status_cache is None or now - self._status_cache[0] >= self.options.readback_max_age_s:
            self._status_cache = (now, self._ask(SAR, parse_status))
        return self._status_cache[1]

    def _whole(self, value: float, field: str, unit: str) -> int:
        whole = math.floor(value + 1e-6)
        if whole != value:
            log.warning("source %r: %s=%g %s is sent as %d %s (the device takes whole %s)",
                        self.name, field, value, unit, whole, unit, unit)
        return whole

    # -- hooks ---------------------------------------------------------------------------------------
    def _do_connect(self) -> None:
        self._transport.open()
        self._status_cache = None
        try:
            self.identity = self._ask(TYP, parse_model_name)
        except BaseException:
            self._transport.close()
            raise
        if not self.identity.startswith(self.tube.name):
            log.warning("source %r: the device reports model %r, the options configure %r; the %r figures "
                        "(ranges, power limits) apply", self.name, self.identity, self.tube.name, self.tube.name)

    def _do_close(self) -> None:
        self._status_cache = None
        self._transport.close()

    def _do_read_setpoints(self) -> tuple[float, float, str]:
        voltage_kv, current_ua = self._ask(SVI, parse_setpoints)
        code = self._ask(SFC, parse_focus)
        names = {mode.code: name for name, mode in self.tube.focus_modes.items()}
        if code not in names:
            raise self._error(ProtocolError, f"'SFC' reports focus mode {code}; the {self.tube.name} table "
                                             f"has codes {sorted(names)}")
        return voltage_kv, current_ua, names[code]

    def _do_set_voltage_kv(self, voltage_kv: float) -> None:
        self._act(encode_voltage(self._whole(voltage_kv, "voltage_kv", "kV")))

    def _do_set_current_ua(self, current_ua: float) -> None:
        self._act(encode_current(self._whole(current_ua, "current_ua", "µA")))

    def _do_set_spot_mode(self, spot_mode: str) -> None:
        self._act(encode_focus(self.tube.focus_modes[spot_mode].code))

    def _do_beam_on(self) -> None:
        self._act(XON)

    def _do_beam_off(self) -> None:
        """``XOF``; an ERR while X-rays are off is the device saying so, and is not an error."""
        try:
            self._act(XOF)
        except ErrorReply:
            if self._status().state is SourceState.BEAM_ON:
                raise
            log.debug("source %r: XOF answered ERR with X-rays already off", self.name)

    def _do_warm_up(self) -> None:
        self._act(WUP)

    def _do_reset(self) -> None:
        self._act(RST)

    def _do_refresh(self) -> None:
        self._status_cache = None

    def _do_read_state(self) -> SourceState:
        state = self._status().state
        reason = self.not_ready_reason() if state is SourceState.NOT_READY else None
        if reason and reason != self._reported_reason:
            log.warning("source %r: not ready: %s", self.name, reason)
        self._reported_reason = reason
        return state

    def _do_read_voltage_kv(self) -> float:
        return self._status().voltage_kv

    def _do_read_current_ua(self) -> float:
        return self._status().current_ua

    def _do_read_interlock_closed(self) -> bool:
        return not self._ask(SIN, parse_interlock_open)

    def _do_describe(self) -> dict[str, Any]:
        description = {"model": self.identity, **super()._do_describe()}
        if self._reported_reason:
            description["not_ready_reason"] = self._reported_reason
        return description
