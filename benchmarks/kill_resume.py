"""Kill a simulated scan with SIGKILL at random moments, resume it each time, and check every result.

    python benchmarks/kill_resume.py [--kills 200] [--projections 200] [--seed 1]

Each trial scans into a new file (sim.toml shrunk to 32 × 32 frames, simulated time), is killed after
random delays and resumed until it completes; the file is then compared with an uninterrupted scan
(image keys, angles, exposure times, sample positions equal; every dark dark, every flat bright).
Prints the kills, the frames the resumes replayed, the time a resume takes, and any failure.
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import tempfile
import time
import tomllib
from importlib.resources import files
from pathlib import Path

import h5py
import numpy as np

from microct.config import parse_config
from microct.instruments import build_instruments
from microct.sequencer import run_scan
from microct.testing.crash import kill_and_resume

SAME = ("entry/instrument/detector/image_key", "entry/sample/rotation_angle", "entry/instrument/detector/count_time",
        "entry/sample/x_translation")


def scan_data(projections: int) -> dict:
    data = copy.deepcopy(tomllib.loads(files("microct.configs").joinpath("sim.toml").read_text()))
    data["detector"]["options"].update(rows=32, columns=32, pixel_pitch_um=3200.0, phantom="spheres")
    data["geometry"]["source_object_distance_mm"] = 100.0
    # frames reach the journal at each flush (after an fsync): every 20 ms here, so kills land mid-journal
    data["scan"].update(n_projections=projections, n_darks=3, n_flats=4, binning=1, flush_interval_s=0.02)
    return data


def read(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        out = {name: f[name][()] for name in SAME}
        out["data"] = f["entry/instrument/detector/data"][()].astype(float)
        out["status"] = f["entry/logs/status"][()].decode()
        out["resumed"] = [int(m.split()[3]) for m in (m.decode() for m in f["entry/logs/events/message"][()])
                          if m.startswith("scan resumed after")]
    return out


def problems(got: dict, reference: dict) -> list[str]:
    found = [] if got["status"] == "complete" else [f"status {got['status']}"]
    found += [name for name in SAME if got[name].shape != reference[name].shape
              or not np.allclose(got[name], reference[name], atol=1e-6)]
    keys = got[SAME[0]]
    if got["data"].shape != reference["data"].shape:
        found.append(f"data shape {got['data'].shape}")
    elif got["data"][keys == 2].mean(axis=(1, 2)).max() > 200 or got["data"][keys == 1].mean(axis=(1, 2)).min() < 1000:
        found.append("a dark that is not dark or a flat that is not bright")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--projections", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    data = scan_data(args.projections)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="microct-kill-") as folder:
        folder = Path(folder)
        config = parse_config(data)
        start = time.perf_counter()
        run_scan(config, build_instruments(config), folder / "reference.nxs")
        scan_s = time.perf_counter() - start
        reference = read(folder / "reference.nxs")
        kills = trials = 0
        failures: list[str] = []
        replayed: list[int] = []
        trial_s: list[float] = []
        while kills < args.kills:
            out = folder / f"trial-{trials}.nxs"
            start = time.perf_counter()
            run = kill_and_resume(data, out, rng, max_delay_s=scan_s)
            trial_s.append(time.perf_counter() - start)
            got = read(out)
            failures += [f"{out.name}: {p}" for p in problems(got, reference)]
            leftovers = sorted(p.name for p in folder.iterdir() if p.name.startswith(out.name) and p != out)
            failures += [f"{out.name}: left {name}" for name in leftovers]
            replayed += got["resumed"]
            kills += run.kills
            trials += 1
    frames = reference["data"].shape[0]
    print(f"{kills} SIGKILLs over {trials} scans of {frames} frames ({args.projections} projections, 32 x 32, "
          f"simulated time; an uninterrupted scan takes {scan_s * 1e3:.0f} ms in-process)")
    print(f"resumes that replayed frames: {len(replayed)}; frames replayed per resume: median "
          f"{statistics.median(replayed) if replayed else 0:.0f}, max {max(replayed, default=0)}")
    print(f"wall time per scan, kills and resumes included: median {statistics.median(trial_s):.2f} s")
    failed_trials = len({f.split(':')[0] for f in failures})
    print(f"files complete and equivalent to the uninterrupted scan: {trials - failed_trials} of {trials}")
    for failure in failures:
        print("FAILED", failure)


if __name__ == "__main__":
    main()
