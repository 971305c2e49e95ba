"""Wire-level simulator of a Spellman X-ray generator (XRV or uX command set) and its tube.

``SpellmanResponder`` answers one request frame as the generator does (docs/protocols/spellman-xrv.md):
the vendor codec reads and checks the request (``Codec.decode``, ``Codec.read_request``) and formats the
reply, and a ``SimulatedSource`` (real time) built from the vendor's model table plays the tube, so there
is one model of the tube and one description of the protocol. Serve it with ``microct sim serve spellman``
(``-O serial=true`` for the checksummed serial framing).

Behaviour: set-points arrive as DAC counts and read back as counts; the monitors read the tube's kV and
mA through the model's read-back over-range; the mA monitor reads 0 while the filament is off (XRV
``70,0``, as after power-up). Error codes (the codec's ``ERROR_CODES``): 1 for a count or argument out
of range or a set-point the tube refuses (range, spot-mode power), 2 for HV on with the interlock open or
a fault latched and for a reset with HV on, 3 for a command the family lacks. In serial mode a request
with a wrong or missing checksum gets no reply ("the received message is ignored; a timeout acts as an
implied NACK", Spellman's serial interface notes); so does anything that is not a frame.
``source.trigger_overload()`` latches a fault with the anode-arc flag of ``68`` set until ``31``.

The communication watchdog (docs/protocols/spellman-xrv.md, "Communication watchdog"): ``watchdog_s`` plays
the watchdog time set in the generator's configuration (default 0: off, as the protocol gives the host no
command to arm it). With HV on and no frame received for that long, HV goes off and a fault latches with the
``68`` watchdog flag set (``22`` reports the fault) until ``31``, as the XRB011 manual (4.15.9) describes its
watchdog. Any frame the generator reads (a refused one too) restarts the time; bytes it ignores (a wrong
checksum, a muted ``WireServer``, a cut cable) do not.

Faults (``microct.simulators.faults``): given a ``FaultSchedule``, the tube plays the device ``role``
(default "source") and takes its arcs (the fault above) and interlock openings (an open interlock in
``22``), at their ``at_s`` time or when a detector simulator on the same schedule offers it an exposure;
served by a ``WireServer`` given the same schedule, every frame meets the role's request faults
(``fault_device``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, get_args

from microct.clock import Clock
from microct.devices.source import SourceState
from microct.drivers.spellman import codec
from microct.drivers.spellman.codec import OUT_OF_RANGE, REFUSED, Request
from microct.drivers.spellman.models import MODELS, GeneratorModel, generator_model
from microct.errors import ErrorReply, LimitError, MicroCTError
from microct.simulators.faults import FaultSchedule
from microct.simulators.serving import options_model
from microct.simulators.source import SimulatedSource, SimulatedSourceOptions
from microct.simulators.wire import WireSimulator

_FROM_MODEL_TABLE = {"voltage_range_kv", "current_range_ua", "spot_modes"}
_NO_WARM_UP = {"warmed_up", "warmup_s"}  # these generators run no warm-up programme: always warm

log = logging.getLogger("microct.simulators.spellman")

ARC_FAULT = "anode arc"
"""The ``68`` flag an overload sets."""


class SpellmanResponder:
    """The generator end of the link (one request frame in, one reply frame out).

    Keyword options: ``model`` (a key of ``MODELS``), ``family`` and ``overrides`` (as in the driver's
    options), ``serial`` (checksums on requests and replies), ``seed``, ``faults`` and ``role`` (the
    schedule the tube joins, as which device), and any ``SimulatedSourceOptions`` field except the ranges
    and spot modes (from the model table) and the warm-up (none): e.g. ``ramp_kv_per_s``,
    ``interlock_closed``; ``watchdog_s``, the communication watchdog time of the generator's configuration
    (s, 0: off). ``source`` is the simulated tube, for tests (``set_interlock``, ``trigger_overload``);
    ``watchdog_tripped`` is True while a tripped watchdog's fault is latched.
    """

    request_terminators = codec.ETX

    def __init__(self, model: str = "XRV160", family: str | None = None, overrides: dict[str, Any] | None = None,
                 serial: bool = False, seed: int | None = None, faults: FaultSchedule | None = None,
                 role: str = "source", watchdog_s: float = 0.0, **simulation: Any) -> None:
        self.generator = generator_model(model, overrides if family is None else {**(overrides or {}),
                                                                                  "family": family})
        taken = sorted((_FROM_MODEL_TABLE | _NO_WARM_UP) & simulation.keys())
        if taken:
            raise TypeError(f"{', '.join(taken)}: ranges and spot modes come from the {model} model table (change "
                            f"them with overrides), and the generator has no warm-up")
        g = self.generator
        caps = g.capabilities()
        options = SimulatedSourceOptions(voltage_range_kv=caps.voltage_range_kv,
                                         current_range_ua=caps.current_range_ua, spot_modes=caps.spot_modes,
                                         warmed_up=True, warmup_s=0.0, **simulation)
        if not watchdog_s >= 0:
            raise ValueError(f"watchdog_s={watchdog_s}: a time in s, 0 for none")
        self.role = role
        self.source = SimulatedSource(role, options, clock=Clock(), seed=seed, faults=faults)
        self.source.connect()
        self.watchdog_s = float(watchdog_s)
        self.watchdog_tripped = False
        self._lock = threading.RLock()  # frames (the server's thread) and the watchdog (a timer's)
        self._last_frame_t = self.source.clock.monotonic()
        self._watching = False
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
            self._queries[commands.faults] = lambda: self.codec.format_faults(self._fault_flags())
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
        if commands.filament_select is not None:
            self._setters[commands.filament_select] = self._select_filament
        if commands.filament_enable is not None:
            self._setters[commands.filament_enable] = self._enable_filament
        self._actions: dict[int, Callable[[], None]] = {}
        if commands.reset is not None:
            self._actions[commands.reset] = self._reset

    def respond(self, line: bytes) -> list[bytes]:
        """The reply frame (with ETX) to one request frame (without it); nothing for a bad frame."""
        try:
            command, fields = self.codec.decode(line)
        except codec.FrameError:
            return []
        with self._lock:
            self._trip_if_silent()  # the watchdog tripped on time, however late this thread hears the frame
            self._last_frame_t = self.source.clock.monotonic()
            try:
                reply = self._answer(self.codec.read_request(command, fields))
            except ErrorReply as refusal:  # refused by the codec (unknown command, bad argument) or the tube
                reply = self.codec.format_error(command, refusal.code)
            finally:
                self._watch()
        return [reply + codec.ETX]

    def fault_device(self, line: bytes) -> str:
        """Every frame is for the generator."""
        return self.role

    def _answer(self, request: Request) -> bytes:
        """The reply to a request the codec accepted (its command is in the family's table)."""
        command = request.command
        if command in self._queries:
            return self._queries[command]()
        if command in self._actions:
            self._run(request, self._actions[command])
        else:
            self._run(request, lambda: self._setters[command](request.arguments[0]))
        return self.codec.format_ack(command)

    def _run(self, request: Request, action: Callable[[], None]) -> None:
        """Run a change on the tube: its limits are "out of range", its state checks "refused"."""
        try:
            action()
        except LimitError:
            raise self.codec.error_reply(request, OUT_OF_RANGE) from None
        except MicroCTError:  # beam on with the interlock open or a fault latched; reset with HV on
            raise self.codec.error_reply(request, REFUSED) from None

    # -- the communication watchdog -----------------------------------------------------------------------
    def _watch(self) -> None:
        """Watch for silence while HV is on (one timer at a time, none with HV off or no watchdog)."""
        if self._watching or self.watchdog_s <= 0 or self.source.read_state() is not SourceState.BEAM_ON:
            return
        self._watching = True
        due_s = self._last_frame_t + self.watchdog_s - self.source.clock.monotonic()
        self.source.clock.call_later(max(due_s, 0.0), self._watchdog_timer)

    def _watchdog_timer(self) -> None:
        with self._lock:
            self._watching = False
            self._trip_if_silent()
            self._watch()

    def _trip_if_silent(self) -> None:
        """HV off and the watchdog fault latched if HV is on and no frame came for ``watchdog_s``."""
        if self.watchdog_s <= 0 or self.source.read_state() is not SourceState.BEAM_ON:
            return
        silent_s = self.source.clock.monotonic() - self._last_frame_t
        if silent_s < self.watchdog_s:
            return
        log.info("%s: no message for %.2f s: the watchdog switches HV off", self.role, silent_s)
        self.watchdog_tripped = True
        self.source.trigger_overload()  # HV off, a fault latched until reset

    def _fault_flags(self) -> tuple[str, ...]:
        """The ``68`` flags: the watchdog's or an arc's while a fault is latched."""
        if self.source.read_state() is not SourceState.FAULT:
            return ()
        return (codec.WATCHDOG_FAULT,) if self.watchdog_tripped else (ARC_FAULT,)

    def _reset(self) -> None:
        """``31``: clears the latched fault, the watchdog's included (refused with HV on)."""
        self.source.reset()
        self.watchdog_tripped = False

    def _select_filament(self, large: int) -> None:
        name = self.generator.spot_mode_of(bool(large))
        if name is None:
            raise LimitError(f"no spot mode for the {'large' if large else 'small'} filament")
        self.source.configure(spot_mode=name)

    def _enable_filament(self, on: int) -> None:
        self.filament_enabled = bool(on)

    def _status(self) -> codec.GeneratorStatus:
        state = self.source.read_state()
        return codec.GeneratorStatus(
            hv_on=state is SourceState.BEAM_ON,
            open_interlocks=() if self.source.read_interlock_closed() else ("interlock 1",),
            fault=state is SourceState.FAULT,
            large_filament=self.generator.spot_modes[self.source.spot_mode].code == "large",
            filament_enabled=self.filament_enabled)

    def _monitors(self) -> bytes:
        g = self.generator
        current_ua = self.source.read_current_ua() if self.filament_enabled else 0.0
        return self.codec.format_monitors(
            codec.readback_counts(self.source.read_voltage_kv(), g.full_scale_kv, g.readback_over_range),
            codec.readback_counts(current_ua, g.full_scale_ua, g.readback_over_range))


SIMULATOR = WireSimulator(SpellmanResponder, "Spellman XRV / uX X-ray generator (VISA socket or serial)", visa=True,
                          options=options_model(SpellmanResponder, SimulatedSourceOptions,
                                                exclude=_FROM_MODEL_TABLE | _NO_WARM_UP,
                                                choices={"model": MODELS, "family": get_args(
                                                    GeneratorModel.model_fields["family"].annotation)}))
"""What ``microct sim serve`` serves (entry-point group ``microct.simulators``)."""
