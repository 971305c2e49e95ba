"""Kill a scan at random moments and resume it until it completes (the crash-safety check of issue 7).

``kill_and_resume(config_data, output, rng)`` runs the scan in a child process, sends it SIGKILL after
a random delay, then resumes it (``run_scan(..., resume=True)``) in a new child, again and again until
a child finishes on its own. Children are forked from a forkserver that has imported microct once, so
a start costs milliseconds, not the seconds of a fresh interpreter. Used by the tests and by
``benchmarks/kill_resume.py``.
"""

from __future__ import annotations

import multiprocessing
import random
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from microct.journal import journal_path

PRELOAD = ["microct.sequencer", "microct.instruments", "microct.simulators.source", "microct.simulators.axis",
           "microct.simulators.detector", "h5py", "numpy", "scipy.ndimage"]


def scan_in_process(config_data: dict[str, Any], output: str, resume: bool) -> None:
    """Build the instruments of ``config_data`` and run (or resume) the scan into ``output``."""
    from microct.config import parse_config
    from microct.instruments import build_instruments
    from microct.sequencer import run_scan

    config = parse_config(config_data)
    run_scan(config, build_instruments(config), output, resume=resume)


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
                    max_kills: int = 100) -> KillRun:
    """Start the scan, kill it after a delay drawn from [0, ``max_delay_s``), resume, ... until a child
    ends by itself (or ``max_kills`` kills: then one last resume runs undisturbed)."""
    output = Path(output)
    context = _context()
    kills = 0
    while True:
        resume = _interrupted(output)
        if kills and not resume and output.exists():
            return KillRun(output, kills, 0)  # the last child was killed after it had completed the file
        child = context.Process(target=scan_in_process, args=(config_data, str(output), resume))
        child.start()
        if kills < max_kills:
            child.join(rng.uniform(0.0, max_delay_s))
            if child.is_alive():
                child.kill()  # SIGKILL: no handler, no clean-up, as a power switch or the OOM killer
                child.join()
                if child.exitcode == -signal.SIGKILL:
                    kills += 1
                    continue
        child.join()
        if child.exitcode != 0 and _interrupted(output):
            raise RuntimeError(f"{output}: the scan ended with exit code {child.exitcode}")
        return KillRun(output, kills, -1 if child.exitcode is None else child.exitcode)


def _interrupted(output: Path) -> bool:
    """Whether ``output`` has something to resume (a journal, its own or one set aside)."""
    aside = output.with_name(output.name + ".interrupted")
    return journal_path(output).exists() or journal_path(aside).exists()
