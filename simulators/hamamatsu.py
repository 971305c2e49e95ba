"""Wire-level simulator of a Hamamatsu microfocus source (L9181-02 / L10711 / L12721 command set).

``HamamatsuResponder`` answers one request line as the device does (docs/protocols/hamamatsu-microfocus.md):
the vendor codec reads the request (``parse_request``: the command word and its argument, checked as
the device checks them) and formats the reply, and a ``SimulatedSource`` (real time) built from the
vendor's model table plays the tube, so there is one model of the tube and one description of the
protocol. Serve it with ``microct sim serve hamamatsu``.

Refusals are answered ``ERR <code> <word>`` as the L9421-02T manual shows them (A4 2) ii), A11; codes
in ``codec.ERROR_CODES``): ``ERR 0 NOC`` for an unknown command (or an argument to a query or action),
``ERR 20 <word>`` for a set-point outside the model's range, a focus code it lacks or a malformed
argument, ``ERR 40 <word>`` for a set-point whose power exceeds the focus mode's limit, ``ERR 10 <word>``
for an action the present state does not accept (``XON`` before warm-up or with the interlock open,
``WUP`` while warming up, ``RST`` outside overload). ``fresh=True`` plays a controller just powered on:
its first request is not carried out and is answered ``ERR 0 NOC`` (manual §10 2.).

The automatic X-ray stop (manual §10 1., A5 note 3): when no request line has arrived for ``auto_stop_s``
(default 3 s, as the device; 0 disables it) while X-rays are on, the tube switches them off as ``XOF``
does: X-rays on → standby, a warm-up in progress is abandoned (A7). ``SAT`` answers the time, ``AST n``
sets it (0-60 s; ``ERR 10 AST`` while warming up or with X-rays on, A11). A line the device does not hear
(a muted ``WireServer``, a cut cable) does not count: a silent link drops the beam as on the real device.

Faults (``microct.simulators.faults``): given a ``FaultSchedule``, the tube plays the device ``role``
(default "source") and takes its arcs (the overload latches: ``SAR``/``STS`` report the fault until
``RST``) and interlock openings (``SIN 1``, not ready), at their ``at_s`` time or when a detector
simulator on the same schedule offers it an exposure; served by a ``WireServer`` given the same
schedule, every line meets the role's request faults (``fault_device``).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from typing import Any

from microct.clock import Clock
from microct.devices.source import SourceState
from microct.drivers.hamamatsu import codec
from microct.drivers.hamamatsu.models import MODELS, tube_model
from microct.errors import DeviceStateError, ErrorReply, LimitError, MicroCTError
from microct.simulators.faults import FaultSchedule
from microct.simulators.serving import options_model
from microct.simulators.source import SimulatedSource, SimulatedSourceOptions
from microct.simulators.wire import WireSimulator

log = logging.getLogger("microct.simulators.hamamatsu")

_FROM_MODEL_TABLE = {"voltage_range_kv", "current_range_ua", "spot_modes"}

# SWE from the state: the simulated tube tells only its state (0 done, 1 running, 2 not yet).
_WARMUP_CODE = {SourceState.WARMING_UP: 1, SourceState.WARMUP_NEEDED: 2}


class HamamatsuResponder:
    """The device end of the RS-232 line.

    Keyword options: ``model`` (a key of ``MODELS``), ``overrides`` (model-table fields, as in the
    driver's options), ``fresh`` (a controller just powered on: the first request gets ``ERR 0 NOC``),
    ``auto_stop_s`` (the automatic X-ray stop after that long without a request, s; 0 disables it; a
    fraction, for quick tests, is reported by ``SAT`` rounded up to whole seconds, so that ``SAT 0`` still
    means disabled), ``seed``, ``faults`` and ``role`` (the schedule the tube joins, as which device), and any
    ``SimulatedSourceOptions`` field except the ranges and spot modes, which come from the model table
    (e.g. ``warmup_s``, ``warmed_up``, ``ramp_kv_per_s``). ``source`` is the simulated tube, for tests
    (``set_interlock``, ``trigger_overload``, ``fault_hook``).
    """

    request_terminators = b"\r"

    def __init__(self, model: str = "L10711", overrides: dict[str, Any] | None = None, fresh: bool = False,
                 auto_stop_s: float = float(codec.DEFAULT_AUTO_STOP_S), seed: int | None = None,
                 faults: FaultSchedule | None = None, role: str = "source", **simulation: Any) -> None:
        self.tube = tube_model(model, overrides)
        self.fresh = fresh
        """True until the first request has been answered ``ERR 0 NOC`` (a controller just powered on)."""
        if not 0 <= auto_stop_s <= codec.AUTO_STOP_S.stop - 1:
            raise ValueError(f"auto_stop_s={auto_stop_s}: 0 (off) or up to {codec.AUTO_STOP_S.stop - 1} s")
        self.auto_stop_s = float(auto_stop_s)
        """The automatic X-ray stop: X-rays off after this long without a request (s); 0: never."""
        if taken := sorted(_FROM_MODEL_TABLE & simulation.keys()):
            raise TypeError(f"{', '.join(taken)}: these come from the {model} model table; change them with overrides")
        options = SimulatedSourceOptions(voltage_range_kv=self.tube.voltage_range_kv,
                                         current_range_ua=self.tube.current_range_ua,
                                         spot_modes=dict(self.tube.spot_modes), **simulation)
        self.role = role
        self.source = SimulatedSource(role, options, clock=Clock(), seed=seed, faults=faults)
        self.source.connect()
        self._lock = threading.RLock()  # requests (the server's thread) and the auto stop (a timer's)
        self._last_request_t = self.source.clock.monotonic()
        self._auto_stop_armed = False
        self._mode_of_code = {m.code: name for name, m in self.tube.spot_modes.items()}
        source = self.source
        self._queries: dict[bytes, Callable[[], bytes]] = {
            codec.STS: lambda: codec.format_state(source.read_state()),
            codec.SAR: lambda: codec.format_status(source.read_state(), source.read_voltage_kv(),
                                                   source.read_current_ua()),
            codec.SNR: self._not_ready,
            codec.SVI: lambda: codec.format_values(codec.SVI, source.voltage_kv, source.current_ua),
            codec.SHV: lambda: codec.format_values(codec.SHV, source.read_voltage_kv()),
            codec.SCU: lambda: codec.format_values(codec.SCU, source.read_current_ua()),
            codec.SIN: lambda: codec.format_values(codec.SIN, not source.read_interlock_closed()),
            codec.SPH: lambda: codec.format_values(codec.SPH, 0),
            codec.SWE: lambda: codec.format_values(codec.SWE, _WARMUP_CODE.get(source.read_state(), 0)),
            codec.SFC: lambda: codec.format_values(codec.SFC, self.tube.spot_modes[source.spot_mode].code),
            codec.TYP: lambda: codec.format_model_name(self.tube.name),
            codec.SER: lambda: codec.format_values(codec.SER, 0),
            codec.SAT: lambda: codec.format_values(codec.SAT, math.ceil(self.auto_stop_s)),
        }
        self._actions: dict[bytes, Callable[[], None]] = {
            codec.XON: source.beam_on, codec.XOF: source.beam_off, codec.WUP: source.warm_up,
            codec.RST: self._reset}
        # each setter's change of the tube's set-points (KeyError: a focus code the model lacks)
        self._setters: dict[bytes, Callable[[int], dict[str, Any]]] = {
            codec.HIV: lambda kv: {"voltage_kv": kv},
            codec.CUR: lambda ua: {"current_ua": ua},
            codec.CFS: lambda code: {"spot_mode": self._mode_of_code[code]},
        }

    def respond(self, line: bytes) -> list[bytes]:
        """The reply to one request line: a query's answer, a command's echo, or ``ERR <code> <word>``.
        Any line the device hears restarts its auto-stop time."""
        with self._lock:
            self._stop_if_silent()  # the device stopped on time, however late this thread hears the line
            self._last_request_t = self.source.clock.monotonic()
            try:
                if self.fresh:  # just powered on: the first command only checks the connection (manual §10 2.)
                    self.fresh = False
                    return [codec.format_error(codec.NOT_A_COMMAND, line) + b"\r"]
                return [self._answer(line) + b"\r"]
            finally:
                self._arm_auto_stop()

    def fault_device(self, line: bytes) -> str:
        """Every line is for the tube."""
        return self.role

    def _answer(self, line: bytes) -> bytes:
        try:
            request = codec.parse_request(line)  # unknown command, bad or missing argument
        except ErrorReply as refused:
            return codec.format_error(refused.code, line)
        if request.word == codec.AST:
            return self._set_auto_stop(request.argument, line)
        if request.argument is None:
            if request.word in self._queries:
                return self._queries[request.word]()
            try:
                self._actions[request.word]()
            except MicroCTError:  # the tube refuses it in its present state (XON, WUP, RST)
                return codec.format_error(codec.STATE_ERROR, line)
            return line  # the echo of the command as received
        try:
            change = self._setters[request.word](request.argument)
        except KeyError:  # a focus code this model does not have
            return codec.format_error(codec.PARAMETER_ERROR, line)
        try:
            self.source.configure(**change)
        except LimitError:
            return codec.format_error(self._limit_code(change), line)
        return line

    def _limit_code(self, change: dict[str, Any]) -> int:
        """The code of a set-point change the tube refuses: 20 if it leaves the kV or µA range, 40 if it
        stays in range but the power exceeds the focus mode's limit (manual A4 2) ii))."""
        source, caps = self.source, self.source.capabilities
        point = {"voltage_kv": source.voltage_kv, "current_ua": source.current_ua, **change}
        (v_low, v_high), (i_low, i_high) = caps.voltage_range_kv, caps.current_range_ua
        in_range = v_low <= point["voltage_kv"] <= v_high and i_low <= point["current_ua"] <= i_high
        return codec.POWER_ERROR if in_range else codec.PARAMETER_ERROR

    # -- the automatic X-ray stop ---------------------------------------------------------------------
    def _x_rays_on(self) -> bool:
        return self.source.read_state() in (SourceState.BEAM_ON, SourceState.WARMING_UP)

    def _set_auto_stop(self, seconds: int | None, line: bytes) -> bytes:
        """``AST n``: refused while X-rays are on or warming up (manual A11: ``ERR 10 AST``), above 60 s
        ``ERR 20 AST``."""
        if seconds is None or seconds not in codec.AUTO_STOP_S:
            return codec.format_error(codec.PARAMETER_ERROR, line)
        if self._x_rays_on():
            return codec.format_error(codec.STATE_ERROR, line)
        self.auto_stop_s = float(seconds)
        return line

    def _arm_auto_stop(self) -> None:
        """Watch for the auto stop while X-rays are on (one timer at a time, none with X-rays off)."""
        if self._auto_stop_armed or self.auto_stop_s <= 0 or not self._x_rays_on():
            return
        self._auto_stop_armed = True
        due_s = self._last_request_t + self.auto_stop_s - self.source.clock.monotonic()
        self.source.clock.call_later(max(due_s, 0.0), self._auto_stop)

    def _auto_stop(self) -> None:
        """The timer: X-rays off if no request arrived for ``auto_stop_s``, else watch on."""
        with self._lock:
            self._auto_stop_armed = False
            if self._stop_if_silent():
                self._arm_auto_stop()

    def _stop_if_silent(self) -> bool:
        """Switch X-rays off if they are on and no request arrived for ``auto_stop_s``; True if they stay on
        with the auto stop to watch for."""
        if self.auto_stop_s <= 0 or not self._x_rays_on():
            return False
        silent_s = self.source.clock.monotonic() - self._last_request_t
        if silent_s < self.auto_stop_s:
            return True
        log.info("%s: no request for %.2f s: automatic X-ray stop", self.role, silent_s)
        # as XOF does, and a muted controller too: the auto stop is the controller's own
        self.source.stop_xrays()
        return False

    def _reset(self) -> None:
        """``RST`` clears the overload protection; refused in any other state (manual A11: ``ERR 10 RST``)."""
        if self.source.read_state() is not SourceState.FAULT:
            raise DeviceStateError("RST is accepted only with the overload protection tripped (STS 4)")
        self.source.reset()

    def _not_ready(self) -> bytes:
        vacuum = codec.VACUUM_READY.stop - 1 if self.tube.vacuum_in_snr else 0  # a pumped-down open tube
        causes = codec.NotReadyCauses(board_error=0, interlock_open=not self.source.read_interlock_closed(),
                                      preheating=False, vacuum_level=vacuum)
        return codec.format_not_ready(causes)


SIMULATOR = WireSimulator(HamamatsuResponder, "Hamamatsu microfocus X-ray source (L9181-02, L10711, L12721), RS-232",
                          options=options_model(HamamatsuResponder, SimulatedSourceOptions, exclude=_FROM_MODEL_TABLE,
                                                choices={"model": MODELS}))
"""What ``microct sim serve`` serves (entry-point group ``microct.simulators``)."""
