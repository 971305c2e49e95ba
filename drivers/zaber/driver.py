"""``ZaberAxis``: one axis of a Zaber stage over the ASCII protocol, and its options.

Several ZaberAxis on one serial port are one daisy chain: each talks to its own device address through a
transport sharing the port and its lock. Protocol facts: docs/protocols/zaber-ascii.md ("sheet") and
Zaber's ASCII protocol manual ("manual").
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from pydantic import Field

from microct.driverkit import (
    Axis,
    AxisCapabilities,
    Clock,
    CommunicationError,
    ConfigurationError,
    DeviceFaultError,
    DeviceStateError,
    DeviceTimeoutError,
    Finding,
    LimitError,
    MicroCTError,
    ModelTableOptions,
    Move,
    MoveEngine,
    ProtocolError,
    SerialSettings,
    SerialTransport,
    Status,
    Transport,
)
from microct.drivers.zaber.codec import (
    COMMAND_TERMINATOR,
    NOT_HOMED,
    REJECTIONS,
    REPLY_TERMINATOR,
    WARNINGS,
    Reply,
    encode_command,
    flag_level,
    homed_from_flag,
    is_fault,
    parse_reply,
    parse_warnings,
    position_to_steps,
    speed_to_data,
    steps_to_position,
)
from microct.drivers.zaber.models import STAGES, StageModel

log = logging.getLogger("microct.drivers.zaber")

_REJECTION_ERRORS: dict[str, type[MicroCTError]] = {
    "BADDATA": LimitError, "BADCOMMAND": ProtocolError, "BADAXIS": ProtocolError,
    "BADMESSAGEID": ProtocolError, "DEVICEONLY": ProtocolError,
}
"""Error class per rejection reason; any other reason is a DeviceStateError (parked, busy, ...)."""


class ZaberOptions(ModelTableOptions):
    """Options of one Zaber axis. ``serial`` fields left out take the stage model's defaults
    (its baud rate; LF out, CR LF in)."""

    model_table: ClassVar = STAGES
    table_key: ClassVar = "stage"

    device: int = Field(default=1, ge=1, le=99, description="device address in the daisy chain")
    axis: int = Field(default=1, ge=1, le=9, description="axis number on the device (1 on a single-axis device); "
                                                        "device-scope commands go to axis 0")
    stage: str = Field(default="X-RSW60A", description="the stage product, a key of the stage table: its unit, "
                       "microstep size, speed, soft limits and baud rate (replace any with overrides)")
    checksums: bool = Field(default=False, description="append the ':XX' checksum to every command (the device "
                            "does not execute a command whose checksum fails); a reply's checksum is verified "
                            "whenever it has one")
    serial: SerialSettings = Field(default_factory=SerialSettings, description="the serial line; what it leaves "
                                   "out takes the stage model's baud rate, LF out and CR LF in")
    poll_interval_s: float = Field(default=0.02, gt=0, description="status polls while a move runs (s)")

    def stage_model(self) -> StageModel:
        """The stage-table entry with the overrides."""
        stage: StageModel = self.table_entry()
        return stage

    def serial_settings(self) -> SerialSettings:
        """``serial`` with the device's defaults for what it leaves out: the stage's baud rate, LF out
        (sheet, "Framing"), CR LF in."""
        return self.serial.with_defaults(baudrate=self.stage_model().baudrate,
                                         write_terminator=COMMAND_TERMINATOR.decode(),
                                         read_terminator=REPLY_TERMINATOR.decode())


class ZaberAxis(Axis):
    """One axis of a Zaber stage (ASCII protocol). Positions in the stage unit (deg or mm), velocities
    in unit/s. Commands: a move is ``move abs`` (``move rel`` for ``move_by``, after the ``get pos``
    that checks the soft limits) plus one status poll (``/d a``) per poll interval until IDLE; home is
    ``home`` polled the same way; stop is ``stop``; a position read is one ``get pos``; ``read_referenced``
    is one status poll (its WR / WH flag), plus ``warnings`` if a higher flag hides them.

    Failures: a rejected command raises (BADDATA: LimitError naming the value and the soft limits;
    BADCOMMAND and other protocol reasons: ProtocolError; parked, busy ...: DeviceStateError); a fault
    flag (F*, or WL: unexpected limit trigger) while polling fails the move with DeviceFaultError, after
    a ``warnings clear`` (see ``_poll``); no reply is a DeviceTimeoutError, a garbled one a ProtocolError.
    Every message names the axis, the device and the command.
    """

    backend = "serial"
    Options = ZaberOptions

    def __init__(self, name: str, options: ZaberOptions | None = None, connection: str | None = "",
                 transport: Transport | None = None, clock: Clock | None = None) -> None:
        self.options = options or ZaberOptions()
        self.stage = self.options.stage_model()
        stage = self.stage
        super().__init__(name, AxisCapabilities(stage.unit, stage.max_speed, stage.low_limit, stage.high_limit,
                                                stage.acceleration), clock)
        if transport is None:
            if not connection:
                raise ConfigurationError(f"axis {name!r}: a Zaber axis needs a connection (serial port or URL)")
            transport = SerialTransport(connection, self.options.serial_settings(), connection)
        self._transport = transport
        self._where = f"Zaber device {self.options.device} axis {self.options.axis}"
        self._engine = MoveEngine(self, self.options.poll_interval_s)
        self._warning = "--"
        self._serial_number = ""

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
        """Log a new warning flag (NI: a move was interrupted; notices at INFO). WR and WH (home needed) at
        INFO too: homing is the axis table's ``home`` setting's job (``microct.homing``), which warns of an
        axis left without a reference."""
        self._warning = warning
        if warning != "--":
            level = logging.INFO if warning.startswith("N") or warning in NOT_HOMED else logging.WARNING
            log.log(level, "axis %r: %s reports %s (%s)", self.name, self._where, warning,
                    WARNINGS.get(warning, "unknown flag"))

    # -- moves -----------------------------------------------------------------------------------------
    def _start(self, text: str, what: str, value: str = "") -> Status:
        """Send the movement command ``text`` through the move engine, which polls the status until IDLE.
        ``value`` (what was asked, and the allowed range) goes into the error if the device rejects it."""
        return self._engine.start(what, lambda move: self._command(text, value), poll=self._poll,
                                  poll_interval_s=self.options.poll_interval_s)

    def _poll(self, move: Move) -> bool:
        """One status poll (``/d a``): True once IDLE; DeviceFaultError for a fault flag.

        Fault flags (FS, FE, WL ...) persist on the device until ``warnings clear`` (manual, "Warning
        Flags"; docs/protocols/zaber-ascii.md, "Known traps"): left set, every later move would fail at
        its first poll. The driver clears them here, once it has seen the flag and before the move's
        Status fails with it: each fault is reported exactly once, as the failure of the move it ended,
        and the device is clear by the time the caller learns of it, so the next move (from this or any
        client) works. Clearing before each movement command instead would cost an exchange per move, or
        clear flags that no failed move reported (set before connect, or by another client)."""
        reply = self._command("")
        if is_fault(reply.warning):
            raise self._error(DeviceFaultError, f"{self._where} reports {reply.warning} "
                                                f"({WARNINGS.get(reply.warning, 'fault')}){self._clear_warnings()}")
        return not reply.busy

    def _clear_warnings(self) -> str:
        """Send ``warnings clear``; what to add to the fault's message (nothing, or why it failed: the
        fault is still the error to report)."""
        try:
            reply = self._command("warnings clear")
        except MicroCTError as error:
            log.warning("axis %r: %s: could not clear the warning flags: %s", self.name, self._where, error)
            return f" (and clearing it with 'warnings clear' failed: {error})"
        log.info("axis %r: %s: warning flags cleared (were: %s)", self.name, self._where, reply.data)
        return ""

    # -- hooks -----------------------------------------------------------------------------------------
    def _do_connect(self) -> None:
        self._transport.open()
        self._serial_number = self._command("get system.serial", device_scope=True).data

    def _do_close(self) -> None:
        self._engine.close()
        self._transport.close()

    def _do_start_move(self, position: float) -> Status:
        steps = position_to_steps(position, self.stage)
        caps = self.capabilities
        return self._start(f"move abs {steps}", f"move to {position:g} {self.unit}",
                           f"position {position:g} {self.unit} ({steps} microsteps); soft limits "
                           f"{caps.low_limit:g} to {caps.high_limit:g} {self.unit}")

    def _do_start_move_by(self, delta: float, target: float) -> Status:
        """``move rel``: the device adds the microsteps to its own position (sheet: ``/1 1 move rel -500``)."""
        steps = position_to_steps(delta, self.stage)
        caps = self.capabilities
        return self._start(f"move rel {steps}", f"move by {delta:g} {self.unit}",
                           f"distance {delta:g} {self.unit} ({steps} microsteps) to {target:g} {self.unit}; soft "
                           f"limits {caps.low_limit:g} to {caps.high_limit:g} {self.unit}")

    def _do_start_home(self) -> Status:
        return self._start("home", "home")

    def _do_stop(self) -> None:
        self._engine.stop()
        self._command("stop")

    def _do_read_referenced(self) -> bool:
        """False while the device shows WR (no reference position) or WH (not homed): a status poll, and
        ``warnings`` (every active flag) only when the poll shows a flag that may hide them (manual,
        "Warning Flags": a reply shows the highest active flag)."""
        homed = homed_from_flag(self._command("").warning)
        if homed is not None:
            return homed
        reply = self._command("warnings")
        try:
            return not NOT_HOMED & set(parse_warnings(reply.data))
        except ProtocolError as error:
            raise self._error(ProtocolError, f"{self._where}: {error} (reply to 'warnings')") from None

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

    def _do_check(self) -> list[Finding]:
        """Every active warning flag (``warnings``, a query) with its meaning (codec ``WARNINGS``), judged by
        ``flag_level``: a fault or WL is an error, WR (no reference position) a warning, a notice ok."""
        reply = self._command("warnings")
        try:
            flags = parse_warnings(reply.data)
        except ProtocolError as error:
            raise self._error(ProtocolError, f"{self._where}: {error} (reply to 'warnings')") from None
        found = [Finding(flag_level(flag), "warning", f"{flag}: {WARNINGS.get(flag, 'unknown flag')}")
                 for flag in flags]
        return [*super()._do_check(), *(found or [Finding("ok", "warning", "none (--)")])]
