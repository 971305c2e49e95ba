"""Soak: one long simulated scan with faults injected at random, watching memory and what was recovered.

    python benchmarks/soak.py [--projections 30000] [--size 64] [--seed 7]

The in-process simulators in simulated time (sim.toml, frames of --size² pixels); random faults with
fixed seeds: tube arcs and opened interlocks (closing again after 20 s) during exposures, frames
dropped by the detector, garbled replies and dropped links on the rotation stage, the detector and
the tube. The default recovery policy reacts. Prints the faults that fired, the reactions the
sequencer took, peak memory (ru_maxrss) sampled along the scan, and checks the file: complete, every
planned frame once, angles in order, no frame exposed during a fault (projection means stay within
20 % of their median).
"""

from __future__ import annotations

import argparse
import collections
import copy
import resource
import tempfile
import time
import tomllib
from importlib.resources import files
from pathlib import Path

import h5py
import numpy as np

from microct.config import parse_config
from microct.instruments import build_instruments
from microct.sequencer import Sequencer

FAULTS = [
    {"kind": "arc", "device": "source", "probability": 0.002, "repeat": 0},
    {"kind": "interlock_open", "device": "source", "probability": 0.0005, "repeat": 0, "duration_s": 20.0},
    {"kind": "frame_dropped", "device": "detector", "probability": 0.002, "repeat": 0},
    {"kind": "garbled_reply", "device": "rotation", "probability": 0.001, "repeat": 0},
    {"kind": "disconnect", "device": "detector", "probability": 0.0005, "repeat": 0},
    {"kind": "reply_timeout", "device": "source", "probability": 0.0005, "repeat": 0},
]


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projections", type=int, default=30_000)  # HDF5 caches fill over ~10 000 frames
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    data = copy.deepcopy(tomllib.loads(files("microct.configs").joinpath("sim.toml").read_text()))
    data["detector"]["options"].update(rows=args.size, columns=args.size, pixel_pitch_um=200.0 * 512 / args.size)
    data["scan"].update(n_projections=args.projections, binning=1, n_darks=10, n_flats=10)
    data["simulation"].update(seed=args.seed, faults=FAULTS)
    config = parse_config(data)
    instruments = build_instruments(config)
    with tempfile.TemporaryDirectory(prefix="microct-soak-") as folder:
        out = Path(folder) / "soak.nxs"
        samples: list[tuple[int, float]] = []

        def progress(done: int, total: int, kind: str) -> None:
            if done % max(total // 20, 1) == 0:
                samples.append((done, rss_mib()))

        sequencer = Sequencer(config, instruments, out, progress=progress)
        start = time.perf_counter()
        result = sequencer.run()
        wall = time.perf_counter() - start
        with h5py.File(out, "r") as f:
            keys = f["entry/instrument/detector/image_key"][()]
            angles = f["entry/sample/rotation_angle"][()][keys == 0]
            status = f["entry/logs/status"][()].decode()
            means = np.array([f["entry/instrument/detector/data"][i].mean() for i in np.flatnonzero(keys == 0)])
            size_mb = out.stat().st_size / 1e6
    fired = collections.Counter(hit.fault.kind for hit in instruments.faults.hits)
    planned = 10 + 10 + args.projections
    print(f"soak: {args.projections} projections of {args.size}x{args.size} ({planned} frames), simulated time, "
          f"random faults (seed {args.seed}); {wall:.1f} s wall, {wall / planned * 1e3:.2f} ms per frame, "
          f"file {size_mb:.0f} MB")
    print("faults fired:   " + ", ".join(f"{kind} {n}" for kind, n in sorted(fired.items())))
    print("reactions:      " + ", ".join(f"{kind} {n}" for kind, n in sorted(sequencer.recovery.totals.items())))
    print("peak RSS (MiB): " + "  ".join(f"{done}:{mib:.1f}" for done, mib in samples))
    growth = samples[-1][1] - samples[len(samples) // 4][1] if len(samples) > 4 else float("nan")
    print(f"peak RSS growth over the last three quarters of the scan: {growth:+.1f} MiB")
    angles_ok = len(angles) == args.projections and bool(np.all(np.diff(angles) > 0))
    bright_ok = bool(means.min() > 0.8 * np.median(means))
    print(f"file: status {status}, frames {result.frames_written} of {planned}, angles in order {angles_ok}, "
          f"no projection exposed during a fault {bright_ok} (min/median mean {means.min() / np.median(means):.2f})")


if __name__ == "__main__":
    main()
