"""PI (Physik Instrumente) stage controllers over the GCS 2 command set: a pure codec, then the ``PIAxis`` driver.

Facts used here come from /work/shared/protocols/pi-gcs.md (the fact sheet, cited as "sheet") and from PI's
public Python client PIPython 2.13 (cited as "PIPython": ``gcsmessages.py`` for the end-of-reply rule and the
error check, ``gcserror.py`` for error numbers, ``pisocket.py`` for the 7 s time-out, ``gcs2commands.py`` for
the single-byte commands). The controller is reached through VISA (``TCPIP::host::50000::SOCKET``, sheet
"Transport"); several PIAxis on one controller share one VISA session and its lock.

Every exchange is one write: a setter goes out together with ``ERR?`` (``MOV 1 10.0\\nERR?``), as PIPython
does with ``embederr``, so the error read back is the one that command caused even when other threads use
the same controller.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from microct.clock import Clock
from microct.devices.axis import Axis, AxisCapabilities, AxisUnit, move_duration_s
from microct.devices.base import Status
from microct.errors import (CommunicationError, ConfigurationError, DeviceFaultError, DeviceStateError,
                            DeviceTimeoutError, LimitError, MicroCTError, ProtocolError)
from microct.devices.base import DriverContext
from microct.transport import Transport, VisaSettings, VisaTransport

log = logging.getLogger("microct.drivers.pi_gcs")

# =====================================================================================================
# Codec: pure functions and data, no I/O (the simulator in microct.simulators.pi_gcs shares them)
# =====================================================================================================

TERMINATOR = b"\n"
"""Commands and reply lines end with LF (sheet, "Transport")."""

MOVING_MASK = b"\x05"
"""Single byte: the reply is the bit mask of moving axes in hex, bit 0 for the first axis (sheet; PIPython)."""
READY_QUERY = b"\x07"
"""Single byte: the reply is one byte, READY or BUSY (sheet)."""
STOP_ALL = b"\x18"
"""Single byte: stop all axes; sets error 10; no reply (sheet)."""
READY = b"\xb1"
"""The reply byte to 0x07 when the controller is ready (sheet)."""
BUSY = b"\xb0"
"""The reply byte to 0x07 when the controller is busy (sheet)."""

ERRORS: dict[int, tuple[type[MicroCTError], str]] = {
    # Controller error codes (sheet, "Error codes"; 8 from PIPython's gcserror.py) and the error each raises.
    1: (ProtocolError, "parameter syntax error"),
    2: (ProtocolError, "unknown command"),
    5: (DeviceStateError, "move without reference or with servo off"),
    7: (LimitError, "position out of limits"),
    8: (LimitError, "velocity out of limits"),
    10: (DeviceStateError, "controller was stopped by command (HLT, STP or byte 0x18)"),
    15: (ProtocolError, "invalid axis identifier"),
    17: (LimitError, "parameter out of range"),
}
"""Any other non-zero code is a DeviceFaultError ("controller error N")."""

STOPPED = 10
"""The code HLT, STP and byte 0x18 leave in the error register (sheet; PIPython: "Error code 10 is set")."""


def error_for(code: int) -> tuple[type[MicroCTError], str]:
    """The error class and meaning of a non-zero controller error code."""
    return ERRORS.get(code, (DeviceFaultError, f"controller error {code}"))


def format_number(value: float) -> str:
    """A finite number as GCS takes it: up to 12 significant digits, always with a decimal point or an
    exponent (sheet: ``MOV 1 10.0``; PIPython formats floats with ``.12g``)."""
    text = format(float(value), ".12g")
    return text if "." in text or "e" in text else text + ".0"


def encode_command(name: str, *args: str | float) -> bytes:
    """One command without its terminator, e.g. ``encode_command("MOV", "1", 10.0)`` → ``b"MOV 1 10.0"``.
    Numbers (int or float) are formatted with ``format_number``; strings (axis identifiers) pass as they are."""
    words = [name] + [arg if isinstance(arg, str) else format_number(arg) for arg in args]
    return " ".join(words).encode("ascii")


def encode_batch(commands: list[bytes]) -> bytes:
    """Several commands in one write, separated by LF (the transport adds the final LF)."""
    return TERMINATOR.join(commands)


def is_query(command: bytes) -> bool:
    """True for a command that has a reply: its name ends in '?' (``POS?``, ``ERR?``, ``*IDN?``)."""
    return command.split(b" ", 1)[0].endswith(b"?")


def is_last_line(line: bytes) -> bool:
    """True if ``line`` (its LF already stripped) ends a reply: a reply is complete when a line ends in
    LF without a space before it; continuation lines end in " LF" (sheet; PIPython ``eol``)."""
    return not line.endswith(b" ")


def reply_end_counter(replies: int) -> Callable[[bytes], bool]:
    """A predicate for ``Transport.query_until``, fed every line in order: true at the line that
    completes the ``replies``-th reply."""
    ended = 0

    def last(line: bytes) -> bool:
        nonlocal ended
        ended += is_last_line(line)
        return ended >= replies

    return last


def split_replies(lines: list[bytes]) -> list[list[bytes]]:
    """Group reply lines (LF stripped) into replies by the end-of-reply rule; ProtocolError if the last
    reply is incomplete."""
    replies: list[list[bytes]] = []
    current: list[bytes] = []
    for line in lines:
        current.append(line)
        if is_last_line(line):
            replies.append(current)
            current = []
    if current:
        raise ProtocolError(f"incomplete reply {b''.join(current)!r}: its last line ends in a space")
    return replies


def _text(line: bytes) -> str:
    try:
        return line.decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolError(f"garbled reply {line!r}: not ASCII") from None


def parse_axis_values(reply: list[bytes]) -> dict[str, str]:
    """``[b"1=10.0 ", b"2=3.5"]`` → ``{"1": "10.0", "2": "3.5"}`` (sheet: replies are ``axis=value``);
    ProtocolError for a line that is not ``axis=value``."""
    values: dict[str, str] = {}
    for line in reply:
        axis, sep, value = _text(line).strip().partition("=")
        if not sep or not axis.strip() or not value.strip():
            raise ProtocolError(f"garbled reply {line!r}: expected axis=value")
        values[axis.strip()] = value.strip()
    return values


def parse_error_code(reply: list[bytes]) -> int:
    """The integer of an ``ERR?`` reply; ProtocolError if it is not one line holding an integer."""
    text = " ".join(_text(line).strip() for line in reply)
    try:
        return int(text)
    except ValueError:
        raise ProtocolError(f"garbled reply {b' '.join(reply)!r}: expected an error code (integer)") from None


def parse_command(line: bytes) -> tuple[str, list[str]]:
    """A request line (no terminator) → (command name, arguments); ProtocolError if empty or not ASCII."""
    words = _text(line).split()
    if not words:
        raise ProtocolError("empty command")
    return words[0], words[1:]


def format_values(values: Mapping[str, str]) -> bytes:
    """A reply as the controller sends it: ``axis=value`` lines, every one but the last ending in " LF"."""
    return b" \n".join(f"{axis}={value}".encode("ascii") for axis, value in values.items()) + TERMINATOR


def format_line(text: str) -> bytes:
    """A one-line reply (``ERR?``, ``*IDN?``, the moving mask) with its LF."""
    return text.encode("ascii") + TERMINATOR


def format_moving_mask(moving: list[bool]) -> bytes:
    """The reply to byte 0x05: bit i set if the i-th axis moves, in hex (PIPython reads it base 16)."""
    return format_line(f"{sum(1 << i for i, flag in enumerate(moving) if flag):X}")


class StageModel(BaseModel):
    """A stage product as the driver and the simulator need it. Positions in ``unit`` as the controller
    reports them (GCS works in physical units: deg or mm, sheet "Commands")."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    unit: AxisUnit
    max_velocity: float = Field(gt=0, description="unit/s")
    low_limit: float = Field(description="soft limit (unit)")
    high_limit: float = Field(description="soft limit (unit)")
    acceleration: float | None = Field(default=None, gt=0, description="unit/s²; None if not known")
    reference_position: float = Field(default=0.0, description="position after the reference move FRF (unit)")

    @model_validator(mode="after")
    def _limits_ordered(self):
        if self.low_limit >= self.high_limit:
            raise ValueError(f"soft limits ({self.low_limit}, {self.high_limit}): low must be < high")
        if not self.low_limit <= self.reference_position <= self.high_limit:
            raise ValueError(f"reference_position {self.reference_position} lies outside the soft limits "
                             f"({self.low_limit}, {self.high_limit})")
        return self


STAGES: dict[str, StageModel] = {
    # EXAMPLE FIGURES: none of these was read from a PI datasheet here; check yours and use `overrides`.
    # U-651 (PILine rotation stage, unlimited rotation): 720 deg/s recalled from PI's product page, not
    # checked; soft limits: a configuration choice, one turn each way; reference position 0 deg: an example.
    "U-651": StageModel(unit="deg", max_velocity=720.0, low_limit=-360.0, high_limit=360.0),
    # L-509.40 (linear stage): 102 mm travel, the longer of the two L-509 stages (52 and 102 mm) in the
    # mesoSPIM V5 hardware documentation; 20 mm/s and the reference at the low end: examples.
    "L-509.40": StageModel(unit="mm", max_velocity=20.0, low_limit=0.0, high_limit=102.0),
}
# Acceleration: not known for either (a move's shortest time is then estimated at full speed).


def stage_model(name: str, overrides: Mapping[str, Any] | None = None) -> StageModel:
    """The model ``name`` from STAGES with ``overrides`` applied; ConfigurationError for an unknown name."""
    if name not in STAGES:
        raise ConfigurationError(f"stage={name!r} is not a known PI stage; known: {', '.join(sorted(STAGES))}")
    return StageModel.model_validate({**STAGES[name].model_dump(), **(overrides or {})})


# =====================================================================================================
# Driver
# =====================================================================================================

VISA_DEFAULTS: dict[str, Any] = {"timeout_s": 7.0, "write_terminator": "\n", "read_terminator": "\n"}
"""LF both ways (sheet); 7 s, the time-out of PI's public client (sheet; PIPython pisocket.py)."""


class PIOptions(BaseModel):
    """Options of one PI axis. ``visa`` fields left out take VISA_DEFAULTS (LF terminators, 7 s)."""

    model_config = ConfigDict(extra="forbid")
    axis: str = Field(default="1", pattern=r"^[A-Za-z0-9_]{1,16}$", description="GCS axis identifier")
    stage: str = "U-651"
    overrides: dict[str, Any] = Field(default_factory=dict, description="StageModel fields replacing the model's")
    visa: VisaSettings = Field(default_factory=VisaSettings)
    poll_interval_s: float = Field(default=0.02, gt=0, description="on-target polls while a move runs (s)")
    reference_on_connect: bool = Field(
        default=True, description="true: connect() runs the reference move FRF if FRF? says the axis is not "
                                  "referenced; false: moves are refused until home() has referenced it")
    reference_timeout_s: float = Field(default=60.0, gt=0, description="longest reference move at connect (s)")

    @field_validator("axis", mode="before")
    @classmethod
    def _axis_as_text(cls, axis: Any) -> Any:
        return str(axis) if isinstance(axis, int) and not isinstance(axis, bool) else axis

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

    def visa_settings(self) -> VisaSettings:
        return self.visa.model_copy(update={key: value for key, value in VISA_DEFAULTS.items()
                                            if key not in self.visa.model_fields_set})


class PIAxis(Axis):
    """One axis of a PI controller (GCS 2). Positions in the stage unit (deg or mm), velocities in unit/s.

    Connect: ``*IDN?``; ``SVO a 1`` (servo on); ``TMN? a`` and ``TMX? a``, the controller's soft limits,
    which narrow the configured ones (never widen them: a scan checked against the configured limits may
    then meet a LimitError at the first angle beyond the controller's); ``FRF? a``; ``VEL a v``; and, if
    the axis is not referenced and ``reference_on_connect``, ``FRF a`` and a wait for it.

    Commands per operation: a move is one exchange ``MOV a x`` + ``ERR?`` (``move_by``: ``MVR a d`` + ``ERR?``,
    after the ``POS? a`` that checks the soft limits) and then one exchange
    ``ONT? a`` + ``ERR?`` per poll until on target; the first poll waits for the shortest time the move can
    take when the start position is known (after a completed move or a position read), so most moves need
    one or two polls (against the wire simulator: 2.0 to 2.1 exchanges per move, for 2 deg steps and for
    90 deg moves). A position read is one ``POS? a``. Home is ``FRF a`` + ``ERR?`` and polls of
    ``FRF? a`` + ``ERR?``; stop is ``HLT a`` + ``ERR?`` (error 10, "stopped", is expected there).
    On-target polling was chosen over the 0x05 moving mask: both are one round trip, but ONT? is per
    axis (no axis-to-bit mapping), includes settling, and needs no terminator-less write.
    """

    backend = "VISA"
    Options = PIOptions

    def __init__(self, name: str, options: PIOptions | None = None, connection: str = "",
                 transport: Transport | None = None, clock: Clock | None = None) -> None:
        self.options = options or PIOptions()
        self.stage = self.options.stage_model()
        stage = self.stage
        self._configured = AxisCapabilities(stage.unit, stage.max_velocity, stage.low_limit, stage.high_limit,
                                            stage.acceleration)
        super().__init__(name, self._configured, clock)
        if transport is None and not connection:
            raise ConfigurationError(f"axis {name!r}: a PI axis needs a connection "
                                     f"(VISA resource such as TCPIP::host::50000::SOCKET)")
        self._transport = transport or VisaTransport(connection, self.options.visa_settings(), connection)
        self._axis = self.options.axis
        self._where = f"PI axis {self._axis}"
        self._lock = threading.Lock()
        self._status: Status | None = None
        self._cancel: threading.Event | None = None
        self._referenced = False
        self._at_rest: float | None = None  # where the axis rests, when known (for the first-poll delay)
        self._identification = ""

    @classmethod
    def from_config(cls, name: str, options: PIOptions, connection: str | None,
                    context: DriverContext) -> PIAxis:
        return cls(name, options, connection or "", clock=context.clock)

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
    def _begin(self, command: bytes, what: str, detail: str, poll: bytes, first_poll_s: float,
               finished: Callable[[], None], started: Callable[[], None] | None = None) -> Status:
        """Send a motion command and return a Status that a poller thread completes when ``poll`` (a
        query answering 1 when done) says so.

        Once the controller has accepted the command, the previous operation's Status fails
        ("superseded") and ``started`` (if given) runs; ``finished`` runs when this operation completes, unless
        another has replaced it. Both run under the lock that guards the current operation.
        """
        self._set(command, detail)
        status, cancel = Status(self.clock, f"axis {self.name!r}: {what}"), threading.Event()
        self._end_poller(f"superseded by {what}", status, cancel, started)
        threading.Thread(target=self._poll, args=(status, cancel, what, poll, first_poll_s, finished),
                         name=f"pi-{self.name}-poll", daemon=True).start()
        return status

    def _poll(self, status: Status, cancel: threading.Event, what: str, poll: bytes, first_poll_s: float,
              finished: Callable[[], None]) -> None:
        """Ask ``poll`` and ``ERR?`` until ``poll`` answers 1, an error code, a failed exchange or cancellation."""
        wait = max(first_poll_s, self.options.poll_interval_s)
        while not cancel.wait(wait):
            wait = self.options.poll_interval_s
            try:
                reply, error_reply = self._exchange(poll, b"ERR?")
                done = self._flag(self._value(reply, poll), poll)
                self._check(error_reply, f"during {what} (polling {poll.decode()!r})")
            except MicroCTError as error:
                status.set_done(type(error)(f"{what} failed: {error}"))
                return
            except Exception as error:  # whatever happens, the Status must end
                status.set_done(error)
                return
            if done:
                with self._lock:
                    if self._status is status:
                        finished()
                status.set_done()
                return

    def _end_poller(self, why: str, status: Status | None = None, cancel: threading.Event | None = None,
                    started: Callable[[], None] | None = None) -> None:
        """Stop the running poller, failing its Status with ``why``; ``status``/``cancel`` take its place
        and ``started`` runs, under the lock."""
        with self._lock:
            old_status, old_cancel = self._status, self._cancel
            self._status, self._cancel = status, cancel
            self._at_rest = None
            if started is not None:
                started()
        if old_cancel is not None:
            old_cancel.set()
        if old_status is not None:
            old_status.set_done(self._error(DeviceStateError, f"move did not complete: {why}"))

    # -- hooks -----------------------------------------------------------------------------------------
    def _do_connect(self) -> None:
        self._transport.open()
        try:
            (reply,) = self._exchange(b"*IDN?")
            self._identification = b" ".join(reply).decode("ascii", errors="replace").strip()
            self._set(encode_command("SVO", self._axis, "1"), "servo on")
            self.capabilities = self._narrowed(self._ask_number("TMN?"), self._ask_number("TMX?"))
            self._referenced = self._ask_flag("FRF?")
        except BaseException:
            self._transport.close()
            raise

    def _narrowed(self, low: float, high: float) -> AxisCapabilities:
        """The configured capabilities with soft limits narrowed to the controller's (TMN?, TMX?)."""
        configured = self._configured
        new_low, new_high = max(configured.low_limit, low), min(configured.high_limit, high)
        if new_low >= new_high:
            raise self._error(ConfigurationError, f"{self._where}: the configured soft limits "
                                                  f"{configured.low_limit:g} to {configured.high_limit:g} {self.unit} "
                                                  f"do not overlap the controller's (TMN?, TMX?) {low:g} to {high:g}")
        narrowed = dataclasses.replace(configured, low_limit=new_low, high_limit=new_high)
        if narrowed != configured:
            log.info("axis %r: %s soft limits %g to %g %s (TMN?, TMX?) narrow the configured %g to %g", self.name,
                     self._where, narrowed.low_limit, narrowed.high_limit, self.unit, configured.low_limit,
                     configured.high_limit)
        return narrowed

    def _after_connect(self) -> None:
        """Send the velocity; then reference the axis if it is not referenced and ``reference_on_connect``
        (a reference move that does not end within ``reference_timeout_s`` is halted)."""
        super()._after_connect()
        if not self._referenced and self.options.reference_on_connect:
            status = self._do_start_home()
            try:
                status.wait(self.options.reference_timeout_s)
            except DeviceTimeoutError:
                self._do_stop()
                raise

    def _do_close(self) -> None:
        self._end_poller("the connection was closed")
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

    def _start_move(self, command: bytes, target: float, what: str, detail: str) -> Status:
        """A move (``MOV`` or ``MVR``) to ``target``, polled with ``ONT?``; refused unless referenced."""
        if not self._referenced:
            raise self._error(DeviceStateError, f"{self._where} is not referenced (FRF? {self._axis} = 0): call "
                                                f"home() first, or set reference_on_connect")
        at_rest = self._at_rest
        first_poll_s = 0.0 if at_rest is None else move_duration_s(target - at_rest, self.velocity,
                                                                   self.capabilities.acceleration)

        def arrived() -> None:
            self._at_rest = target

        return self._begin(command, what, detail, encode_command("ONT?", self._axis), first_poll_s, finished=arrived)

    def _do_start_home(self) -> Status:
        def referencing() -> None:
            self._referenced = False

        def referenced() -> None:
            self._referenced = True

        return self._begin(encode_command("FRF", self._axis), "home (reference move FRF)", "",
                           encode_command("FRF?", self._axis), 0.0, finished=referenced, started=referencing)

    def _do_stop(self) -> None:
        self._end_poller("stop() was called")
        self._set(encode_command("HLT", self._axis), accept=(0, STOPPED))

    def _do_read_position(self) -> float:
        position = self._ask_number("POS?")
        caps = self.capabilities
        with self._lock:  # beyond the soft limits (a garbled reply, a hand move) no start for the estimate
            if (self._status is None or self._status.done) and caps.low_limit <= position <= caps.high_limit:
                self._at_rest = position
        return position

    def _do_set_velocity(self, velocity: float) -> None:
        self._set(encode_command("VEL", self._axis, velocity),
                  f"velocity {velocity:g} {self.unit}/s; the stage model allows (0, "
                  f"{self.capabilities.max_velocity:g}] {self.unit}/s")

    def _do_describe(self) -> dict[str, Any]:
        return {**super()._do_describe(), "stage": self.options.stage, "axis": self._axis,
                "identification": self._identification, "referenced": self._referenced,
                "soft_limits": (self.capabilities.low_limit, self.capabilities.high_limit)}
