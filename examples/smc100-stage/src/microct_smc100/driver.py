"""``SMC100Axis``: a stage on a Newport SMC100CC/PP controller over RS-232 (or its USB adapter), and its
options.

Protocol facts are from the SMC100CC & SMC100PP User's Manual ("manual", cited by section title); see
PROTOCOL.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
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
    ErrorReply,
    ModelTableOptions,
    MoveEngine,
    ProtocolError,
    SerialSettings,
    SerialTransport,
    Status,
    Transport,
)
from microct_smc100.codec import (
    BAUDRATE,
    COMMAND_ERRORS,
    DISABLE,
    END_OF_RUN,
    HOMING,
    NO_ERROR,
    NOT_REFERENCED,
    READY,
    TERMINATOR,
    ControllerStatus,
    encode_command,
    parse_error_code,
    parse_error_text,
    parse_number,
    parse_reply,
    parse_status,
)
from microct_smc100.models import STAGES, StageModel

log = logging.getLogger("microct_smc100.driver")

SERIAL_DEFAULTS: dict[str, Any] = {"baudrate": BAUDRATE, "bytesize": 8, "parity": "N", "stopbits": 1,
                                   "xonxoff": True, "write_terminator": TERMINATOR.decode(),
                                   "read_terminator": TERMINATOR.decode()}
"""57600 8N1, XON/XOFF, CR LF both ways (manual, Serial Communication Settings)."""


class SMC100Options(ModelTableOptions):
    """Options of a stage on an SMC100. ``serial`` fields left out take SERIAL_DEFAULTS."""

    model_table: ClassVar = STAGES
    table_key: ClassVar = "stage"

    address: int = Field(default=1, ge=1, le=31, description="controller address (1: the one on the RS-232 "
                                                               "port; 2 to 31: behind it on the RS-485 link)")
    stage: str = Field(default="URS75BCC", description="the stage product, a key of the stage table: its unit, "
                       "speed, acceleration, travel, home position and ID? identifier (figures marked example "
                       "there: check them, and replace any with overrides)")
    serial: SerialSettings = Field(default_factory=SerialSettings, description="the serial line; what it leaves "
                                   "out takes the manual's 57600 baud 8N1, XON/XOFF and CR LF both ways")
    poll_interval_s: float = Field(default=0.02, gt=0, description="TS polls while a move or home search runs (s)")
    auto_reference: bool = Field(
        default=True, description="true: a move asked for while the controller is NOT REFERENCED (after power-up "
                                  "or an end of run) first runs the home search OR; false: such moves raise "
                                  "DeviceStateError until home(). Connect never homes (it moves nothing)")
    reset_timeout_s: float = Field(default=10.0, gt=0, description="longest reboot after RS, for home() (s); the "
                                                                   "manual gives under 5 s")

    def stage_model(self) -> StageModel:
        """The stage-table entry with the overrides."""
        stage: StageModel = self.table_entry()
        return stage

    def serial_settings(self) -> SerialSettings:
        """``serial`` with SERIAL_DEFAULTS for what it leaves out."""
        return self.serial.with_defaults(**SERIAL_DEFAULTS)


@dataclass
class _Plan:
    """What one move (a MoveEngine move) still has to do, step by step: "reset" (RS, then wait for the
    reboot), "home" (OR, then wait for READY), "motion" (PA or PR, then wait for READY)."""

    steps: list[str]
    motion: tuple[str, float] | None = None
    detail: str = ""
    step: str = ""
    deadline: float = 0.0


class SMC100Axis(Axis):
    """A stage on a Newport SMC100CC/PP. Positions in the stage unit (deg or mm), velocities in unit/s.

    Connect: ``ID?`` (stage identifier), ``VE`` (firmware), ``TS`` (state) and, once referenced, ``SL?``
    and ``SR?``, which narrow the configured soft limits: queries only, nothing moves or is set. The
    controller accepts moves only once referenced (manual, State Diagram): with ``auto_reference`` a move
    asked for while it is NOT REFERENCED runs the home search ``OR`` first. ``VA`` sends the velocity
    before the first move (once referenced).

    Every command that has no reply is followed by ``TE``, as the manual recommends (TE: ask for the
    command error after each command): a refused command raises ErrorReply with the code and its
    meaning. A move is ``PA`` (``PR`` for ``move_by``) + ``TE``, then one ``TS`` per poll until READY;
    MOVING and HOMING go on, positioner error bits (an end of run) or another state (DISABLE after a
    following error, NOT REFERENCED after an end of run) fail the move with DeviceFaultError. ``home()``
    is ``OR``; from READY or DISABLE the controller must be rebooted first (``RS``; manual, State
    Diagram), and the velocity is sent again after it. ``stop()`` is ``ST`` + ``TE``.

    The controller accepts PA and PR in READY only, so a move asked for while another runs is refused
    (ErrorReply): stop() first. Every message names the axis, the controller address and the command.
    """

    backend = "serial"
    Options = SMC100Options

    def __init__(self, name: str, options: SMC100Options | None = None, connection: str | None = "",
                 transport: Transport | None = None, clock: Clock | None = None) -> None:
        self.options = options or SMC100Options()
        self.stage = self.options.stage_model()
        stage = self.stage
        self._configured = AxisCapabilities(stage.unit, stage.max_velocity, stage.low_limit, stage.high_limit,
                                            stage.acceleration)
        super().__init__(name, self._configured, clock)
        if transport is None and not connection:
            raise ConfigurationError(f"axis {name!r}: an SMC100 axis needs a connection (serial port or URL)")
        self._transport = transport or SerialTransport(connection, self.options.serial_settings(), connection)
        self._address = self.options.address
        self._where = f"SMC100 controller {self._address}"
        self._engine = MoveEngine(self, self.options.poll_interval_s)
        self._referenced = False
        self._identifier = ""
        self._revision = ""

    # -- protocol --------------------------------------------------------------------------------------
    def _failed(self, error: Exception, message: bytes) -> Exception:
        """``error`` (a time-out, a lost link) of the exchange of ``message``, naming the axis and the command."""
        return self._error(type(error), f"{self._where}: {message.decode()!r} failed: {error}")

    def _query(self, command: str, value: str = "") -> str:
        """Send a query and return the value of its reply (after the echoed address and command)."""
        message = encode_command(self._address, command, value)
        try:
            line = self._transport.query(message)[0]
        except (DeviceTimeoutError, CommunicationError) as error:
            raise self._failed(error, message) from None
        try:
            return parse_reply(line, self._address, command)
        except ProtocolError as error:
            raise self._error(ProtocolError, f"{self._where}: {error} to {message.decode()!r}") from None

    def _write(self, message: bytes) -> None:
        try:
            self._transport.write(message)
        except (DeviceTimeoutError, CommunicationError) as error:
            raise self._failed(error, message) from None

    def _command(self, command: str, value: float | str = "", detail: str = "", ignore: str = "") -> None:
        """Send a command that has no reply, then ``TE`` in the same transaction (nobody else on the link
        gets between them); raise ErrorReply for an error code not in ``ignore``. ``detail`` (the value
        and the allowed range) goes into the error."""
        message = encode_command(self._address, command, value)
        with self._transport.transaction(message.decode()):
            self._write(message)
            code = self._error_code()
        if code == NO_ERROR:
            return
        if code in ignore:
            log.debug("axis %r: %s: %r: error %s ignored", self.name, self._where, message.decode(), code)
            return
        raise self._refusal(code, message.decode(), detail)

    def _error_code(self) -> str:
        value = self._query("TE")
        try:
            return parse_error_code(value)
        except ProtocolError as error:
            raise self._error(ProtocolError, f"{self._where}: {error} (reply to 'TE')") from None

    def _refusal(self, code: str, command: str, detail: str) -> ErrorReply:
        """The ErrorReply for ``code``: its meaning from the manual's table, or the controller's own
        explanation (TB) for a code the table lacks."""
        if code == "H":
            self._referenced = False
        meaning = COMMAND_ERRORS.get(code)
        if meaning is None:
            try:
                meaning = parse_error_text(self._query("TB", code), code)
            except (ProtocolError, DeviceTimeoutError, CommunicationError):
                meaning = "not in the manual's list"
        extra = f"; {detail}" if detail else ""
        return ErrorReply(code, meaning, command, message=f"{self.who}: {self._where} refused {command!r}: error "
                                                          f"{code} ({meaning}){extra}")

    def _read_status(self) -> ControllerStatus:
        """One ``TS``: the positioner errors (which the read clears) and the state."""
        value = self._query("TS")
        try:
            return parse_status(value)
        except ProtocolError as error:
            raise self._error(ProtocolError, f"{self._where}: {error} (reply to 'TS')") from None

    def _read_number(self, command: str, value: str = "") -> float:
        try:
            return parse_number(self._query(command, value), f"{command}{value}")
        except ProtocolError as error:
            raise self._error(ProtocolError, f"{self._where}: {error}") from None

    def _read_soft_limits(self) -> None:
        """Narrow the configured soft limits to the controller's (SL?, SR?), never widen them."""
        low, high = self._read_number("SL", "?"), self._read_number("SR", "?")
        self.capabilities = self._configured.narrowed(low, high, who=f"{self.who}: {self._where}",
                                                      source="the controller's (SL?, SR?)")

    # -- moves: a plan of steps run by the move engine -----------------------------------------------
    def _start_plan(self, what: str, plan: _Plan, target: float | None = None) -> Status:
        """Start ``plan`` as one move of the engine: its first step is sent now (raises if refused),
        each later step once a TS poll shows the one before ended."""
        return self._engine.start(what, lambda move: self._next_step(plan), target=target,
                                  poll=lambda move: self._poll(plan), poll_interval_s=self.options.poll_interval_s)

    def _next_step(self, plan: _Plan) -> None:
        plan.step = plan.steps.pop(0)
        if plan.step == "reset":  # a reboot: no TE (the controller is not listening), and it forgets the reference
            self._referenced = False
            self._write(encode_command(self._address, "RS"))
            plan.deadline = self.clock.monotonic() + self.options.reset_timeout_s
        elif plan.step == "home":
            self._command("OR")
        else:
            assert plan.motion is not None
            self._command(*plan.motion, detail=plan.detail)

    def _poll(self, plan: _Plan) -> bool:
        """One TS: False while the step runs, True when the last step has ended; raises DeviceFaultError
        for positioner errors or an unexpected state (the move fails)."""
        if plan.step == "reset":
            if not self._rebooted(plan):
                return False
        else:
            status = self._read_status()
            # a home search may pass an end-of-run switch: the state says how it ended (manual, State Diagram)
            errors = status.errors & ~END_OF_RUN if plan.step == "home" else status.errors
            if errors or not (status.busy or status.ready):
                self._referenced = status.referenced
                raise self._error(DeviceFaultError, f"{self._where} reports {status.describe()}")
            if status.busy:
                return False
            if plan.step == "home":
                self._homed()
        if not plan.steps:
            return True
        self._next_step(plan)
        return False

    def _rebooted(self, plan: _Plan) -> bool:
        """After RS: True once TS answers a NOT REFERENCED state; silence meanwhile is the reboot (manual,
        Initialization: under 5 s), up to ``reset_timeout_s``."""
        try:
            status = self._read_status()
        except DeviceTimeoutError:
            status = None
        if status is not None and status.state in NOT_REFERENCED:
            return True
        if self.clock.monotonic() > plan.deadline:
            seen = "no reply to TS" if status is None else status.describe()
            raise self._error(DeviceTimeoutError, f"{self._where} did not come back from its reset (RS) within "
                                                  f"{self.options.reset_timeout_s:g} s: {seen}")
        return False

    def _homed(self) -> None:
        """The home search ended in READY: send the held velocity again (a reboot forgets it) and read
        the controller's soft limits."""
        self._referenced = True
        self._command("VA", self.velocity, self._velocity_detail(self.velocity))
        self._read_soft_limits()

    def _motion_steps(self) -> list[str]:
        if self._referenced:
            return ["motion"]
        if not self.options.auto_reference:
            raise self._error(DeviceStateError, f"{self._where} is not referenced (NOT REFERENCED state): call "
                                                f"home() first, or set auto_reference")
        return ["home", "motion"]

    def _limits_detail(self) -> str:
        caps = self.capabilities
        return f"soft limits {caps.low_limit:g} to {caps.high_limit:g} {self.unit}"

    def _velocity_detail(self, velocity: float) -> str:
        return f"velocity {velocity:g} {self.unit}/s; the stage allows (0, {self.capabilities.max_velocity:g}] " \
               f"{self.unit}/s"

    # -- hooks -----------------------------------------------------------------------------------------
    def _do_connect(self) -> None:
        self._transport.open()
        self._identifier = self._query("ID", "?").strip()
        self._revision = self._query("VE").strip()
        if self._identifier != self.stage.identifier:
            log.warning("axis %r: %s reports stage %r, the configured model is %r (%s)", self.name, self._where,
                        self._identifier, self.stage.identifier, self.options.stage)
        status = self._read_status()
        if status.errors:
            log.warning("axis %r: %s reported at connect: %s", self.name, self._where, status.describe())
        self._referenced = status.referenced

    def _after_connect(self) -> None:
        """Read the soft limits once referenced (SL?, SR?). Connect moves and sets nothing: a NOT REFERENCED
        controller is homed by ``home()`` or, with ``auto_reference``, before its first move."""
        if self._referenced:
            self._read_soft_limits()
        elif not self.options.auto_reference:
            log.warning("axis %r: %s is not referenced: moves are refused until home()", self.name, self._where)
        super()._after_connect()

    def _do_close(self) -> None:
        self._engine.close()
        self._transport.close()

    def _do_start_move(self, position: float) -> Status:
        detail = f"position {position:g} {self.unit}; {self._limits_detail()}"
        return self._start_plan(f"move to {position:g} {self.unit}",
                                _Plan(self._motion_steps(), ("PA", position), detail), target=position)

    def _do_start_move_by(self, delta: float, target: float) -> Status:
        """``PR``: the controller adds ``delta`` to its target (manual, PR). Not referenced: a home search
        comes first, and then the absolute move to ``target``."""
        steps = self._motion_steps()
        if "home" in steps:
            return self._do_start_move(target)
        detail = f"distance {delta:g} {self.unit} to {target:g} {self.unit}; {self._limits_detail()}"
        return self._start_plan(f"move by {delta:g} {self.unit}", _Plan(steps, ("PR", delta), detail), target=target)

    def _do_start_home(self) -> Status:
        """``OR`` when NOT REFERENCED; from READY or DISABLE, ``RS`` first (OR is accepted in NOT
        REFERENCED only: manual, OR). DeviceStateError while the stage moves or is being configured."""
        status = self._read_status()
        if status.state in NOT_REFERENCED:
            steps = ["home"]
        elif status.state in READY or status.state in DISABLE:
            steps = ["reset", "home"]
        else:
            raise self._error(DeviceStateError, f"{self._where} cannot start a home search in {status.describe()}"
                                                f"{': stop() first' if status.busy else ''}")
        return self._start_plan("home search (OR)", _Plan(steps))

    def _do_stop(self) -> None:
        """End the running move, then ``ST``; the controller refuses ST where nothing moves (NOT
        REFERENCED, CONFIGURATION: errors H, I; D), which is ignored."""
        self._engine.stop()
        self._command("ST", ignore="DHI")

    def _do_read_position(self) -> float:
        return self._read_number("TP")

    def _do_read_referenced(self) -> bool:
        """One ``TS``: False in a NOT REFERENCED state (0A to 11: after power-up, a reset, an end of run),
        in CONFIGURATION and while a home search runs (HOMING); True otherwise (manual, State Diagram and TS,
        "Controller states"). The read clears the positioner errors (manual, TS): any are logged, as at
        connect."""
        status = self._read_status()
        if status.errors:
            log.warning("axis %r: %s reported: %s", self.name, self._where, status.describe())
        referenced = status.referenced and status.state not in HOMING
        if not status.busy:
            self._referenced = referenced
        return referenced

    def _do_set_velocity(self, velocity: float) -> None:
        """``VA``; held, and sent once referenced, while the controller is NOT REFERENCED (which refuses VA)."""
        if self._referenced:
            self._command("VA", velocity, self._velocity_detail(velocity))

    def _do_describe(self) -> dict[str, Any]:
        return {**super()._do_describe(), "stage": self.options.stage, "address": self._address,
                "identifier": self._identifier, "revision": self._revision, "referenced": self._referenced,
                "soft_limits": (self.capabilities.low_limit, self.capabilities.high_limit)}

