"""Wire-level SMC100: one controller and its stage, served over a pty or TCP (``microct sim serve smc100``).

The stage is a ``SimulatedAxis`` (microct.testing.simulation) in real time, built from the stage table
(``models``); requests are parsed and replies formatted with the package's codec, so protocol and stage
are modelled once (the driver is not imported). What the controller does follows the SMC100CC & SMC100PP
User's Manual ("manual"; see PROTOCOL.md):

- it starts NOT REFERENCED (0A); ``OR`` (home search) is accepted there only and ends READY from HOMING
  (32) at the stage's home position; ``PA``/``PR`` are accepted in READY only; a move runs in MOVING (28)
  and ends READY from MOVING (33) (manual, State Diagram);
- setters get no reply; a refused command memorises its error code for ``TE`` (manual, TE), which is the
  code of the state that refuses it (H NOT REFERENCED, J DISABLE, K READY, L HOMING, M MOVING; PA and PR in
  MOVING or HOMING: D, as the PA and PR error lists name no state code for them: an assumption), G for a
  target beyond the soft limits SL/SR, C for a missing or bad value, E for OR during a home search,
  A for a command this simulator does not know;
- ``TS`` reports the positioner error bits (cleared by the read) and the state; a limit switch struck on
  the stage (``SimulatedAxis.strike("limit_switch")``) is an end of run: the move is aborted, the end-of-run
  bit of its direction is set and the controller goes NOT REFERENCED from MOVING (0F) (manual, State
  Diagram, "End of Runs encountered"); a stall leaves the move MOVING until ``ST``;
- ``SimulatedAxis.refuse_moves`` puts a READY controller in DISABLE from READY (3C), as ``MM0`` does; PA and
  PR are then refused with J; it comes back READY from DISABLE (34);
- ``RS`` reboots it: no replies for ``reset_s`` (the manual gives under 5 s), then NOT REFERENCED from reset
  (0A) with the working velocity and soft limits back at their configured values;
- ``TS``, ``TP``, ``TE``, ``VE`` are answered with or without a trailing "?" (the manual writes them without,
  public clients send it); queries (``ID?``, ``VA?``, ``SL?``, ``SR?``) are answered in every state.

Faults (``FaultSchedule`` of microct.testing.simulation): the stage plays the role ``role`` (default "rotation") and
takes its stalls and limit switches; served by a ``WireServer`` given the same schedule, the lines
addressed to this controller meet its request faults (``fault_device``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from microct.driverkit import ProtocolError
from microct.testing.simulation import (
    FaultSchedule,
    SimulatedAxis,
    SimulatedAxisOptions,
    WireSimulator,
    stopped_by_limit_switch,
)
from microct_smc100.codec import (
    COMMAND_ERRORS,
    CONFIGURATION,
    DISABLE,
    HOMING,
    MOVING,
    NEGATIVE_END_OF_RUN,
    NO_ERROR,
    NOT_REFERENCED,
    POSITIVE_END_OF_RUN,
    READY,
    TERMINATOR,
    ControllerStatus,
    Request,
    format_number,
    format_reply,
    format_status,
    parse_request,
)
from microct_smc100.models import stage_model

REVISION = "SMC_CC - Controller-driver version 3.0.x (microct simulator)"
"""What VE answers (after a space, as the manual's VE example shows)."""
SMALLEST_VALUE = 1e-6
"""VA takes values > 1e-6 (manual, VA)."""


class SMC100SimulatorOptions(BaseModel):
    """The ``-O`` options of ``microct sim serve smc100`` (all optional)."""

    model_config = ConfigDict(extra="forbid")
    stage: str = "URS75BCC"
    overrides: dict[str, Any] = Field(default_factory=dict, description="StageModel fields replacing the model's")
    address: int = Field(default=1, ge=1, le=31)
    soft_limits: tuple[float, float] | None = Field(
        default=None, description="the controller's configured SL, SR (unit); default: the stage model's")
    initial_position: float = 0.0
    reset_s: float = Field(default=0.5, ge=0, description="reboot time after RS, without replies (s)")
    role: str = Field(default="rotation", description="the stage's device name in a FaultSchedule")


class SMC100Responder:
    """One SMC100 and its stage. ``options``: SMC100SimulatorOptions fields; ``clock``: the stage's clock
    (default: real time); ``faults``: the schedule the stage joins as ``role``. ``axis`` is the
    SimulatedAxis, for tests (``fault_hook()``, the true position)."""

    request_terminators = TERMINATOR

    def __init__(self, clock: Any = None, faults: FaultSchedule | None = None, **options: Any) -> None:
        self.options = SMC100SimulatorOptions(**options)
        opts = self.options
        self.stage = stage_model(opts.stage, opts.overrides)
        self.address = opts.address
        self.configured_limits = opts.soft_limits or (self.stage.low_limit, self.stage.high_limit)
        if not self.configured_limits[0] <= 0 <= self.configured_limits[1]:
            raise ValueError(f"soft_limits={self.configured_limits}: SL must be <= 0 and SR >= 0 (manual, SL, SR)")
        self.axis = SimulatedAxis(opts.role, SimulatedAxisOptions(
            unit=self.stage.unit, max_velocity=self.stage.max_velocity, acceleration=self.stage.acceleration,
            initial_position=opts.initial_position, home_position=self.stage.home_position),
            clock=clock, faults=faults)
        self.axis.connect()  # in-process: nothing to open
        self.clock = self.axis.clock
        self._booting_until = 0.0
        self._power_up()
        self._handlers = {"TS": self._ts, "TP": self._tp, "TE": self._te, "TB": self._tb, "VE": self._ve,
                          "ID": self._id, "VA": self._va, "SL": self._sl, "SR": self._sr, "PA": self._pa,
                          "PR": self._pr, "OR": self._or, "ST": self._st, "RS": self._rs, "MM": self._mm}

    def _power_up(self) -> None:
        """The state after power-up or RS (manual, Initialization): NOT REFERENCED from reset."""
        self.state = "0A"
        self.errors = 0
        self.error = NO_ERROR
        self.velocity = self.stage.max_velocity
        self.axis.set_velocity(self.velocity)
        self.low_limit, self.high_limit = self.configured_limits
        self.target = self.axis.true_position()
        self._motion = None
        self._homing = False
        self._upward = True
        self._disabled = False

    # -- the wire ----------------------------------------------------------------------------------------
    def respond(self, line: bytes) -> list[bytes]:
        """The reply to one command line (none for a setter, a refused command, another address, a line
        that is not a command, or while rebooting)."""
        if self.clock.monotonic() < self._booting_until:
            return []
        try:
            request = parse_request(line)
        except ProtocolError:
            return []
        if request.address not in (None, self.address):
            return []
        self._settle()
        if request.address is None and request.command not in ("ST", "MM"):  # the others need an address
            self.error = "B"
            return []
        handler = self._handlers.get(request.command)
        if handler is None:
            self.error = "A"
            return []
        value = handler(request)
        return [] if value is None else [format_reply(self.address, request.command, value)]

    def fault_device(self, line: bytes) -> str | None:
        """The stage's role for a line addressed to this controller (or to every one); else None."""
        try:
            address = parse_request(line).address
        except ProtocolError:
            return None
        return self.options.role if address in (None, self.address) else None

    # -- state -------------------------------------------------------------------------------------------
    def _settle(self) -> None:
        """Bring the state up to date with the stage: a move or home search that ended, DISABLE."""
        motion = self._motion
        if motion is not None and motion.done:
            self._motion = None
            if stopped_by_limit_switch(motion):  # an end of run: abort, NOT REFERENCED (manual, State Diagram)
                self.errors |= POSITIVE_END_OF_RUN if self._upward else NEGATIVE_END_OF_RUN
                self.state = "0B" if self._homing else "0F"
            elif motion.error is None:
                self.state = "32" if self._homing else "33"
            else:  # stopped (ST)
                self.state = "0B" if self._homing else "33"
            if motion.error is not None:
                self.target = self.axis.true_position()
        disabled = self._disabled or self.axis.refuse_moves
        if disabled and self.state in READY:
            self.state = "3C"
        elif not disabled and self.state == "3C":
            self.state = "34"

    def _state_error(self) -> str:
        """The code of the state that refuses a command (manual, TE list)."""
        for states, code in ((NOT_REFERENCED, "H"), (CONFIGURATION, "I"), (DISABLE, "J"), (READY, "K"),
                             (HOMING, "L"), (MOVING, "M")):
            if self.state in states:
                return code
        return "D"

    def _refuse(self, code: str) -> None:
        self.error = code

    def _number(self, request: Request) -> float | None:
        """The request's value as a number, or None (error C memorised)."""
        try:
            return float(request.value)
        except ValueError:
            self._refuse("C")
            return None

    def _start_motion(self, target: float, homing: bool) -> None:
        self._upward = target >= self.axis.true_position()
        if homing:  # the home search runs at the stage's top speed; VA is for the moves after it
            self.axis.set_velocity(self.stage.max_velocity)
        self._motion = self.axis.start_move_to(target)
        if homing:
            self.axis.set_velocity(self.velocity)
        self._homing = homing
        self.target = target
        self.state = "1E" if homing else "28"

    # -- commands: each returns the reply's value, or None for no reply -----------------------------------
    def _ts(self, request: Request) -> str:
        value = format_status(ControllerStatus(self.errors, self.state))
        self.errors = 0  # reading clears the positioner errors (manual, TS, notes)
        return value

    def _tp(self, request: Request) -> str:
        return format_number(self.axis.read_position())

    def _te(self, request: Request) -> str:
        code, self.error = self.error, NO_ERROR
        return code

    def _tb(self, request: Request) -> str | None:
        code = request.value.upper()
        if not code:
            code, self.error = self.error, NO_ERROR
        if code not in COMMAND_ERRORS:
            self._refuse("C")
            return None
        return f"{code} {COMMAND_ERRORS[code]}"

    def _ve(self, request: Request) -> str:
        return f" {REVISION}"

    def _id(self, request: Request) -> str | None:
        if request.query:
            return self.stage.identifier
        self._refuse(self._state_error())  # settable in CONFIGURATION only, which is not simulated
        return None

    def _va(self, request: Request) -> str | None:
        if request.query:
            return format_number(self.velocity)
        if self.state not in READY and self.state not in DISABLE:
            self._refuse(self._state_error())
            return None
        velocity = self._number(request)
        if velocity is None:
            return None
        if not SMALLEST_VALUE < velocity <= self.stage.max_velocity:  # up to the configured maximum (manual, VA)
            self._refuse("C")
            return None
        self.velocity = velocity
        self.axis.set_velocity(velocity)
        return None

    def _limit(self, request: Request, high: bool) -> str | None:
        if request.query:
            return format_number(self.high_limit if high else self.low_limit)
        if self.state not in READY and self.state not in DISABLE:
            self._refuse(self._state_error())
            return None
        value = self._number(request)
        if value is None:
            return None
        # SL <= 0 <= SR, and the set-point position stays within them (manual, SL, SR)
        valid = max(0.0, self.target) <= value < 1e12 if high else -1e12 < value <= min(0.0, self.target)
        if not valid:
            self._refuse("C")
            return None
        if high:
            self.high_limit = value
        else:
            self.low_limit = value
        return None

    def _sl(self, request: Request) -> str | None:
        return self._limit(request, high=False)

    def _sr(self, request: Request) -> str | None:
        return self._limit(request, high=True)

    def _move(self, target_of: Any, request: Request) -> None:
        if self.state not in READY:
            self._refuse("D" if self.state in MOVING or self.state in HOMING else self._state_error())
            return
        value = self._number(request)
        if value is None:
            return
        target = target_of(value)
        if not self.low_limit <= target <= self.high_limit:
            self._refuse("G")
            return
        self._start_motion(target, homing=False)

    def _pa(self, request: Request) -> None:
        self._move(lambda position: position, request)

    def _pr(self, request: Request) -> None:
        self._move(lambda displacement: self.target + displacement, request)  # from the target (manual, PR)

    def _or(self, request: Request) -> None:
        if self.state in HOMING:
            self._refuse("E")
        elif self.state not in NOT_REFERENCED:
            self._refuse(self._state_error())
        elif self.axis.refuse_moves:
            self._refuse("D")
        else:
            self._start_motion(self.stage.home_position, homing=True)

    def _st(self, request: Request) -> None:
        if self._motion is not None:
            self.axis.stop()
            self._settle()
        elif self.state not in READY and self.state not in DISABLE:
            self._refuse(self._state_error())

    def _rs(self, request: Request) -> None:
        if self._motion is not None:
            self.axis.stop()
        self._power_up()
        self._booting_until = self.clock.monotonic() + self.options.reset_s

    def _mm(self, request: Request) -> str | None:
        if request.query:
            return "0" if self.state in DISABLE else "1"
        if request.value == "0" and self.state in READY:
            self._disabled = True
        elif request.value == "1" and self.state in DISABLE:
            self._disabled = False
        elif request.value not in ("0", "1"):
            self._refuse("C")
        elif self.state not in DISABLE and self.state not in READY:
            self._refuse(self._state_error())
        self._settle()
        return None


SIMULATOR = WireSimulator(SMC100Responder, "Newport SMC100CC/PP single-axis motion controller with a URS75BCC "
                                           "rotation stage (RS-232; -O stage=ILS100CC for a linear one)",
                          options=SMC100SimulatorOptions)
"""What ``microct sim serve smc100`` serves (entry-point group ``microct.simulators``)."""
