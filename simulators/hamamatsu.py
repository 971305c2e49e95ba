"""Wire-level simulator of a Hamamatsu microfocus source (L9181-02 / L10711 / L12721 command set).

``HamamatsuResponder`` answers one request line as the device does (fact sheet
shared/protocols/hamamatsu-microfocus.md): it drives a ``SimulatedSource`` (real time) built from
the driver's model table, and formats its replies with the driver's codec, so there is one model of
the tube and one description of the protocol. Serve it with ``microct sim serve hamamatsu``.

Faults (``microct.simulators.faults``): given a ``FaultSchedule``, the tube plays the device ``role``
(default "source") and takes its arcs (the overload latches: ``SAR``/``STS`` report the fault until
``RST``) and interlock openings (``SIN 1``, not ready), at their ``at_s`` time or when a detector
simulator on the same schedule offers it an exposure; served by a ``WireServer`` given the same
schedule, every line meets the role's request faults (``fault_device``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from microct.clock import Clock
from microct.devices.source import SourceState
from microct.drivers import hamamatsu as codec
from microct.errors import MicroCTError
from microct.simulators.faults import FaultSchedule
from microct.devices.source import SpotMode
from microct.simulators.source import SimulatedSource, SimulatedSourceOptions
from microct.simulators.wire import WireSimulator

_FROM_MODEL_TABLE = {"voltage_range_kv", "current_range_ua", "spot_modes"}
_WHOLE_NUMBER = re.compile(rb"\d{3,4}")  # HIV / CUR: zero padded to 3 digits (CUR 1000 takes 4)

# SWE from the state: the simulated tube tells only its state (0 done, 1 running, 2 not yet).
_WARMUP_CODE = {SourceState.WARMING_UP: 1, SourceState.WARMUP_NEEDED: 2}


class HamamatsuResponder:
    """The device end of the RS-232 line.

    Keyword options: ``model`` (a key of ``MODELS``), ``overrides`` (model-table fields, as in the
    driver's options), ``seed``, ``faults`` and ``role`` (the schedule the tube joins, as which device),
    and any ``SimulatedSourceOptions`` field except the ranges and spot modes, which come from the model
    table (e.g. ``warmup_s``, ``warmed_up``, ``ramp_kv_per_s``). ``source`` is the simulated tube, for
    tests (``set_interlock``, ``trigger_overload``).
    """

    request_terminators = b"\r"

    def __init__(self, model: str = "L10711", overrides: dict[str, Any] | None = None, seed: int | None = None,
                 faults: FaultSchedule | None = None, role: str = "source", **simulation: Any) -> None:
        self.tube = codec.tube_model(model, overrides)
        if taken := sorted(_FROM_MODEL_TABLE & simulation.keys()):
            raise TypeError(f"{', '.join(taken)}: these come from the {model} model table; change them with overrides")
        modes = {name: SpotMode(power_limit_w=m.power_limit_w, spot_size_um=m.spot_size_um,
                                       growth_um_per_w=m.growth_um_per_w) for name, m in self.tube.focus_modes.items()}
        options = SimulatedSourceOptions(voltage_range_kv=self.tube.voltage_range_kv,
                                         current_range_ua=self.tube.current_range_ua, spot_modes=modes, **simulation)
        self.role = role
        self.source = SimulatedSource(role, options, clock=Clock(), seed=seed, faults=faults)
        self.source.connect()
        self._mode_of_code = {m.code: name for name, m in self.tube.focus_modes.items()}
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
            codec.SFC: lambda: codec.format_values(codec.SFC, self.tube.focus_modes[source.spot_mode].code),
            codec.TYP: lambda: codec.format_model_name(self.tube.name),
            codec.SER: lambda: codec.format_values(codec.SER, 0),
        }
        self._actions: dict[bytes, Callable[[], None]] = {
            codec.XON: source.beam_on, codec.XOF: source.beam_off, codec.WUP: source.warm_up,
            codec.RST: source.reset}
        self._setters: dict[bytes, Callable[[bytes], None]] = {
            b"HIV": lambda arg: source.configure(voltage_kv=self._whole(arg)),
            b"CUR": lambda arg: source.configure(current_ua=self._whole(arg)),
            b"CFS": lambda arg: source.configure(spot_mode=self._mode_of_code[int(arg)]),
        }

    def respond(self, line: bytes) -> list[bytes]:
        """The reply to one request line: a query's answer, a command's echo, or ``ERR``."""
        return [self._answer(line) + b"\r"]

    def fault_device(self, line: bytes) -> str:
        """Every line is for the tube."""
        return self.role

    def _answer(self, line: bytes) -> bytes:
        word, *arguments = line.split()
        try:
            if word in self._queries and not arguments:
                return self._queries[word]()
            if word in self._actions and not arguments:
                self._actions[word]()
                return line
            if word in self._setters and len(arguments) == 1:
                self._setters[word](arguments[0])
                return line  # the echo of the command as received
        except (MicroCTError, KeyError, ValueError):  # refused by the tube, an unknown focus code, a bad number
            return codec.ERR
        return codec.ERR  # unknown command or wrong number of arguments

    @staticmethod
    def _whole(argument: bytes) -> int:
        if not _WHOLE_NUMBER.fullmatch(argument):
            raise ValueError(f"{argument!r} is not a zero-padded whole number")
        return int(argument)

    def _not_ready(self) -> bytes:
        vacuum = codec.VACUUM_READY.stop - 1 if self.tube.vacuum_in_snr else 0  # a pumped-down open tube
        causes = codec.NotReadyCauses(board_error=0, interlock_open=not self.source.read_interlock_closed(),
                                      preheating=False, vacuum_level=vacuum)
        return codec.format_not_ready(causes)


SIMULATOR = WireSimulator(HamamatsuResponder, "Hamamatsu microfocus X-ray source (L9181-02, L10711, L12721), RS-232")
"""What ``microct sim serve`` serves (entry-point group ``microct.simulators``)."""
