"""Projector benchmark: milliseconds per 512 × 512 cone-beam projection of the phantoms, and per
complete simulated frame (projection, focal-spot and PSF blur, Poisson and read noise, fixed patterns).

    python benchmarks/bench_projector.py

Geometry: magnification 10 (SOD 50 mm, SDD 500 mm), 512 × 512 pixels of
0.2 mm, i.e. a 10.24 mm field of view at the axis. Each figure is the median
of 20 projections at angles 0°, 18°, …, 342°. Per primitive kind: one
rotated primitive of each kind, ball-sized (0.76 mm across, shadowing
under 1 % of the detector) and field-filling (8 mm across).
"""

from __future__ import annotations

import statistics
import time

from microct.clock import SimulatedClock
from microct.geometry import Geometry
from microct.simulators.bench import Bench
from microct.simulators.detector import SimulatedDetector, SimulatedDetectorOptions
from microct.simulators.phantoms import BUILTIN, Box, Cylinder, Ellipsoid, Phantom, line_integrals
from microct.simulators.source import SimulatedSource, SimulatedSourceOptions

GEOMETRY = Geometry(source_object_distance_mm=50.0, source_detector_distance_mm=500.0)
SHAPE, PITCH_MM, RUNS = (512, 512), 0.2, 20
TILT = (20.0, 30.0, 40.0)


def ms_per_projection(phantom: Phantom) -> float:
    line_integrals(phantom, GEOMETRY, 0.0, SHAPE, PITCH_MM)  # fill the ray-grid cache
    times = []
    for k in range(RUNS):
        start = time.perf_counter()
        line_integrals(phantom, GEOMETRY, k * 360.0 / RUNS, SHAPE, PITCH_MM)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def one_of_each_kind(diameter_mm: float) -> dict[str, Phantom]:
    r = diameter_mm / 2
    kinds = {"ellipsoid": Ellipsoid((0.5, 0.0, 0.0), (r, 0.8 * r, 0.6 * r), 1.0, TILT),
             "cylinder": Cylinder((0.5, 0.0, 0.0), r, diameter_mm, 1.0, TILT),
             "box": Box((0.5, 0.0, 0.0), (diameter_mm, 0.8 * diameter_mm, 0.6 * diameter_mm), 1.0, TILT)}
    return {kind: Phantom(kind, (primitive,)) for kind, primitive in kinds.items()}


def ms_per_frame(phantom: str) -> float:
    """A whole 512 × 512 frame from the simulated detector, tube on at 80 kV / 100 µA (small spot)."""
    clock = SimulatedClock()
    context = Bench(clock=clock, geometry=GEOMETRY, seed=1)
    source = SimulatedSource("source", SimulatedSourceOptions(warmed_up=True), clock, seed=1)
    detector = SimulatedDetector("detector", SimulatedDetectorOptions(rows=512, columns=512,
                                                                      pixel_pitch_um=PITCH_MM * 1000,
                                                                      phantom=phantom), context)
    context.devices["source"] = source
    source.connect()
    detector.connect()
    source.configure(voltage_kv=80.0, current_ua=100.0, spot_mode="small")
    source.beam_on()
    clock.sleep(30.0)
    detector.set_exposure_s(0.5)
    detector.acquire(1)
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        detector.acquire(1)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    print(f"512 x 512 projection, M = {GEOMETRY.magnification:g}, pitch {PITCH_MM} mm, median of {RUNS}")
    for name, make in BUILTIN.items():
        phantom = make()
        print(f"  {name:<16} {len(phantom.primitives):3d} primitives  {ms_per_projection(phantom):7.2f} ms")
    for diameter in (0.76, 8.0):
        for kind, phantom in one_of_each_kind(diameter).items():
            print(f"  one {kind:<10} {diameter:4.2f} mm      {ms_per_projection(phantom):7.2f} ms")
    print(f"complete 512 x 512 frame (projection + blur + noise), median of {RUNS}")
    for name in BUILTIN:
        print(f"  {name:<16}                 {ms_per_frame(name):7.2f} ms")


if __name__ == "__main__":
    main()
