"""Wire-level Zaber daisy chain: the ASCII protocol served over a pty or TCP (see ``microct sim serve zaber``).

Each device is one single-axis stage backed by a SimulatedAxis (real time) built from the vendor's stage
table (``microct.drivers.zaber.models``); requests are parsed, replies formatted and microsteps converted
with the vendor's codec (``microct.drivers.zaber.codec``), so stage and protocol are modelled once (the
driver is not imported). Behaviour follows Zaber's ASCII protocol manual: replies are BUSY while a move
runs, the WR flag shows until the axis is homed, NI after a movement command interrupts another, RJ with
BADCOMMAND, BADDATA, BADAXIS or DEVICEONLY for what the device refuses; a command with a wrong checksum
gets no reply; replies carry a checksum when the command did. ``warnings`` answers the active flags and
``warnings clear`` clears those that persist until it (FS, FE, WL ...: ``codec.CLEARED_BY_WARNINGS_CLEAR``).

Faults (``microct.simulators.faults``, or a fault contract's hook on a device's ``axis``): each device's
axis plays the role ``roles`` names (default: device 1 "rotation", device 2 "sample_out"), and takes that
role's stage stalls (the move never ends: BUSY until stopped or replaced, as a jammed stage the controller
is still driving) and limit switches (the move ends short, IDLE, with the WL flag, "unexpected limit
trigger", which persists until ``warnings clear``: manual, "Warning Flags"). While the axis refuses moves
(``SimulatedAxis.refuse_moves``) the device is parked: ``move abs``, ``move rel`` and ``home`` are rejected
with ``RJ IDLE -- PARKED``, "the device cannot move because it is currently parked" (manual, "Reply Flag";
docs/protocols/zaber-ascii.md, "Replies and errors"), and nothing moves. Served by a ``WireServer`` given a
schedule, the lines addressed to a device meet its request faults (``fault_device``).

Not modelled: the manual sets WL only while no WR (no reference) is active; here a limit switch raises WL
whether or not the axis was homed, so that a driver on an unhomed stage sees it (the microct driver does
not home at connect).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from microct.clock import Clock
from microct.devices.base import Status
from microct.drivers.zaber.codec import (
    CLEARED_BY_WARNINGS_CLEAR,
    COMMAND_TERMINATORS,
    Command,
    Reply,
    data_to_speed,
    format_reply,
    format_warnings,
    highest_warning,
    parse_command,
    position_to_steps,
    speed_to_data,
    steps_to_position,
)
from microct.drivers.zaber.models import StageModel, stage_model
from microct.errors import ProtocolError
from microct.simulators.axis import SimulatedAxis, SimulatedAxisOptions
from microct.simulators.faults import FaultSchedule
from microct.simulators.wire import WireSimulator, stopped_by_limit_switch

_TAKES_DATA = {"set maxspeed", "move abs", "move rel"}

INSTANT_ACCELERATION = 1e9
"""unit/s², used when the stage table does not know the acceleration (moves then run at full speed)."""
ROLES = {1: "rotation", 2: "sample_out"}
"""The role (fault device) of each address by default; other addresses play ``zaber-<address>``."""
DEFAULT_STAGES = ("X-RSW60A", "X-LSM100A")
"""The stage model of each address (axis) by default: a rotary stage, then a linear one."""


class ZaberDevice:
    """One device of the chain: a single-axis stage (named ``role``) answering commands addressed to it."""

    def __init__(self, address: int, stage: StageModel, clock: Clock, role: str = "",
                 faults: FaultSchedule | None = None) -> None:
        self.address = address
        self.stage = stage
        self.role = role or f"zaber-{address}"
        self.serial_number = 10000 + address  # simulated: real devices report their own
        self.axis = SimulatedAxis(self.role, SimulatedAxisOptions(
            unit=stage.unit, max_velocity=stage.max_speed, low_limit=stage.low_limit, high_limit=stage.high_limit,
            acceleration=stage.acceleration or INSTANT_ACCELERATION), clock=clock, faults=faults)
        self.axis.connect()  # in-process: nothing to open
        self.low_steps = position_to_steps(stage.low_limit, stage)
        self.high_steps = position_to_steps(stage.high_limit, stage)
        self.max_speed_data = speed_to_data(stage.max_speed, stage)
        self.speed_data = self.max_speed_data
        self.homed = False
        self.interrupted = False
        self.latched: set[str] = set()
        """Flags that persist until ``warnings clear`` (WL after a limit switch)."""
        self._motion: Status | None = None
        self._homing: Status | None = None
        self._reported: Status | None = None  # the last move whose limit switch was latched as WL

    @property
    def busy(self) -> bool:
        return self._motion is not None and not self._motion.done

    def execute(self, command: Command) -> Reply:
        """The reply to ``command`` (already known to be addressed to this device)."""
        if command.axis > 1:
            return self._reply(command, "RJ", "BADAXIS")
        words = command.text.split()
        name, args = (" ".join(words[:2]), words[2:]) if " ".join(words[:2]) in _TAKES_DATA else (" ".join(words), [])
        handler = {"": self._status, "get pos": self._get_pos, "get maxspeed": self._get_maxspeed,
                   "get system.serial": self._get_serial, "set maxspeed": self._set_maxspeed,
                   "move abs": self._move_abs, "move rel": self._move_rel, "home": self._home,
                   "stop": self._stop, "warnings": self._warnings, "warnings clear": self._warnings_clear}.get(name)
        if handler is None:
            return self._reply(command, "RJ", "BADCOMMAND")
        flag, data = handler(command, args)
        return self._reply(command, flag, data)

    # -- commands: each returns (flag, data) ----------------------------------------------------------
    def _status(self, command: Command, args: list[str]) -> tuple[str, str]:
        return "OK", "0"

    def _get_pos(self, command: Command, args: list[str]) -> tuple[str, str]:
        return "OK", str(position_to_steps(self.axis.read_position(), self.stage))

    def _get_maxspeed(self, command: Command, args: list[str]) -> tuple[str, str]:
        return "OK", str(self.speed_data)

    def _get_serial(self, command: Command, args: list[str]) -> tuple[str, str]:
        return ("RJ", "DEVICEONLY") if command.axis else ("OK", str(self.serial_number))

    def _set_maxspeed(self, command: Command, args: list[str]) -> tuple[str, str]:
        data = _integer(args)
        if data is None or not 1 <= data <= self.max_speed_data:
            return "RJ", "BADDATA"
        self.speed_data = data
        self.axis.set_velocity(min(data_to_speed(data, self.stage), self.stage.max_speed))
        return "OK", "0"

    def _move_abs(self, command: Command, args: list[str]) -> tuple[str, str]:
        return self._move_to_steps(_integer(args))

    def _move_rel(self, command: Command, args: list[str]) -> tuple[str, str]:
        delta = _integer(args)
        here = position_to_steps(self.axis.read_position(), self.stage)
        return self._move_to_steps(None if delta is None else here + delta)

    def _move_to_steps(self, steps: int | None) -> tuple[str, str]:
        if self.axis.refuse_moves:
            return "RJ", "PARKED"
        if steps is None or not self.low_steps <= steps <= self.high_steps:
            return "RJ", "BADDATA"
        self._start(steps_to_position(steps, self.stage))
        return "OK", "0"

    def _home(self, command: Command, args: list[str]) -> tuple[str, str]:
        if self.axis.refuse_moves:  # homing moves the axis too: "cannot move because it is currently parked"
            return "RJ", "PARKED"
        self._homing = self._start(0.0)  # the home sensor sets the position to 0 (limit.home.preset)
        return "OK", "0"

    def _stop(self, command: Command, args: list[str]) -> tuple[str, str]:
        if self.busy:
            self.interrupted = True
            self._homing = None
            self.axis.stop()
        return "OK", "0"

    def _warnings(self, command: Command, args: list[str]) -> tuple[str, str]:
        return "OK", format_warnings(self._flags())

    def _warnings_clear(self, command: Command, args: list[str]) -> tuple[str, str]:
        """Answer the flags active before the clear, then clear those that persist until it."""
        active = format_warnings(self._flags())
        self.latched -= CLEARED_BY_WARNINGS_CLEAR
        return "OK", active

    # -- state ----------------------------------------------------------------------------------------
    def _start(self, position: float) -> Status:
        """Start a move; a movement command on a busy axis interrupts the running one (NI). A WL of the
        move it replaces stays latched."""
        self._latch()
        self.interrupted = self.busy
        if self.busy:
            self._homing = None
        self._motion = self.axis.start_move_to(position)
        return self._motion

    def _latch(self) -> None:
        """Latch WL once for a move that ended on a limit switch (it stays after the next move starts)."""
        if self._motion is not None and self._motion is not self._reported and stopped_by_limit_switch(self._motion):
            self._reported = self._motion
            self.latched.add("WL")

    def _flags(self) -> set[str]:
        """Every flag active now."""
        if self._homing is not None and self._homing.done:
            self.homed, self._homing = True, None
        self._latch()
        flags = set(self.latched)
        if not self.homed:
            flags.add("WR")
        if self.interrupted:
            flags.add("NI")
        return flags

    def _reply(self, command: Command, flag: str, data: str) -> Reply:
        return Reply(self.address, command.axis, flag, "BUSY" if self.busy else "IDLE",  # type: ignore[arg-type]
                     highest_warning(self._flags()), data, command.message_id)


def _integer(args: list[str]) -> int | None:
    """The single integer argument, or None."""
    return int(args[0]) if len(args) == 1 and args[0].lstrip("-").isdigit() else None


class ZaberResponder:
    """A chain of Zaber devices on one line. ``stages`` names the stage model of device 1, 2, ...
    (default: a rotary X-RSW60A as device 1, a linear X-LSM100A as device 2); ``overrides`` maps a
    device address (int or str) to StageModel fields replacing its model's, as a driver's options do.
    ``faults``: the schedule the devices' axes join, each as the role ``roles`` gives its address
    (int or str; default ``ROLES``)."""

    request_terminators = COMMAND_TERMINATORS

    def __init__(self, stages: Sequence[str] = DEFAULT_STAGES,
                 overrides: dict[Any, dict[str, Any]] | None = None, clock: Clock | None = None,
                 faults: FaultSchedule | None = None, roles: Mapping[Any, str] = ROLES) -> None:
        overrides = {int(address): fields for address, fields in (overrides or {}).items()}
        roles = {int(address): role for address, role in (roles or ROLES).items()}
        names = stages or DEFAULT_STAGES
        clock = clock or Clock()
        self.devices = {address: ZaberDevice(address, stage_model(name, overrides.get(address)), clock,
                                             roles.get(address, ""), faults)
                        for address, name in enumerate(names, start=1)}
        self.axes: dict[int, SimulatedAxis] = {address: device.axis for address, device in self.devices.items()}
        """The inner simulated axes by device address, for tests (a stall, a position check)."""

    def respond(self, line: bytes) -> list[bytes]:
        """Replies of the addressed device (every device for address 0); none for a device not on the
        chain, a line that is not a command, or a wrong checksum."""
        try:
            command = parse_command(line)
        except ProtocolError:
            return []
        targets = self.devices.values() if command.device == 0 else \
            [self.devices[command.device]] if command.device in self.devices else []
        return [format_reply(device.execute(command), command.has_checksum) for device in targets]

    def fault_device(self, line: bytes) -> str | None:
        """The role of the device ``line`` addresses; None for every device (0), none or no command."""
        try:
            device = self.devices.get(parse_command(line).device)
        except ProtocolError:
            return None
        return None if device is None else device.role


SIMULATOR = WireSimulator(ZaberResponder, "Zaber ASCII daisy chain (rotation stage, linear stage)")
"""What ``microct sim serve`` serves (entry-point group ``microct.simulators``)."""
