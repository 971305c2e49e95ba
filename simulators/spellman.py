"""Wire-level simulator of a Spellman X-ray generator (XRV or uX command set) and its tube.

``SpellmanResponder`` answers one request frame as the generator does (fact sheet
shared/protocols/spellman-xrv.md): it drives a ``SimulatedSource`` (real time) built from the driver's
model table and formats its replies with the driver's codec, so there is one model of the tube and one
description of the protocol. Serve it with ``microct sim serve spellman`` (``-O serial=true`` for the
checksummed serial framing).

Behaviour: set-points arrive as DAC counts and read back as counts; the monitors read the tube's kV and
mA through the model's read-back over-range; the mA monitor reads 0 while the filament is off (XRV
``70,0``, as after power-up). Error codes (the driver's ``ERROR_CODES``): 1 for a count or argument out
of range or a set-point the tube refuses (range, spot-mode power), 2 for HV on with the interlock open or
a fault latched and for a reset with HV on, 3 for a command the family lacks. In serial mode a request
with a wrong or missing checksum gets no reply ("the received message is ignored; a timeout acts as an
implied NACK", Spellman's serial interface notes); so does anything that is not a frame.
``source.trigger_overload()`` latches a fault with the anode-arc flag of ``68`` set until ``31``.

Faults (``microct.simulators.faults``): given a ``FaultSchedule``, the tube plays the device ``role``
(default "source") and takes its arcs (the fault above) and interlock openings (an open interlock in
``22``), at their ``at_s`` time or when a detector simulator on the same schedule offers it an exposure;
served by a ``WireServer`` given the same schedule, every frame meets the role's request faults
(``fault_device``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from microct.clock import Clock
from microct.devices.source import SourceState
from microct.drivers import spellman as codec
from microct.errors import LimitError, MicroCTError
from microct.simulators.faults import FaultSchedule
from microct.devices.source import SpotMode
from microct.simulators.source import SimulatedSource, SimulatedSourceOptions
from microct.simulators.wire import WireSimulator

_FROM_MODEL_TABLE = {"voltage_range_kv", "current_range_ua", "spot_modes"}
_NO_WARM_UP = {"warmed_up", "warmup_s"}  # these generators run no warm-up programme: always warm

ARC_FAULT = "anode arc"
"""The ``68`` flag an overload sets."""

OUT_OF_RANGE, REFUSED, UNKNOWN_COMMAND = 1, 2, 3


class _Refused(Exception):
    """A request the generator answers with an error code."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class SpellmanResponder:
    """The generator end of the link (one request frame in, one reply frame out).

    Keyword options: ``model`` (a key of ``MODELS``), ``family`` and ``overrides`` (as in the driver's
    options), ``serial`` (checksums on requests and replies), ``seed``, ``faults`` and ``role`` (the
    schedule the tube joins, as which device), and any ``SimulatedSourceOptions`` field except the ranges
    and spot modes (from the model table) and the warm-up (none): e.g. ``ramp_kv_per_s``,
    ``interlock_closed``. ``source`` is the simulated tube, for tests (``set_interlock``, ``trigger_overload``).
    """

    request_terminators = codec.ETX

    def __init__(self, model: str = "XRV160", family: str | None = None, overrides: dict[str, Any] | None = None,
                 serial: bool = False, seed: int | None = None, faults: FaultSchedule | None = None,
                 role: str = "source", **simulation: Any) -> None:
        self.generator = codec.generator_model(model, overrides if family is None else {**(overrides or {}),
                                                                                        "family": family})
        taken = sorted((_FROM_MODEL_TABLE | _NO_WARM_UP) & simulation.keys())
        if taken:
            raise TypeError(f"{', '.join(taken)}: ranges and spot modes come from the {model} model table (change "
                            f"them with overrides), and the generator has no warm-up")
        g = self.generator
        caps = g.capabilities()
        modes = {name: SpotMode(power_limit_w=m.power_limit_w, spot_size_um=m.spot_size_um,
                                       growth_um_per_w=m.growth_um_per_w) for name, m in g.spot_modes.items()}
        options = SimulatedSourceOptions(voltage_range_kv=caps.voltage_range_kv,
                                         current_range_ua=caps.current_range_ua, spot_modes=modes,
                                         warmed_up=True, warmup_s=0.0, **simulation)
        self.role = role
        self.source = SimulatedSource(role, options, clock=Clock(), seed=seed, faults=faults)
        self.source.connect()
        self.codec = codec.Codec(g.commands, serial)
        self.filament_enabled = g.commands.filament_enable is None  # the XRV's is off until "70,1"
        commands = g.commands
        self._queries: dict[int, Callable[[], bytes]] = {
            commands.read_kv: lambda: self.codec.format_counts(
                commands.read_kv, codec.setpoint_counts(self.source.voltage_kv, g.full_scale_kv)),
            commands.read_ma: lambda: self.codec.format_counts(
                commands.read_ma, codec.setpoint_counts(self.source.current_ua, g.full_scale_ua)),
            commands.monitors: self._monitors,
            commands.status: lambda: self.codec.format_status(self._status()),
        }
        if commands.faults is not None:
            self._queries[commands.faults] = lambda: self.codec.format_faults(
                (ARC_FAULT,) if self.source.read_state() is SourceState.FAULT else ())
        if commands.scaling is not None:
            self._queries[commands.scaling] = lambda: self.codec.format_scaling(
                codec.Scaling(g.full_scale_kv, g.full_scale_ma, bipolar=False))
        self._setters: dict[int, Callable[[int], None]] = {
            commands.set_kv: lambda counts: self.source.configure(
                voltage_kv=codec.setpoint_value(counts, g.full_scale_kv)),
            commands.set_ma: lambda counts: self.source.configure(
                current_ua=codec.setpoint_value(counts, g.full_scale_ua)),
            commands.hv: lambda on: self.source.beam_on() if on else self.source.beam_off(),
        }
        self._flag_arguments = {commands.hv}
        if commands.filament_select is not None:
            self._setters[commands.filament_select] = self._select_filament
            self._flag_arguments.add(commands.filament_select)
        if commands.filament_enable is not None:
            self._setters[commands.filament_enable] = self._enable_filament
            self._flag_arguments.add(commands.filament_enable)
        self._actions: dict[int, Callable[[], None]] = {}
        if commands.reset is not None:
            self._actions[commands.reset] = self.source.reset

    def respond(self, line: bytes) -> list[bytes]:
        """The reply frame (with ETX) to one request frame (without it); nothing for a bad frame."""
        try:
            command, arguments = self.codec.decode(line)
        except codec.FrameError:
            return []
        try:
            reply = self._answer(command, arguments)
        except _Refused as refusal:
            reply = self.codec.format_error(command, refusal.code)
        return [reply + codec.ETX]

    def fault_device(self, line: bytes) -> str:
        """Every frame is for the generator."""
        return self.role

    def _answer(self, command: int, arguments: list[bytes]) -> bytes:
        if command in self._queries and not arguments:
            return self._queries[command]()
        if command in self._actions and not arguments:
            self._run(self._actions[command])
            return self.codec.format_ack(command)
        if command in self._setters:
            value = self._argument(command, arguments)
            self._run(lambda: self._setters[command](value))
            return self.codec.format_ack(command)
        if command in self._queries or command in self._actions:
            raise _Refused(OUT_OF_RANGE)  # an argument where none belongs
        raise _Refused(UNKNOWN_COMMAND)

    def _argument(self, command: int, arguments: list[bytes]) -> int:
        """The one whole-number argument: a count 0-4095, or 0/1 for a switch."""
        if len(arguments) != 1 or not codec.is_whole_number(arguments[0]):
            raise _Refused(OUT_OF_RANGE)
        value = int(arguments[0])
        if value > (1 if command in self._flag_arguments else codec.DAC_MAX):
            raise _Refused(OUT_OF_RANGE)
        return value

    @staticmethod
    def _run(action: Callable[[], None]) -> None:
        """Run a change on the tube: its limits are "out of range", its state checks "refused"."""
        try:
            action()
        except LimitError:
            raise _Refused(OUT_OF_RANGE) from None
        except MicroCTError:  # beam on with the interlock open or a fault latched; reset with HV on
            raise _Refused(REFUSED) from None

    def _select_filament(self, large: int) -> None:
        names = [name for name, mode in self.generator.spot_modes.items() if mode.large == bool(large)]
        if not names:
            raise LimitError(f"no spot mode for the {'large' if large else 'small'} filament")
        self.source.configure(spot_mode=names[0])

    def _enable_filament(self, on: int) -> None:
        self.filament_enabled = bool(on)

    def _status(self) -> codec.GeneratorStatus:
        state = self.source.read_state()
        return codec.GeneratorStatus(
            hv_on=state is SourceState.BEAM_ON,
            open_interlocks=() if self.source.read_interlock_closed() else ("interlock 1",),
            fault=state is SourceState.FAULT,
            large_filament=self.generator.spot_modes[self.source.spot_mode].large,
            filament_enabled=self.filament_enabled)

    def _monitors(self) -> bytes:
        g = self.generator
        current_ua = self.source.read_current_ua() if self.filament_enabled else 0.0
        return self.codec.format_monitors(
            codec.readback_counts(self.source.read_voltage_kv(), g.full_scale_kv, g.readback_over_range),
            codec.readback_counts(current_ua, g.full_scale_ua, g.readback_over_range))


SIMULATOR = WireSimulator(SpellmanResponder, "Spellman XRV / uX X-ray generator (VISA socket or serial)", visa=True)
"""What ``microct sim serve`` serves (entry-point group ``microct.simulators``)."""
