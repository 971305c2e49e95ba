"""Acquisition benchmarks: sequencer overhead per projection, NXtomo write rate, peak memory.

    python benchmarks/bench_acquisition.py [--quick] [--dir DIR]

The scans run the shipped sim.toml (simulated source and stages, simulated
clock) with a zero-cost detector that hands back one pre-made frame, so the
figures are the sequencer's and the writer's own costs, not frame synthesis.
Every timing is the best of REPEATS runs; ``os.sync()`` runs before each, so
no run pays for the write-back of the one before.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import h5py
import numpy as np

from microct.config import ScanConfig, load_config, parse_config
from microct.devices import Detector, DetectorCapabilities, Frame, TriggerMode
from microct.instruments import Instruments, build_instruments
from microct.nexus import FrameInfo, NXtomoWriter, ScanHeader
from microct.sequencer import Sequencer, run_scan

SMALL, BIG = (256, 256), (1024, 1024)
REPEATS = 5
MIN_FREE_BYTES = 20e9
MB, MIB = 1e6, 2**20


def make_frame(shape: tuple[int, int]) -> np.ndarray:
    """The one frame every detector read and every write uses (below saturation: no warnings)."""
    return np.random.default_rng(0).integers(0, 60_000, shape, dtype=np.uint16)


class ZeroCostDetector(Detector):
    """A detector that costs nothing: each read returns the same pre-made frame, no exposure time."""

    backend = "in-process"

    def __init__(self, shape: tuple[int, int], clock) -> None:
        super().__init__("detector", DetectorCapabilities(shape=shape, pixel_pitch_um=200.0, bit_depth=16,
                                                          exposure_range_s=(1e-3, 60.0)), clock)
        self._data = make_frame(shape)
        self._frame_number = 0

    def _do_acquire(self, n: int) -> list[Frame]:
        frames = [Frame(self._data, self._frame_number + i, self.clock.time()) for i in range(n)]
        self._frame_number += n
        return frames

    def _do_connect(self) -> None:
        pass

    def _do_close(self) -> None:
        pass

    def _do_set_exposure_s(self, exposure_s: float) -> None:
        pass

    def _do_set_binning(self, binning: int) -> None:
        pass

    def _do_set_trigger_mode(self, mode: TriggerMode) -> None:
        pass


def scan_config(n_projections: int) -> tuple[ScanConfig, str]:
    """sim.toml in simulated time, unbinned, no darks or flats, ``n_projections`` projections."""
    config, text = load_config()
    data = config.model_dump()
    data["scan"].update(n_projections=n_projections, binning=1, n_darks=0, n_flats=0)
    data["simulation"]["clock"] = "simulated"
    return parse_config(data), text


def zero_cost_instruments(config: ScanConfig, shape: tuple[int, int]) -> Instruments:
    built = build_instruments(config)
    return Instruments(source=built.source, rotation=built.rotation, sample_out=built.sample_out,
                       detector=ZeroCostDetector(shape, built.clock), clock=built.clock)


def best_of(measure, *args) -> float:
    return min(measure(*args) for _ in range(REPEATS))


# -- the measurements (each returns seconds and deletes what it wrote) ---------------------------------
def time_scan(n: int, shape: tuple[int, int], path: Path) -> float:
    """``run_scan`` of n projections, from connect to the closed file."""
    config, text = scan_config(n)
    instruments = zero_cost_instruments(config, shape)
    os.sync()
    start = time.perf_counter()
    run_scan(config, instruments, path, text)
    elapsed = time.perf_counter() - start
    path.unlink()
    return elapsed


class TimedWriter(NXtomoWriter):
    """The scan's writer, adding up the time its ``append`` (pixels, journal line, per-frame record) takes."""

    appending_s = 0.0

    def append(self, frame: np.ndarray, info: FrameInfo) -> int:
        start = time.perf_counter()
        try:
            return super().append(frame, info)
        finally:
            TimedWriter.appending_s += time.perf_counter() - start


class LoopTimedSequencer(Sequencer):
    """Times the per-projection loop (not set-up, warm-up, stabilisation or close)."""

    loop_s = 0.0

    def _projections(self, n: int) -> None:
        start = time.perf_counter()
        try:
            super()._projections(n)
        finally:
            self.loop_s = time.perf_counter() - start


def overhead_in_one_run(n: int, shape: tuple[int, int], path: Path) -> float:
    """Seconds per projection of the projection loop that are not spent in the writer's ``append``,
    measured in one run (no second run to subtract, so no run-to-run noise)."""
    config, text = scan_config(n)
    with mock.patch("microct.sequencer.NXtomoWriter", TimedWriter):
        TimedWriter.appending_s = 0.0
        sequencer = LoopTimedSequencer(config, zero_cost_instruments(config, shape), path, text)
        sequencer.run()
    path.unlink()
    return (sequencer.loop_s - TimedWriter.appending_s) / n


def time_writer(n: int, shape: tuple[int, int], path: Path, fsync: bool = False,
                sync_to_disk: bool = True) -> float:
    """NXtomoWriter alone: create, ``append`` n frames (the scan's flush interval; ``sync_to_disk``: an fsync
    at each flush, before the journal names the frames), close [, fsync]."""
    config, _ = scan_config(n)
    scan, frame = config.scan, make_frame(shape)
    header = ScanHeader(title=scan.title, start_time=time.time(), frame_shape=shape, pixel_pitch_um=200.0,
                        saturation_value=65535, geometry=config.geometry, voltage_kv=scan.voltage_kv,
                        current_ua=scan.current_ua, focal_spot_mode=scan.spot_mode,
                        focal_spot_size_um=6.4, configuration_toml="")  # spot: 0.8 µm/W × 8 W
    infos = [FrameInfo(0, angle, scan.exposure_s, header.start_time + i, scan.voltage_kv, scan.current_ua)
             for i, angle in enumerate(scan.angles_deg())]
    os.sync()
    start = time.perf_counter()
    writer = NXtomoWriter(path, header, scan.flush_interval_s, sync_to_disk=sync_to_disk)
    for info in infos:
        writer.append(frame, info)
    writer.close("complete", time.time())
    if fsync:
        fd = os.open(path, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    elapsed = time.perf_counter() - start
    path.unlink()
    return elapsed


def time_raw(n: int, shape: tuple[int, int], path: Path, fsync: bool = False) -> float:
    """The same n frames appended to one file with ``ndarray.tofile`` [, fsync]."""
    frame = make_frame(shape)
    os.sync()
    start = time.perf_counter()
    with open(path, "wb") as file:
        for _ in range(n):
            frame.tofile(file)
        if fsync:
            file.flush()
            os.fsync(file.fileno())
    elapsed = time.perf_counter() - start
    path.unlink()
    return elapsed


class ProfiledSequencer(Sequencer):
    """Profiles the per-projection loop only (not set-up, warm-up, stabilisation or close)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.profiler = cProfile.Profile()

    def _projections(self, n: int) -> None:
        self.profiler.enable()
        try:
            super()._projections(n)
        finally:
            self.profiler.disable()


def profile_projections(n: int, shape: tuple[int, int], path: Path, top: int = 15) -> list[list[str]]:
    config, text = scan_config(n)
    sequencer = ProfiledSequencer(config, zero_cost_instruments(config, shape), path, text)
    sequencer.run()
    path.unlink()
    stats = pstats.Stats(sequencer.profiler).stats  # (file, line, name) -> (cc, ncalls, tt, ct, callers)
    rows = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)[:top]
    return [[f"{calls / n:g}", f"{tt / n * 1e6:.1f}", f"{tt / calls * 1e6:.2f}", f"{ct / n * 1e6:.1f}",
             f"{Path(file).name}:{line}({name})" if line else name]
            for (file, line, name), (_, calls, tt, ct, _) in rows]


def peak_rss_child(n: int, folder: Path) -> None:
    """(In a fresh process) full ``run_scan`` of n 1024² projections; prints peak RSS (MiB) and seconds."""
    path = folder / f"peak-{n}.nxs"
    config, text = scan_config(n)
    instruments = zero_cost_instruments(config, BIG)
    start = time.perf_counter()
    run_scan(config, instruments, path, text)
    elapsed = time.perf_counter() - start
    path.unlink()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MIB, elapsed)  # ru_maxrss: KiB on Linux


def peak_rss(n: int, folder: Path) -> tuple[float, float]:
    result = subprocess.run([sys.executable, __file__, "--peak-rss", str(n), "--dir", str(folder)],
                            capture_output=True, text=True, check=True)
    rss, seconds = result.stdout.split()
    return float(rss), float(seconds)


# -- report ------------------------------------------------------------------------------------------------
def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    """Columns right-aligned, the last left-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    print(f"\n{title}")
    for row in (header, ["-" * w for w in widths], *rows):
        cells = [str(cell).rjust(w) for cell, w in zip(row[:-1], widths)] + [str(row[-1])]
        print("  " + "  ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="about 10x fewer frames: a smoke run")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where to write (default: %(default)s)")
    parser.add_argument("--peak-rss", type=int, help=argparse.SUPPRESS)  # the child of part 3
    args = parser.parse_args()
    if args.peak_rss:
        peak_rss_child(args.peak_rss, Path(args.dir))
        return

    scale = 10 if args.quick else 1
    folder = Path(tempfile.mkdtemp(prefix="microct-bench-", dir=args.dir))
    path = folder / "bench.nxs"
    print(f"machine: nproc {len(os.sched_getaffinity(0))}, Python {sys.version.split()[0]}, numpy {np.__version__}, "
          f"h5py {h5py.__version__} (HDF5 {h5py.version.hdf5_version}); writing in {folder}"
          f"{' (--quick: 10x fewer frames)' if args.quick else ''}")
    try:
        # 1. sequencer overhead per projection
        rows = []
        for shape, n_big in ((SMALL, 2000 // scale), (BIG, 500 // scale)):
            n_small = n_big // 10
            scan = {n: best_of(time_scan, n, shape, path) for n in (n_small, n_big)}
            write = {n: best_of(time_writer, n, shape, path) for n in (n_small, n_big)}
            scan_slope = (scan[n_big] - scan[n_small]) / (n_big - n_small)
            write_slope = (write[n_big] - write[n_small]) / (n_big - n_small)
            in_run = sorted(overhead_in_one_run(n_big, shape, path) for _ in range(REPEATS))
            rows.append([f"{shape[0]}x{shape[1]}", f"{n_small}/{n_big}", f"{scan[n_big] / n_big * 1e3:.3f}",
                         f"{scan_slope * 1e3:.3f}", f"{write_slope * 1e3:.3f}",
                         f"{(scan_slope - write_slope) * 1e3:.3f}", f"{in_run[REPEATS // 2] * 1e3:.3f}",
                         f"{(scan[n_big] - n_big * scan_slope) * 1e3:.0f}"])
        table("1. Sequencer overhead (zero-cost detector, simulated clock, no darks/flats, no fsync; "
              f"best of {REPEATS})\n   slope = Δtime/Δframes between the two lengths N; overhead = scan slope − "
              "writer slope (two runs: noisy); in one run = projection loop − time in the writer's append, "
              f"median of {REPEATS}; setup = scan intercept",
              ["frame", "N", "scan total/N ms (larger N)", "scan slope ms/proj", "writer alone ms/frame",
               "overhead ms/proj", "in one run ms/proj", "one-time setup ms"], rows)

        n_profile = 500 // scale
        table(f"   cProfile of the per-projection loop only, {BIG[0]}x{BIG[1]}, {n_profile} projections, "
              f"top 15 by tottime (cProfile inflates Python call costs)",
              ["calls/proj", "tottime µs/proj", "µs/call", "cumtime µs/proj", "function"],
              profile_projections(n_profile, BIG, path))

        # 2. HDF5 write rate
        n_rate, rows = 500 // scale, []
        frame_mb = BIG[0] * BIG[1] * 2 / MB
        modes = (("page cache: writer without sync_to_disk; raw", False, False),
                 ("to disk (fsync at end): writer without sync_to_disk; raw", True, False),
                 ("to disk: writer as scans run it (fsync every flush); raw fsync at end", True, True))
        for mode, fsync, sync_to_disk in modes:
            lengths = (n_rate // 10, n_rate)
            writer = {n: best_of(time_writer, n, BIG, path, fsync, sync_to_disk) for n in lengths}
            raw = {n: best_of(time_raw, n, BIG, path, fsync) for n in lengths}
            writer_slope, raw_slope = ((t[n_rate] - t[n_rate // 10]) / (n_rate - n_rate // 10) for t in (writer, raw))
            rows.append([mode, f"{n_rate * frame_mb / writer[n_rate]:.0f}", f"{n_rate * frame_mb / raw[n_rate]:.0f}",
                         f"{raw[n_rate] / writer[n_rate]:.0%}", f"{frame_mb / writer_slope:.0f}",
                         f"{frame_mb / raw_slope:.0f}", f"{raw_slope / writer_slope:.0%}"])
        table(f"2. Write rate, 1024x1024 uint16 frames (MB = 1e6 bytes), best of {REPEATS}: whole files of {n_rate} "
              f"frames (the writer's one-time header and journal set-up included), and per frame (slope between "
              f"{n_rate // 10} and {n_rate} frames)",
              ["mode", "writer MB/s", "raw tofile MB/s", "writer/raw", "writer MB/s per frame",
               "raw MB/s per frame", "writer/raw per frame"], rows)

        # 3. peak memory
        counts = (360 // scale, 3600 // scale)
        free = shutil.disk_usage(folder).free
        if free < MIN_FREE_BYTES:
            print(f"\n3. Peak memory: SKIPPED, {free / 1e9:.1f} GB free in {folder}, "
                  f"{MIN_FREE_BYTES / 1e9:.0f} GB needed")
        else:
            (rss_a, s_a), (rss_b, s_b) = (peak_rss(n, folder) for n in counts)
            table("3. Peak memory, full run_scan of 1024x1024 projections, each in a fresh process (ru_maxrss)",
                  ["projections", "peak RSS MiB", "scan s"],
                  [[counts[0], f"{rss_a:.1f}", f"{s_a:.2f}"], [counts[1], f"{rss_b:.1f}", f"{s_b:.2f}"],
                   ["difference", f"{rss_b - rss_a:+.1f}", ""]])
    finally:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
