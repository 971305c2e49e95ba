"""Helpers of the fault-injection tests: a rig of in-process simulators sharing one FaultSchedule, and
the sequencer tests' scan configuration (sim.toml shrunk to 64×64 frames, simulated time)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from microct.clock import SimulatedClock
from microct.devices.source import SourceState
from microct.geometry import Geometry
from microct.simulators.axis import SimulatedAxis, SimulatedAxisOptions
from microct.simulators.bench import Bench
from microct.simulators.detector import SimulatedDetector, SimulatedDetectorOptions
from microct.simulators.faults import FaultSchedule
from microct.simulators.source import SimulatedSource, SimulatedSourceOptions


def _sequencer_conftest():
    path = Path(__file__).parents[1] / "sequencer" / "conftest.py"
    spec = importlib.util.spec_from_file_location("sequencer_conftest", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_sequencer = _sequencer_conftest()
SIM, SMALL, merged = _sequencer.SIM, _sequencer.SMALL, _sequencer.merged
make_scan = _sequencer.make_scan  # the fixture, registered by this folder's conftest

NO_RECOVERY = {"retries": 0, "arc_retakes": 0, "frame_retakes": 0, "interlock_timeout_s": 0.0}
"""[scan.recovery] turned off: a fault aborts the scan (microct.policies)."""
EXPOSURE_S = 1.0
SAMPLE_OUT_MM = 100.0  # far outside the ±6.4 mm field of view at the axis (32 × 2 mm pixels, M = 5)


@dataclass
class Rig:
    clock: SimulatedClock
    schedule: FaultSchedule
    source: SimulatedSource
    rotation: SimulatedAxis
    sample_out: SimulatedAxis
    detector: SimulatedDetector

    def beam_on(self) -> None:
        """X-rays on at the set-points, read-backs settled."""
        self.source.beam_on()
        self.clock.sleep(10.0)
        assert self.source.read_state() is SourceState.BEAM_ON

    def means(self, n: int) -> list[float]:
        """Mean counts of ``n`` frames acquired one by one."""
        return [float(self.detector.acquire()[0].data.mean()) for _ in range(n)]


def build_rig(faults=()) -> Rig:
    """Warm tube at 100 kV / 50 µA, stages, a 32×32 panel (1 s exposures), all connected at t = 0 s of a
    simulated clock and sharing ``FaultSchedule(faults, seed=1)``."""
    clock = SimulatedClock(start_time=1_700_000_000.0)
    schedule = FaultSchedule(faults, seed=1)
    source = SimulatedSource("source", SimulatedSourceOptions(warmed_up=True), clock, 1, schedule)
    rotation = SimulatedAxis("rotation", SimulatedAxisOptions(), clock, 2, schedule)
    sample_out = SimulatedAxis("sample_out", SimulatedAxisOptions(unit="mm", max_velocity=50.0,
                                                                  acceleration=200.0, low_limit=0.0,
                                                                  high_limit=150.0), clock, 3, schedule)
    context = Bench(clock=clock, geometry=Geometry(100.0, 500.0), seed=4, faults=schedule,
                            devices={"source": source, "rotation": rotation, "sample_out": sample_out})
    detector = SimulatedDetector("detector", SimulatedDetectorOptions(rows=32, columns=32,
                                                                      pixel_pitch_um=2000.0), context)
    rig = Rig(clock, schedule, source, rotation, sample_out, detector)
    for device in (source, rotation, sample_out, detector):
        device.connect()
    source.configure(voltage_kv=100.0, current_ua=50.0, spot_mode="small")
    detector.set_exposure_s(EXPOSURE_S)
    return rig
