"""Zaber stages over the Zaber ASCII protocol: a pure codec, then the ``ZaberAxis`` driver.

Facts used here come from /work/shared/protocols/zaber-ascii.md (the fact
sheet, cited as "sheet") and from Zaber's ASCII protocol manual (cited as
"manual"). Several ZaberAxis on one serial port are one daisy chain: each talks
to its own device address through a transport sharing the port and its lock.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from microct.clock import Clock
from microct.devices.axis import Axis, AxisCapabilities, AxisUnit
from microct.devices.base import Status
from microct.errors import (CommunicationError, ConfigurationError, DeviceFaultError, DeviceStateError,
                            DeviceTimeoutError, LimitError, MicroCTError, ProtocolError)
from microct.devices.base import DriverContext
from microct.transport import SerialSettings, SerialTransport, Transport

log = logging.getLogger("microct.drivers.zaber")

# =====================================================================================================
# Codec: pure functions and data, no I/O (the simulator in microct.simulators.zaber shares them)
# =====================================================================================================

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


def is_fault(warning: str) -> bool:
    """True for flags that end a move in failure: any fault (F*) and an unexpected limit trigger (WL)."""
    return warning.startswith("F") or warning == "WL"


def highest_warning(flags: set[str]) -> str:
    """The flag a reply shows when ``flags`` are active: the one of highest precedence, or "--"."""
    return next((flag for flag in WARNINGS if flag in flags), "--")


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


class StageModel(BaseModel):
    """A stage product: everything needed to convert native units and to know its limits.

    Positions travel as microsteps (sheet, "Units"): position = steps × ``microstep_size`` (unit).
    Speeds travel as data units: data = (unit/s) / ``microstep_size`` × ``speed_factor``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    unit: AxisUnit
    microstep_size: float = Field(gt=0, description="unit per microstep")
    speed_factor: float = Field(default=1.6384, gt=0, description="speed data units per microstep/s")
    max_speed: float = Field(gt=0, description="unit/s")
    low_limit: float = Field(description="soft limit (unit)")
    high_limit: float = Field(description="soft limit (unit)")
    acceleration: float | None = Field(default=None, gt=0, description="unit/s²; None if not known")
    baudrate: int = Field(default=115200, gt=0)

    @model_validator(mode="after")
    def _limits_ordered(self):
        if self.low_limit >= self.high_limit:
            raise ValueError(f"soft limits ({self.low_limit}, {self.high_limit}): low must be < high")
        return self


STAGES: dict[str, StageModel] = {
    # Figures not read from Zaber's own product pages here; confirm them there before relying on them.
    # Microstep 0.000234375 deg: the RSW60A family as configured in public host code (T-RSW60A).
    # 115 deg/s: the X-RSW60A-E03 datasheet maximum as quoted in public host code.
    # Soft limits: one turn each way, a configuration choice (the stage rotates continuously).
    "X-RSW60A": StageModel(unit="deg", microstep_size=0.000234375, max_speed=115.0,
                           low_limit=-360.0, high_limit=360.0),
    # Microstep 0.047625 um: public host code for X-LSM stages (0.6096 mm lead / 12800 microsteps).
    # Travel 101.6 mm and 26 mm/s: the X-LSM100A-E03 specifications as quoted in a public design note.
    "X-LSM100A": StageModel(unit="mm", microstep_size=0.000047625, max_speed=26.0,
                            low_limit=0.0, high_limit=101.6),
}
# Baud 115200 for both: the current firmware default (sheet, "Framing"). Acceleration: not known.


def stage_model(name: str, overrides: dict[str, Any] | None = None) -> StageModel:
    """The model ``name`` from STAGES with ``overrides`` applied; ConfigurationError for an unknown name."""
    if name not in STAGES:
        raise ConfigurationError(f"stage={name!r} is not a known Zaber stage; known: {', '.join(sorted(STAGES))}")
    return StageModel.model_validate({**STAGES[name].model_dump(), **(overrides or {})})


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


# =====================================================================================================
# Driver
# =====================================================================================================

_REJECTION_ERRORS: dict[str, type[MicroCTError]] = {
    "BADDATA": LimitError, "BADCOMMAND": ProtocolError, "BADAXIS": ProtocolError,
    "BADMESSAGEID": ProtocolError, "DEVICEONLY": ProtocolError,
}
"""Error class per rejection reason; any other reason is a DeviceStateError (parked, busy, ...)."""


class ZaberOptions(BaseModel):
    """Options of one Zaber axis. ``serial`` fields left out take the stage model's defaults
    (its baud rate; LF out, CR LF in)."""

    model_config = ConfigDict(extra="forbid")
    device: int = Field(default=1, ge=1, le=99, description="device address in the daisy chain")
    axis: int = Field(default=1, ge=1, le=9)
    stage: str = "X-RSW60A"
    overrides: dict[str, Any] = Field(default_factory=dict, description="StageModel fields replacing the model's")
    checksums: bool = False
    serial: SerialSettings = Field(default_factory=SerialSettings)
    poll_interval_s: float = Field(default=0.02, gt=0, description="status polls while a move runs")

    @field_validator("stage")
    @classmethod
    def _known_stage(cls, stage: str) -> str:
        stage_model(stage)
        return stage

    @model_validator(mode="after")
    def _valid_overrides(self):
        self.stage_model()
        return self

    def stage_model(self) -> StageModel:
        return stage_model(self.stage, self.overrides)

    def serial_settings(self) -> SerialSettings:
        # a command ends with CR and/or LF (sheet, "Framing"): LF
        defaults = {"baudrate": self.stage_model().baudrate, "write_terminator": "\n",
                    "read_terminator": REPLY_TERMINATOR.decode()}
        return self.serial.model_copy(update={key: value for key, value in defaults.items()
                                              if key not in self.serial.model_fields_set})


class ZaberAxis(Axis):
    """One axis of a Zaber stage (ASCII protocol). Positions in the stage unit (deg or mm), velocities
    in unit/s. Commands: a move is ``move abs`` (``move rel`` for ``move_by``, after the ``get pos``
    that checks the soft limits) plus one status poll (``/d a``) per poll interval until IDLE; a
    position read is one ``get pos``."""

    backend = "serial"
    Options = ZaberOptions

    def __init__(self, name: str, options: ZaberOptions | None = None, connection: str = "",
                 transport: Transport | None = None, clock: Clock | None = None) -> None:
        self.options = options or ZaberOptions()
        self.stage = self.options.stage_model()
        stage = self.stage
        super().__init__(name, AxisCapabilities(stage.unit, stage.max_speed, stage.low_limit, stage.high_limit,
                                                stage.acceleration), clock)
        if transport is None and not connection:
            raise ConfigurationError(f"axis {name!r}: a Zaber axis needs a connection (serial port or URL)")
        self._transport = transport or SerialTransport(connection, self.options.serial_settings(), connection)
        self._where = f"Zaber device {self.options.device} axis {self.options.axis}"
        self._lock = threading.Lock()
        self._status: Status | None = None
        self._cancel: threading.Event | None = None
        self._warning = "--"
        self._serial_number = ""

    @classmethod
    def from_config(cls, name: str, options: ZaberOptions, connection: str | None,
                    context: DriverContext) -> ZaberAxis:
        return cls(name, options, connection or "", clock=context.clock)

    # -- protocol --------------------------------------------------------------------------------------
    def _command(self, text: str, value: str = "", device_scope: bool = False) -> Reply:
        """Send ``text`` to this axis (or the whole device) and return the OK reply.

        Errors name the axis, the device, the command and, if given, ``value`` (what was asked, and
        the allowed range).
        """
        axis = 0 if device_scope else self.options.axis
        message = encode_command(self.options.device, axis, text, with_checksum=self.options.checksums)
        try:
            line = self._transport.query(message)[0]
        except (DeviceTimeoutError, CommunicationError) as error:
            raise self._error(type(error), f"{self._where}: {message.decode()!r} failed: {error}") from None
        try:
            reply = parse_reply(line)
        except ProtocolError as error:
            raise self._error(ProtocolError, f"{self._where}: {error} to {message.decode()!r}") from None
        if not isinstance(reply, Reply) or (reply.device, reply.axis) != (self.options.device, axis):
            raise self._error(ProtocolError, f"{self._where}: unexpected answer {line!r} to {message.decode()!r}")
        if reply.warning != self._warning:
            self._note_warning(reply.warning)
        if reply.rejected:
            reason = REJECTIONS.get(reply.data, "unknown reason")
            detail = f"; {value}" if value else ""
            raise self._error(_REJECTION_ERRORS.get(reply.data, DeviceStateError),
                              f"{self._where} rejected {message.decode()!r}: {reply.data} ({reason}){detail}")
        return reply

    def _note_warning(self, warning: str) -> None:
        """Log a new warning flag (WR: not homed; NI: a move was interrupted; notices at INFO)."""
        self._warning = warning
        if warning != "--":
            level = logging.INFO if warning.startswith("N") else logging.WARNING
            log.log(level, "axis %r: %s reports %s (%s)", self.name, self._where, warning,
                    WARNINGS.get(warning, "unknown flag"))

    def _begin(self, text: str, what: str, value: str = "") -> Status:
        """Send a movement command and return a Status that a poller thread completes.

        The previous move's Status fails ("superseded") only once the device has accepted this one.
        """
        self._command(text, value)
        status, cancel = Status(self.clock, f"axis {self.name!r}: {what}"), threading.Event()
        self._end_poller(f"superseded by {what}", status, cancel)
        threading.Thread(target=self._poll, args=(status, cancel, what), name=f"zaber-{self.name}-poll",
                         daemon=True).start()
        return status

    def _poll(self, status: Status, cancel: threading.Event, what: str) -> None:
        """Poll the axis status every poll interval until IDLE, a fault flag, an error or cancellation."""
        while not cancel.wait(self.options.poll_interval_s):
            try:
                reply = self._command("")
            except MicroCTError as error:
                status.set_done(type(error)(f"{what} failed: {error}"))
                return
            except Exception as error:  # whatever happens, the Status must end
                status.set_done(error)
                return
            if cancel.is_set():
                return
            if is_fault(reply.warning):
                status.set_done(self._error(DeviceFaultError, f"{what}: {self._where} reports {reply.warning} "
                                                              f"({WARNINGS.get(reply.warning, 'fault')})"))
                return
            if not reply.busy:
                status.set_done()
                return

    def _end_poller(self, why: str, status: Status | None = None, cancel: threading.Event | None = None) -> None:
        """Stop the running poller, failing its Status with ``why``; ``status``/``cancel`` take its place."""
        with self._lock:
            old_status, old_cancel = self._status, self._cancel
            self._status, self._cancel = status, cancel
        if old_cancel is not None:
            old_cancel.set()
        if old_status is not None:
            old_status.set_done(self._error(DeviceStateError, f"move did not complete: {why}"))

    # -- hooks -----------------------------------------------------------------------------------------
    def _do_connect(self) -> None:
        self._transport.open()
        try:
            self._serial_number = self._command("get system.serial", device_scope=True).data
        except BaseException:
            self._transport.close()
            raise

    def _do_close(self) -> None:
        self._end_poller("the connection was closed")
        self._transport.close()

    def _do_start_move(self, position: float) -> Status:
        steps = position_to_steps(position, self.stage)
        caps = self.capabilities
        return self._begin(f"move abs {steps}", f"move to {position:g} {self.unit}",
                           f"position {position:g} {self.unit} ({steps} microsteps); soft limits "
                           f"{caps.low_limit:g} to {caps.high_limit:g} {self.unit}")

    def _do_start_move_by(self, delta: float, target: float) -> Status:
        """``move rel``: the device adds the microsteps to its own position (sheet: ``/1 1 move rel -500``)."""
        steps = position_to_steps(delta, self.stage)
        caps = self.capabilities
        return self._begin(f"move rel {steps}", f"move by {delta:g} {self.unit}",
                           f"distance {delta:g} {self.unit} ({steps} microsteps) to {target:g} {self.unit}; soft "
                           f"limits {caps.low_limit:g} to {caps.high_limit:g} {self.unit}")

    def _do_start_home(self) -> Status:
        return self._begin("home", "home")

    def _do_stop(self) -> None:
        self._end_poller("stop() was called")
        self._command("stop")

    def _do_read_position(self) -> float:
        reply = self._command("get pos")
        try:
            return steps_to_position(int(reply.data), self.stage)
        except (ValueError, OverflowError):  # OverflowError: more microsteps than a float holds
            raise self._error(ProtocolError, f"{self._where}: position {reply.data!r} in the reply to "
                                             f"'get pos' is not a whole number of microsteps (within float "
                                             f"range)") from None

    def _do_set_velocity(self, velocity: float) -> None:
        data = speed_to_data(velocity, self.stage)
        self._command(f"set maxspeed {data}", f"velocity {velocity:g} {self.unit}/s ({data} data units); "
                                              f"allowed (0, {self.capabilities.max_velocity:g}] {self.unit}/s")

    def _do_describe(self) -> dict[str, Any]:
        return {**super()._do_describe(), "stage": self.options.stage, "device": self.options.device,
                "axis": self.options.axis, "serial_number": self._serial_number, "warning": self._warning}
