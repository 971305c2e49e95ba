"""Frames over Channel Access: 1024 × 1024 16-bit frames through the simulated areaDetector IOC.

Prints (medians of repeated runs, this machine):
- a bare ``image1:ArrayData`` read (pyepics ``get(use_monitor=False)``, 2 MiB), in ms and MB/s;
- the areaDetector driver's ``acquire(n)`` per frame (Acquire put-callback, ArrayData monitors, counter
  checks), against the IOC's own time to make the frames (panel without read noise: dark frames).

    python benchmarks/bench_epics_area_detector.py [--frames 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from microct.simulators.epics_ioc import free_port

PORT = free_port()
os.environ.update(EPICS_CA_ADDR_LIST=f"127.0.0.1:{PORT}", EPICS_CA_AUTO_ADDR_LIST="NO",
                  EPICS_CA_MAX_ARRAY_BYTES=str(8 * 2**20))

import epics  # noqa: E402  (after the environment above)

from microct.clock import Clock  # noqa: E402
from microct.drivers.epics_area_detector.driver import AreaDetector, AreaDetectorOptions  # noqa: E402
from microct.simulators.bench import Bench  # noqa: E402
from microct.simulators.detector import SimulatedDetector, SimulatedDetectorOptions  # noqa: E402
from microct.simulators.epics_ad_ioc import start_ad_ioc  # noqa: E402

SIZE = 1024
MB = SIZE * SIZE * 2 / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20)
    args = parser.parse_args()
    panel = SimulatedDetector("bench", SimulatedDetectorOptions(rows=SIZE, columns=SIZE, read_noise=0.0),
                              Bench(clock=Clock(), seed=1))
    made_s: list[float] = []
    acquire = panel.acquire

    def timed_acquire(n):  # the IOC's own cost of making a frame, measured where it happens
        start = time.perf_counter()
        frames = acquire(n)
        made_s.append(time.perf_counter() - start)
        return frames

    panel.acquire = timed_acquire
    handle = start_ad_ioc("BENCH:", panel, PORT)
    try:
        det = AreaDetector("bench", AreaDetectorOptions(rows=SIZE, columns=SIZE, pixel_pitch_um=100.0), "BENCH:")
        with det:
            det.set_exposure_s(0.001)
            det.acquire(1)  # warm-up
            data = epics.PV("BENCH:image1:ArrayData", auto_monitor=False)
            data.wait_for_connection(5)
            reads = []
            for _ in range(args.frames):
                start = time.perf_counter()
                value = data.get(use_monitor=False, timeout=10)
                reads.append(time.perf_counter() - start)
                assert value.size == SIZE * SIZE
            made_s.clear()
            runs = []
            for _ in range(5):
                start = time.perf_counter()
                det.acquire(args.frames)
                runs.append((time.perf_counter() - start) / args.frames)
    finally:
        handle.stop()
    read = statistics.median(reads)
    per_frame, making = statistics.median(runs), statistics.median(made_s)
    print(f"1024 x 1024 uint16 frames over Channel Access ({args.frames} frames per run)")
    print(f"  bare image1:ArrayData get:     {read * 1e3:7.2f} ms  {MB / read:7.0f} MB/s")
    print(f"  driver acquire(), per frame:   {per_frame * 1e3:7.2f} ms  {MB / per_frame:7.0f} MB/s")
    print(f"  of which the IOC makes a frame:{making * 1e3:7.2f} ms (1 ms exposure + simulation)")
    print(f"  driver beyond making: {(per_frame - making) * 1e3:.2f} ms per frame "
          f"({MB / (per_frame - making):.0f} MB/s transfer)")


if __name__ == "__main__":
    main()
