"""Kill a scan at random moments and resume it until it completes (the crash-safety check of issue 7).

``kill_and_resume(config_data, output, rng)`` runs the scan in a child process, sends it SIGKILL after
a random delay, then resumes it (``run_scan(..., resume=True)``) in a new child, again and again until
a child finishes on its own. The delay counts from the child's start or, for a share of the kills
(``from_frames``), from the moment it reports its scan under way (its first progress report with frames in
the file): on a loaded machine a child may spend the whole of ``max_delay_s`` starting up. Children are
forked from a forkserver that has imported microct once, so a start costs milliseconds, not the seconds of
a fresh interpreter. Used by the tests and by ``benchmarks/kill_resume.py``.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import random
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from microct.journal import journal_path

PRELOAD = ["microct.sequencer", "microct.instruments", "microct.simulators.source", "microct.simulators.axis",
           "microct.simulators.detector", "h5py", "numpy", "scipy.ndimage"]


STARTUP_TIMEOUT_S = 60.0
"""The longest a child may take to report its scan under way (a bound with room, not an expected time)."""


def scan_in_process(config_data: dict[str, Any], output: str, resume: bool,
                    under_way: multiprocessing.connection.Connection | None = None) -> None:
    """Build the instruments of ``config_data`` and run (or resume) the scan into ``output``; send one
    message on ``under_way`` at the first progress report with frames in the file."""
    from microct.config import parse_config
    from microct.instruments import build_instruments
    from microct.sequencer import ScanProgress, run_scan

    sent: list[bool] = []

    def progress(at: ScanProgress) -> None:
        if under_way is not None and not sent and at.frames_done > 0:
            sent.append(True)
            try:
                under_way.send_bytes(b"1")
            except OSError:  # the parent no longer listens (it was not waiting for this child's frames)
                pass

    config = parse_config(config_data)
    run_scan(config, build_instruments(config), output, resume=resume, progress=progress)


def _context() -> multiprocessing.context.ForkServerContext:
    context: multiprocessing.context.ForkServerContext = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


@dataclass
class KillRun:
    """What happened to one scan: the kills it took, and the exit code of the child that finished it."""

    output: Path
    kills: int
    final_exit_code: int


def kill_and_resume(config_data: dict[str, Any], output: str | Path, rng: random.Random, max_delay_s: float,
                    max_kills: int = 100, from_frames: float = 0.0) -> KillRun:
    """Start the scan, kill it after a delay drawn from [0, ``max_delay_s``), resume, ... until a child
    ends by itself (or ``max_kills`` kills: then one last resume runs undisturbed). A share ``from_frames``
    (0 to 1, drawn at random) of the delays counts from the moment the child reports frames in the file
    (waited for up to STARTUP_TIMEOUT_S, or until the child ends), the others from its start."""
    output = Path(output)
    context = _context()
    kills = 0
    while True:
        resume = _interrupted(output)
        if kills and not resume and output.exists():
            return KillRun(output, kills, 0)  # the last child was killed after it had completed the file
        heard, under_way = context.Pipe(duplex=False)
        child = context.Process(target=scan_in_process, args=(config_data, str(output), resume, under_way))
        child.start()
        under_way.close()  # the child's end: only the child holds it now
        if kills < max_kills:
            delay_s, after_frames = rng.uniform(0.0, max_delay_s), rng.random() < from_frames
            if after_frames:
                multiprocessing.connection.wait([heard, child.sentinel], STARTUP_TIMEOUT_S)
            heard.close()
            child.join(delay_s)
            if child.is_alive():
                child.kill()  # SIGKILL: no handler, no clean-up, as a power switch or the OOM killer
                child.join()
                if child.exitcode == -signal.SIGKILL:
                    kills += 1
                    continue
        child.join()
        heard.close()
        if child.exitcode != 0 and _interrupted(output):
            raise RuntimeError(f"{output}: the scan ended with exit code {child.exitcode}")
        return KillRun(output, kills, -1 if child.exitcode is None else child.exitcode)


def _interrupted(output: Path) -> bool:
    """Whether ``output`` has something to resume (a journal, its own or one set aside)."""
    aside = output.with_name(output.name + ".interrupted")
    return journal_path(output).exists() or journal_path(aside).exists()
