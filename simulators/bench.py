"""The simulated bench: what the in-process simulators of one scan share, and the "simulation"
environment that builds it from a configuration (entry point ``microct.environments: simulation``).

A ``Bench`` holds the clock, the scan geometry, the random seed, the instruments by role (the
detector images the phantom through the tube and stages it finds there) and the fault schedule of
``[simulation]``. The core never imports this module: it asks the environment, through the protocol
of ``microct.environment``, for each simulator's context, shows it the built instruments, and asks it
for the writer's fault check.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from microct.clock import Clock
from microct.devices.base import Device, DriverContext
from microct.errors import ConfigurationError
from microct.geometry import Geometry
from microct.simulators.faults import FaultSchedule, WriterFaults


@dataclass
class Bench:
    """The world of the in-process simulators: ``devices`` by role ("source", "rotation", "sample_out",
    "detector"; filled once all are built), ``faults`` to play (None: none)."""

    clock: Clock = field(default_factory=Clock)
    geometry: Geometry | None = None
    seed: int | None = None
    devices: dict[str, Device] = field(default_factory=dict)
    faults: FaultSchedule | None = None


@dataclass
class SimulationContext(DriverContext):
    """The context the "simulation" environment gives its drivers: the shared bench."""

    bench: Bench = field(default_factory=Bench)


def bench_of(context: DriverContext) -> Bench:
    """The bench of a simulator's context; a bench of its own (on the context's clock) for a context that
    carries none (a simulator built outside the "simulation" environment)."""
    if isinstance(context, SimulationContext):
        return context.bench
    return Bench(clock=context.clock)


class SimulationEnvironment:
    """The "simulation" environment (``microct.environment``): one bench for a configuration's in-process
    simulators, its faults from ``[simulation]`` (or ``shared``, a FaultSchedule to share with wire
    simulators already playing it)."""

    def __init__(self, config: Any, clock: Clock, shared: object | None = None) -> None:
        simulation = config.simulation
        if shared is not None and not isinstance(shared, FaultSchedule):
            raise TypeError(f"the simulation environment shares a FaultSchedule, not {type(shared).__name__}")
        faults = shared if shared is not None else (FaultSchedule(simulation.faults, simulation.seed)
                                                    if simulation.faults else None)
        self.bench = Bench(clock=clock, geometry=config.geometry, seed=simulation.seed, faults=faults)
        self._config = config

    def context(self, role: str) -> SimulationContext:
        return SimulationContext(clock=self.bench.clock, bench=self.bench)

    def built(self, devices: Mapping[str, Device]) -> None:
        self.bench.devices.update(devices)
        faults = self.bench.faults
        for index, fault in faults.unattached() if faults is not None else ():
            table = getattr(self._config, fault.device, None)
            why = (f"no [{fault.device}] instrument is configured" if table is None else
                   f"{fault.device}.driver={table.driver!r} does not inject faults (the in-process simulators do)")
            raise ConfigurationError(f"simulation.faults.{index}.device={fault.device!r}: {why}")

    def writer_check(self, file_name: str) -> Callable[[int, int], None] | None:
        faults = self.bench.faults
        return WriterFaults(faults, file_name) if faults is not None else None


def schedule_of(instruments: Any) -> FaultSchedule | None:
    """The fault schedule the "simulation" environment of ``instruments`` (``microct.instruments.Instruments``)
    plays, or None."""
    for environment in getattr(instruments, "environments", ()):
        if isinstance(environment, SimulationEnvironment):
            return environment.bench.faults
    return None
