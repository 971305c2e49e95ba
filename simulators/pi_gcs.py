"""Wire-level PI controller: GCS 2 served over a pty or TCP (see ``microct sim serve pi``).

Each axis is a SimulatedAxis (real time) built from the vendor's stage table
(``microct.drivers.pi_gcs.models``); requests are parsed, replies formatted and error codes named with the
vendor's codec (``microct.drivers.pi_gcs.codec``), so stage and protocol are modelled once (the driver is
not imported). Behaviour follows the protocol fact sheet (docs/protocols/pi-gcs.md):

- an error register that ``ERR?`` reads and clears; it keeps the last error;
- unknown commands set error 2, bad arguments error 1, an unknown axis error 15, an out-of-range velocity
  error 17, a move beyond TMN?/TMX? error 7, a move or reference move with the servo off error 5, and,
  with ``require_reference``, a move before the axis is referenced error 5; a refused command changes
  nothing, and a refused query gets no reply;
- ``HLT``, ``STP`` and byte 0x18 stop motion and set error 10;
- queries without axes, or with several, answer one ``axis=value`` line per axis, all but the last
  ending in " LF";
- byte 0x05 answers the moving-axes mask in hex (bit 0: the first axis), byte 0x07 answers 0xB0 (busy)
  while a reference move runs and 0xB1 (ready) otherwise.
Axes start with the servo off and not referenced, at position 0; ``FRF`` moves to the stage's
reference position; ``MVR`` adds to the last commanded target.

Faults (``microct.simulators.faults``, or a fault contract's hook on an axis' SimulatedAxis): each axis
plays the role ``roles`` names (default: axis 1 "rotation", axis 2 "sample_out") and takes that role's
stage stalls (the move never ends: ``ONT?`` 0 until halted or replaced) and limit switches (the move ends
short and the error register reads 216, ``codec.ON_LIMIT_SWITCH``, PI_CNTR_ON_LIMIT_SWITCH in PI's GCS error
list). While the SimulatedAxis refuses moves (``refuse_moves``) the axis plays one whose servo is off:
``MOV``, ``MVR`` and ``FRF`` set error 5, "move without reference or with servo off" (sheet, "Error codes":
MOVE_WITHOUT_REF_OR_NO_SERVO), and nothing moves. Served by a ``WireServer`` given a schedule, the lines
naming an axis, and an ``ERR?`` after them, meet that axis' request faults (``fault_device``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from microct.clock import Clock
from microct.devices.base import Status
from microct.drivers.pi_gcs.codec import (
    INVALID_AXIS,
    MOVING_MASK,
    NO_REFERENCE_OR_SERVO,
    ON_LIMIT_SWITCH,
    PARAMETER_OUT_OF_RANGE,
    PARAMETER_SYNTAX,
    POSITION_OUT_OF_LIMITS,
    READY_QUERY,
    STOP_ALL,
    STOPPED,
    TERMINATOR,
    UNKNOWN_COMMAND,
    format_line,
    format_moving_mask,
    format_number,
    format_ready,
    format_values,
    parse_command,
    parse_pairs,
)
from microct.drivers.pi_gcs.models import StageModel, stage_model
from microct.errors import ProtocolError
from microct.simulators.axis import SimulatedAxis, SimulatedAxisOptions
from microct.simulators.faults import FaultSchedule
from microct.simulators.wire import WireSimulator, stopped_by_limit_switch

INSTANT_ACCELERATION = 1e9
"""unit/s², used when the stage table does not know the acceleration (moves then run at full speed)."""

IDENTIFICATION = "microct, PI GCS 2 wire simulator, 0, 1.0"
"""The ``*IDN?`` reply: maker, model, serial number, firmware."""

ROLES = {"1": "rotation", "2": "sample_out"}
"""The role (fault device) of each axis by default; other axes play ``pi-<axis>``."""
DEFAULT_STAGES = ("U-651", "L-509.40")
"""The stage model of each address (axis) by default: a rotary stage, then a linear one."""


class Refused(Exception):
    """A command the controller refuses; ``code`` goes to the error register."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class ControllerAxis:
    """One axis of the controller: servo and reference state, soft limits, and the simulated stage."""

    def __init__(self, axis_id: str, stage: StageModel, clock: Clock, role: str = "",
                 faults: FaultSchedule | None = None) -> None:
        self.id = axis_id
        self.stage = stage
        self.role = role or f"pi-{axis_id}"
        self.low_limit = stage.low_limit
        """TMN?; tests may narrow it (not widen: the stage's own limits still hold) to play a controller
        configured differently from the driver."""
        self.high_limit = stage.high_limit
        """TMX?"""
        self.axis = SimulatedAxis(self.role, SimulatedAxisOptions(
            unit=stage.unit, max_velocity=stage.max_velocity, low_limit=stage.low_limit,
            high_limit=stage.high_limit, acceleration=stage.acceleration or INSTANT_ACCELERATION), clock=clock,
            faults=faults)
        self.axis.connect()  # in-process: nothing to open
        self.servo = False
        self.target = self.axis.options.initial_position
        """The last commanded target (MVR adds to it)."""
        self._referenced = False
        self._motion: Status | None = None
        self._referencing: Status | None = None

    @property
    def moving(self) -> bool:
        return self._motion is not None and not self._motion.done

    @property
    def may_move(self) -> bool:
        """Servo on, and the stage not refusing moves (a fault hook's refusal plays the servo off)."""
        return self.servo and not self.axis.refuse_moves

    @property
    def referencing(self) -> bool:
        return self._referencing is not None and not self._referencing.done

    @property
    def referenced(self) -> bool:
        if self._referencing is not None and self._referencing.done:
            self._referenced, self._referencing = True, None
        return self._referenced

    def limit_switch_news(self) -> bool:
        """True once after the axis' move ended on a limit switch."""
        if self._motion is None or not stopped_by_limit_switch(self._motion):
            return False
        self._motion = None
        return True

    def move_to(self, position: float) -> None:
        """Start a move; it interrupts a reference move, which then leaves the axis not referenced."""
        self.target = position
        self._referencing = None
        self._motion = self.axis.start_move_to(position)

    def reference(self) -> None:
        self._referenced = False
        self.target = self.stage.reference_position
        self._referencing = self._motion = self.axis.start_move_to(self.target)

    def halt(self) -> None:
        """Stop where the axis is (the new target); an interrupted reference move leaves the axis not
        referenced."""
        if self.moving:
            self._referencing = None
            self.axis.stop()
            self.target = self.axis.read_position()


class PIResponder:
    """A PI controller with one axis per entry of ``stages`` (axis identifiers "1", "2", ...; default: a
    rotary U-651 as axis 1, a linear L-509.40 as axis 2). ``overrides`` maps an axis identifier (str or int)
    to StageModel fields replacing its model's, as a driver's options do. ``require_reference``: moves
    before a reference move are refused with error 5."""

    request_terminators = TERMINATOR
    single_byte_commands = MOVING_MASK + READY_QUERY + STOP_ALL

    def __init__(self, stages: Sequence[str] = DEFAULT_STAGES, overrides: dict[Any, dict[str, Any]] | None = None,
                 require_reference: bool = True, clock: Clock | None = None, faults: FaultSchedule | None = None,
                 roles: Mapping[Any, str] = ROLES) -> None:
        overrides = {str(axis): fields for axis, fields in (overrides or {}).items()}
        roles = {str(axis): role for axis, role in (roles or ROLES).items()}
        clock = clock or Clock()
        self.require_reference = require_reference
        self.controller_axes = {str(i): ControllerAxis(str(i), stage_model(name, overrides.get(str(i))), clock,
                                                       roles.get(str(i), ""), faults)
                                for i, name in enumerate(stages or DEFAULT_STAGES, start=1)}
        """Controller state by axis identifier, for tests (soft limits, servo, reference)."""
        self.axes: dict[str, SimulatedAxis] = {axis_id: state.axis for axis_id, state in self.controller_axes.items()}
        """The inner simulated axes by axis identifier, for tests (a position check)."""
        self.error = 0
        """The error register (``ERR?`` reads and clears it)."""
        self._last_axis: ControllerAxis | None = None  # the axis the last line named (fault_device)
        self._commands: dict[str, Callable[[list[str]], list[bytes]]] = {
            "*IDN?": self._identify, "ERR?": self._read_error, "MOV": self._move, "MVR": self._move_relative,
            "POS?": self._position, "ONT?": self._on_target, "SVO": self._servo, "FRF": self._reference,
            "FRF?": self._is_referenced, "VEL": self._set_velocity, "VEL?": self._velocity, "HLT": self._halt,
            "STP": self._stop_all, "TMN?": self._low_limit, "TMX?": self._high_limit}

    def respond(self, line: bytes) -> list[bytes]:
        """The replies to one request line, or to one single-byte command."""
        news = [state.limit_switch_news() for state in self.controller_axes.values()]  # every axis', not the first
        if any(news):
            self.error = ON_LIMIT_SWITCH
        if line == MOVING_MASK:
            return [format_moving_mask([state.moving for state in self.controller_axes.values()])]
        if line == READY_QUERY:
            return [format_ready(any(state.referencing for state in self.controller_axes.values()))]
        if line == STOP_ALL:
            return self._halt([])
        try:
            name, args = parse_command(line)
        except ProtocolError:
            self.error = PARAMETER_SYNTAX
            return []
        if name != "ERR?":
            self._last_axis = self.controller_axes.get(args[0]) if args else None
        command = self._commands.get(name)
        if command is None:
            self.error = UNKNOWN_COMMAND
            return []
        try:
            return command(args)
        except Refused as refused:
            self.error = refused.code
            return []

    def fault_device(self, line: bytes) -> str | None:
        """The role of the axis the line just answered names first, or for ``ERR?`` the axis the line
        before it named (it reports on that command); None for lines naming no axis (``*IDN?``, bytes)."""
        return None if self._last_axis is None or line in self.single_byte_commands else self._last_axis.role

    # -- arguments ------------------------------------------------------------------------------------
    def _axes(self, ids: list[str]) -> list[ControllerAxis]:
        """The axes named (every axis if none); error 15 for an unknown identifier."""
        if not ids:
            return list(self.controller_axes.values())
        if any(axis_id not in self.controller_axes for axis_id in ids):
            raise Refused(INVALID_AXIS)
        return [self.controller_axes[axis_id] for axis_id in ids]

    def _pairs(self, args: list[str]) -> list[tuple[ControllerAxis, float]]:
        """``axis value [axis value ...]`` → (axis, value) pairs; error 1 for a bad list, 15 for an unknown axis."""
        try:
            pairs = parse_pairs(args)
        except ProtocolError:
            raise Refused(PARAMETER_SYNTAX) from None
        axes = self._axes([axis_id for axis_id, _ in pairs])
        return [(state, value) for state, (_, value) in zip(axes, pairs, strict=True)]

    @staticmethod
    def _values(axes: list[ControllerAxis], value: Callable[[ControllerAxis], str]) -> list[bytes]:
        return [format_values({state.id: value(state) for state in axes})]

    # -- commands: each takes the arguments and returns the reply lines -----------------------------------
    def _identify(self, args: list[str]) -> list[bytes]:
        return [format_line(IDENTIFICATION)]

    def _read_error(self, args: list[str]) -> list[bytes]:
        code, self.error = self.error, 0
        return [format_line(str(code))]

    def _move(self, args: list[str]) -> list[bytes]:
        self._start_moves(self._pairs(args))
        return []

    def _move_relative(self, args: list[str]) -> list[bytes]:
        self._start_moves([(state, state.target + delta) for state, delta in self._pairs(args)])
        return []

    def _start_moves(self, moves: list[tuple[ControllerAxis, float]]) -> None:
        """Check every move first, then start them all (a refused command moves nothing; PIPython's MOV and
        MVR: "Axes will start moving ... if ALL given targets are within the allowed range")."""
        for state, target in moves:
            if not state.may_move or (self.require_reference and not state.referenced):
                raise Refused(NO_REFERENCE_OR_SERVO)
            if not state.low_limit <= target <= state.high_limit:
                raise Refused(POSITION_OUT_OF_LIMITS)
        for state, target in moves:
            state.move_to(target)

    def _position(self, args: list[str]) -> list[bytes]:
        return self._values(self._axes(args), lambda state: format_number(state.axis.read_position()))

    def _on_target(self, args: list[str]) -> list[bytes]:
        return self._values(self._axes(args), lambda state: "0" if state.moving else "1")

    def _servo(self, args: list[str]) -> list[bytes]:
        pairs = self._pairs(args)
        if any(value not in (0.0, 1.0) for _, value in pairs):
            raise Refused(PARAMETER_SYNTAX)
        for state, value in pairs:
            state.servo = value == 1.0
            if not state.servo:
                state.halt()
        return []

    def _reference(self, args: list[str]) -> list[bytes]:
        axes = self._axes(args)
        if not all(state.may_move for state in axes):
            raise Refused(NO_REFERENCE_OR_SERVO)
        for state in axes:
            state.reference()
        return []

    def _is_referenced(self, args: list[str]) -> list[bytes]:
        return self._values(self._axes(args), lambda state: "1" if state.referenced else "0")

    def _set_velocity(self, args: list[str]) -> list[bytes]:
        pairs = self._pairs(args)
        if not all(0 < value <= state.stage.max_velocity for state, value in pairs):
            raise Refused(PARAMETER_OUT_OF_RANGE)
        for state, value in pairs:
            state.axis.set_velocity(value)
        return []

    def _velocity(self, args: list[str]) -> list[bytes]:
        return self._values(self._axes(args), lambda state: format_number(state.axis.velocity))

    def _halt(self, args: list[str]) -> list[bytes]:
        for state in self._axes(args):
            state.halt()
        self.error = STOPPED
        return []

    def _stop_all(self, args: list[str]) -> list[bytes]:
        if args:
            raise Refused(PARAMETER_SYNTAX)
        return self._halt([])

    def _low_limit(self, args: list[str]) -> list[bytes]:
        return self._values(self._axes(args), lambda state: format_number(state.low_limit))

    def _high_limit(self, args: list[str]) -> list[bytes]:
        return self._values(self._axes(args), lambda state: format_number(state.high_limit))


SIMULATOR = WireSimulator(PIResponder, "PI GCS 2 stage controller (VISA socket)", visa=True)
"""What ``microct sim serve`` serves (entry-point group ``microct.simulators``)."""
