"""``PIAxis``: one axis of a PI controller over GCS 2, and its options.

The controller is reached through VISA (``TCPIP::host::50000::SOCKET``, docs/protocols/pi-gcs.md
"Transport", cited as "sheet"); several PIAxis on one controller share one VISA session and its lock.

Every exchange is one write: a setter goes out together with ``ERR?`` (``MOV 1 10.0\\nERR?``), as PI's
public client PIPython does with ``embederr``, so the error read back is the one that command caused even
when other threads use the same controller.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from microct.driverkit import (
    Axis,
    AxisCapabilities,
    Clock,
    CommunicationError,
    ConfigurationError,
    DeviceStateError,
    DeviceTimeoutError,
    Finding,
    ModelTableOptions,
    Move,
    MoveEngine,
    ProtocolError,
    Status,
    Transport,
    VisaSettings,
    VisaTransport,
    move_duration_s,
)
from microct.drivers.pi_gcs.codec import (
    STOPPED,
    TERMINATOR,
    encode_batch,
    encode_command,
    error_for,
    error_level,
    is_query,
    parse_axis_values,
    parse_error_code,
    reply_end_counter,
    split_replies,
)
from microct.drivers.pi_gcs.models import STAGES, StageModel

VISA_DEFAULTS: dict[str, Any] = {"timeout_s": 7.0, "write_terminator": TERMINATOR.decode(),
                                 "read_terminator": TERMINATOR.decode()}
"""LF both ways (sheet); 7 s, the time-out of PI's public client (sheet; PIPython pisocket.py)."""


class PIOptions(ModelTableOptions):
    """Options of one PI axis. ``visa`` fields left out take VISA_DEFAULTS (LF terminators, 7 s)."""

    model_table: ClassVar = STAGES
    table_key: ClassVar = "stage"

    axis: str = Field(default="1", pattern=r"^[A-Za-z0-9_]{1,16}$", description="GCS axis identifier")
    stage: str = Field(default="U-651", description="the stage product, a key of the stage table: its unit, top "
                       "speed, soft limits and reference position (example figures: check them, and replace any "
                       "with overrides)")
    visa: VisaSettings = Field(default_factory=VisaSettings, description="the VISA link to the controller (the "
                               "connection is its resource, e.g. TCPIP::host::50000::SOCKET); what it leaves out "
                               "takes LF terminators both ways and PIPython's 7 s time-out")
    poll_interval_s: float = Field(default=0.02, gt=0, description="on-target polls while a move runs (s)")

    @model_validator(mode="before")
    @classmethod
    def _no_reference_on_connect(cls, data: Any) -> Any:
        """The options that referenced the axis at connect are gone: connect moves nothing, and the axis
        table's ``home`` setting says when the axis is homed (``microct.homing``)."""
        if isinstance(data, dict) and (old := sorted({"reference_on_connect", "reference_timeout_s"} & set(data))):
            raise ValueError(f"{' and '.join(old)}: no longer options (connect moves nothing); set `home` in the "
                             f"axis table instead (\"if-needed\", the default, runs FRF when FRF? reports the axis "
                             f"unreferenced; \"always\"; \"never\") and `home_timeout_s` there")
        return data

    @field_validator("axis", mode="before")
    @classmethod
    def _axis_as_text(cls, axis: Any) -> Any:
        return str(axis) if isinstance(axis, int) and not isinstance(axis, bool) else axis

    def stage_model(self) -> StageModel:
        """The stage-table entry with the overrides."""
        stage: StageModel = self.table_entry()
        return stage

    def visa_settings(self) -> VisaSettings:
        """``visa`` with VISA_DEFAULTS for what it leaves out."""
        return self.visa.with_defaults(**VISA_DEFAULTS)


class PIAxis(Axis):
    """One axis of a PI controller (GCS 2). Positions in the stage unit (deg or mm), velocities in unit/s.

    Connect: ``*IDN?``; ``TMN? a`` and ``TMX? a``, the controller's soft limits, which narrow the
    configured ones (never widen them: a scan checked against the configured limits may then meet a
    LimitError at the first angle beyond the controller's); ``FRF? a``: queries only, nothing set. Before
    the first move or homing: ``SVO a 1`` (servo on) and ``VEL a v``. Connect moves nothing: homing
    (``FRF``) is ``home()``, which a scan runs as the axis table's ``home`` setting says
    (``microct.homing``); ``read_referenced()`` is one ``FRF? a``. ``check()`` adds the error register
    (``ERR?``, which reads and clears it, as every GCS client's does) with the code's meaning.

    Commands per operation: a move is one exchange ``MOV a x`` + ``ERR?`` (``move_by``: ``MVR a d`` + ``ERR?``,
    after the ``POS? a`` that checks the soft limits) and then one exchange
    ``ONT? a`` + ``ERR?`` per poll until on target; the first poll waits for the shortest time the move can
    take when the start position is known (after a completed move or a position read), so most moves need
    one or two polls (against the wire simulator: 2.0 to 2.1 exchanges per move, for 2 deg steps and for
    90 deg moves). A position read is one ``POS? a``. Home is ``FRF a`` + ``ERR?`` and polls of
    ``FRF? a`` + ``ERR?``; stop is ``HLT a`` + ``ERR?`` (error 10, "stopped", is expected there).
    On-target polling was chosen over the 0x05 moving mask: both are one round trip, but ONT? is per
    axis (no axis-to-bit mapping), includes settling, and needs no terminator-less write.

    Failures: a non-zero ``ERR?`` raises the class ``codec.ERRORS`` gives (7, 8, 17: LimitError naming the
    value and the allowed range; 5, 10: DeviceStateError; 1, 2, 15: ProtocolError; others:
    DeviceFaultError); while polling, it fails the move. A move before the axis is referenced is a
    DeviceStateError; no reply is a DeviceTimeoutError, a garbled one a ProtocolError. Every message names
    the axis and the command.
    """

    backend = "VISA"
    Options = PIOptions

    def __init__(self, name: str, options: PIOptions | None = None, connection: str | None = "",
                 transport: Transport | None = None, clock: Clock | None = None) -> None:
        self.options = options or PIOptions()
        self.stage = self.options.stage_model()
        stage = self.stage
        self._configured = AxisCapabilities(stage.unit, stage.max_velocity, stage.low_limit, stage.high_limit,
                                            stage.acceleration)
        super().__init__(name, self._configured, clock)
        if transport is None:
            if not connection:
                raise ConfigurationError(f"axis {name!r}: a PI axis needs a connection "
                                         f"(VISA resource such as TCPIP::host::50000::SOCKET)")
            transport = VisaTransport(connection, self.options.visa_settings(), connection)
        self._transport = transport
        self._axis = self.options.axis
        self._where = f"PI axis {self._axis}"
        self._engine = MoveEngine(self, self.options.poll_interval_s)
        self._referenced = False
        self._identification = ""

    # -- protocol --------------------------------------------------------------------------------------
    def _exchange(self, *commands: bytes) -> list[list[bytes]]:
        """Send ``commands`` (at least one of them a query) in one write and return the reply (its lines)
        of each query among them. Errors name the axis and the commands."""
        message = encode_batch(list(commands))
        try:
            lines = self._transport.query_until(message, reply_end_counter(sum(map(is_query, commands))))
        except (DeviceTimeoutError, CommunicationError) as error:
            shown = " + ".join(repr(command.decode()) for command in commands)
            raise self._error(type(error), f"{self._where}: {shown} failed: {error}") from None
        return split_replies(lines)  # complete: query_until read up to the end of the last reply

    def _ask(self, name: str) -> tuple[str, bytes]:
        """The value of this axis in the reply to the query ``name a`` (``POS?``, ``ONT?`` ...), and the command."""
        command = encode_command(name, self._axis)
        (reply,) = self._exchange(command)
        return self._value(reply, command), command

    def _ask_number(self, name: str) -> float:
        value, command = self._ask(name)
        try:
            number: float | None = float(value)
        except ValueError:
            number = None
        if number is None or not math.isfinite(number):  # an infinite position would make a move wait forever
            raise self._error(ProtocolError, f"{self._where}: {value!r} in the reply to {command.decode()!r} "
                                             f"is not a {'number' if number is None else 'finite number'}")
        return number

    def _ask_flag(self, name: str) -> bool:
        return self._flag(*self._ask(name))

    def _value(self, reply: list[bytes], command: bytes) -> str:
        try:
            values = parse_axis_values(reply)
        except ProtocolError as error:
            raise self._error(ProtocolError, f"{self._where}: {error} to {command.decode()!r}") from None
        if self._axis not in values:
            raise self._error(ProtocolError, f"{self._where}: unexpected answer {b''.join(reply)!r} to "
                                             f"{command.decode()!r}: no value for axis {self._axis}")
        return values[self._axis]

    def _flag(self, value: str, command: bytes) -> bool:
        if value not in ("0", "1"):
            raise self._error(ProtocolError, f"{self._where}: {value!r} in the reply to {command.decode()!r} "
                                             f"is not 0 or 1")
        return value == "1"

    def _check(self, reply: list[bytes], when: str, detail: str = "", accept: tuple[int, ...] = (0,)) -> None:
        """Raise the error class of the ``ERR?`` code in ``reply`` unless it is in ``accept``; the message
        names the axis, the code and its meaning, ``when`` (the command) and ``detail`` (the value and the
        allowed range)."""
        try:
            code = parse_error_code(reply)
        except ProtocolError as error:
            raise self._error(ProtocolError, f"{self._where}: {error} to 'ERR?' {when}") from None
        if code in accept:
            return
        cls, meaning = error_for(code)
        raise self._error(cls, f"{self._where} reports error {code} ({meaning}) {when}"
                               + (f"; {detail}" if detail else ""))

    def _set(self, command: bytes, detail: str = "", accept: tuple[int, ...] = (0,)) -> None:
        """Send a setter together with ``ERR?`` and raise on a code not in ``accept`` (sheet: the public
        client asks ERR? after each command that sets something)."""
        (reply,) = self._exchange(command, b"ERR?")
        self._check(reply, f"after {command.decode()!r}", detail, accept)

    # -- moves -----------------------------------------------------------------------------------------
    def _start(self, command: bytes, what: str, detail: str, poll: bytes, target: float | None,
               first_poll_s: float, on_finish: Callable[[Move], None] | None = None,
               on_start: Callable[[Move], None] | None = None) -> Status:
        """Send a motion command (with ``ERR?``) through the move engine, which then asks ``poll`` (a query
        answering 1 when done) with ``ERR?`` until it answers 1; the first poll after ``first_poll_s``.
        ``target``: where the move ends (None for the reference move).

        Once the controller has accepted the command, the axis' rest position is forgotten and
        ``on_start`` (if given) runs; ``on_finish`` runs when this operation completes, unless another
        has replaced it (both under the engine's lock).
        """
        def send(move: Move) -> None:
            self._set(command, detail)

        def ended(move: Move) -> bool:
            reply, error_reply = self._exchange(poll, b"ERR?")
            done = self._flag(self._value(reply, poll), poll)
            self._check(error_reply, f"during {move.what} (polling {poll.decode()!r})")
            return done

        return self._engine.start(what, send, target=target, poll=ended, first_poll_s=first_poll_s,
                                  on_start=on_start, on_finish=on_finish,
                                  poll_interval_s=self.options.poll_interval_s)

    def _start_move(self, command: bytes, target: float, what: str, detail: str) -> Status:
        """A move (``MOV`` or ``MVR``) to ``target``, polled with ``ONT?``; refused unless referenced."""
        if not self._referenced:
            raise self._error(DeviceStateError, f"{self._where} is not referenced (FRF? {self._axis} = 0): home "
                                                f"it first (home(), `microct home`, or the axis table's home "
                                                f"setting)")
        at_rest = self._engine.resting_at
        first_poll_s = 0.0 if at_rest is None else move_duration_s(target - at_rest, self.velocity,
                                                                   self.capabilities.acceleration)
        return self._start(command, what, detail, encode_command("ONT?", self._axis), target, first_poll_s)

    # -- hooks -----------------------------------------------------------------------------------------
    def _do_connect(self) -> None:
        self._transport.open()
        (reply,) = self._exchange(b"*IDN?")
        self._identification = b" ".join(reply).decode("ascii", errors="replace").strip()
        try:
            low = self._ask_number("TMN?")
        except DeviceTimeoutError:
            # a query naming an axis the controller lacks gets no reply, only error 15 (sheet, "Error codes"):
            # ask ERR? (a query) to say so rather than time out
            (reply,) = self._exchange(b"ERR?")
            self._check(reply, f"after 'TMN? {self._axis}' (no reply)")
            raise
        self.capabilities = self._configured.narrowed(low, self._ask_number("TMX?"),
                                                      who=f"{self.who}: {self._where}",
                                                      source="the controller's (TMN?, TMX?)")
        self._referenced = self._ask_flag("FRF?")

    def _do_prepare_motion(self) -> None:
        """``SVO a 1``: the servo on, before the first move or homing (connect sets nothing)."""
        self._set(encode_command("SVO", self._axis, "1"), "servo on")

    def _do_close(self) -> None:
        self._engine.close()
        self._transport.close()

    def _do_start_move(self, position: float) -> Status:
        caps = self.capabilities
        return self._start_move(encode_command("MOV", self._axis, position), position,
                                f"move to {position:g} {self.unit}",
                                f"position {position:g} {self.unit}; soft limits {caps.low_limit:g} to "
                                f"{caps.high_limit:g} {self.unit}")

    def _do_start_move_by(self, delta: float, target: float) -> Status:
        """``MVR``: the controller adds ``delta`` to its target (sheet: ``MVR 1 -2.5``)."""
        caps = self.capabilities
        return self._start_move(encode_command("MVR", self._axis, delta), target, f"move by {delta:g} {self.unit}",
                                f"distance {delta:g} {self.unit} to {target:g} {self.unit}; soft limits "
                                f"{caps.low_limit:g} to {caps.high_limit:g} {self.unit}")

    def _do_start_home(self) -> Status:
        def referencing(move: Move) -> None:
            self._referenced = False

        def referenced(move: Move) -> None:
            self._referenced = True

        return self._start(encode_command("FRF", self._axis), "home (reference move FRF)", "",
                           encode_command("FRF?", self._axis), None, 0.0, on_finish=referenced,
                           on_start=referencing)

    def _do_stop(self) -> None:
        self._engine.stop()
        self._set(encode_command("HLT", self._axis), accept=(0, STOPPED))

    def _do_read_referenced(self) -> bool:
        """``FRF? a``: 1 once the reference move has ended well (sheet, "Commands"; PI GCS 2 manual, FRF?)."""
        self._referenced = self._ask_flag("FRF?")
        return self._referenced

    def _do_read_position(self) -> float:
        started_before = self._engine.started
        position = self._ask_number("POS?")
        low, high = self.capabilities.low_limit, self.capabilities.high_limit
        # a start for the first-poll estimate, within the soft limits (beyond them: a garbled reply, a hand move)
        if (low is None or low <= position) and (high is None or position <= high):
            self._engine.note_rest(position, started_before)
        return position

    def _do_set_velocity(self, velocity: float) -> None:
        self._set(encode_command("VEL", self._axis, velocity),
                  f"velocity {velocity:g} {self.unit}/s; the stage model allows (0, "
                  f"{self.capabilities.max_velocity:g}] {self.unit}/s")

    def _do_check(self) -> list[Finding]:
        """The error register (``ERR?``) with the code's meaning (codec ``error_for``, ``error_level``)."""
        (reply,) = self._exchange(b"ERR?")
        try:
            code = parse_error_code(reply)
        except ProtocolError as error:
            raise self._error(ProtocolError, f"{self._where}: {error} to 'ERR?'") from None
        text = "0: no error" if code == 0 else f"{code}: {error_for(code)[1]}"
        return [*super()._do_check(), Finding(error_level(code), "error register", text)]

    def _do_describe(self) -> dict[str, Any]:
        return {**super()._do_describe(), "stage": self.options.stage, "axis": self._axis,
                "identification": self._identification, "referenced": self._referenced,
                "soft_limits": (self.capabilities.low_limit, self.capabilities.high_limit)}
