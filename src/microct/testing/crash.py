"""Kill a scan at random moments and resume it until it completes (the crash-safety check of issue 7).

``kill_and_resume(config_data, output, rng)`` runs the scan in a child process, sends it SIGKILL after
a random delay, then resumes it (``run_scan(..., resume=True)``) in a new child, again and again until
a child finishes on its own. The kill comes after a random delay from the child's start or, for a share
of the kills (``from_frames``), once it has written a random number of frames: on a loaded machine a
child may spend the whole of ``max_delay_s`` starting up, and no kill would find frames. Children are
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
"""The longest the parent waits for a child's next frame (a bound with room, not an expected time)."""


def scan_in_process(config_data: dict[str, Any], output: str, resume: bool,
                    frames: multiprocessing.connection.Connection | None = None) -> None:
    """Build the instruments of ``config_data`` and run (or resume) the scan into ``output``; send
    ``"<frames in the file> <frames planned>"`` on ``frames`` after each frame it writes (until the parent
    stops listening)."""
    from microct.config import parse_config
    from microct.instruments import build_instruments
    from microct.sequencer import ScanProgress, run_scan

    last: list[int] = []  # frames in the file at the last report

    def progress(at: ScanProgress) -> None:
        nonlocal frames
        if frames is not None and last and at.frames_done > last[0]:
            try:
                frames.send_bytes(f"{at.frames_done} {at.frames_total}".encode())
            except OSError:  # the parent no longer listens
                frames = None
        last[:] = [at.frames_done]

    config = parse_config(config_data)
    run_scan(config, build_instruments(config), output, resume=resume, progress=progress)


def _await_frames(heard: multiprocessing.connection.Connection, child: Any, rng: random.Random) -> None:
    """Return once the child has written a number of frames drawn from the first three quarters of those it
    has left (it tells after each, ``scan_in_process``; the last quarter is room for the frames it takes
    before the kill lands), or has ended, or has written none for STARTUP_TIMEOUT_S."""
    target = None
    while heard in multiprocessing.connection.wait([heard, child.sentinel], STARTUP_TIMEOUT_S):
        try:
            done, total = (int(word) for word in heard.recv_bytes().split())
        except EOFError:  # the child ended
            return
        target = done + rng.randrange(max((total - done) * 3 // 4, 1)) if target is None else target
        if done >= target:
            return


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
    killed_complete: bool = False
    """The last kill struck a child that had completed the file (it may not have released its lock)."""


def kill_and_resume(config_data: dict[str, Any], output: str | Path, rng: random.Random, max_delay_s: float,
                    max_kills: int = 100, from_frames: float = 0.0) -> KillRun:
    """Start the scan, kill it after a delay drawn from [0, ``max_delay_s``), resume, ... until a child
    ends by itself (or ``max_kills`` kills: then one last resume runs undisturbed). A share ``from_frames``
    (0 to 1, drawn at random) of the kills come instead once the child has written a number of frames
    drawn from those it has left (``_await_frames``): the kill strikes during one of the frames after."""
    output = Path(output)
    context = _context()
    kills = 0
    while True:
        resume = _interrupted(output)
        if kills and not resume and output.exists():
            return KillRun(output, kills, 0, killed_complete=True)  # killed after it had completed the file
        heard, frames = context.Pipe(duplex=False)
        child = context.Process(target=scan_in_process, args=(config_data, str(output), resume, frames))
        child.start()
        frames.close()  # the child's end: only the child holds it now
        if kills < max_kills:
            if from_frames and rng.random() < from_frames:  # (no draw at 0: the delays stay those of a seed)
                _await_frames(heard, child, rng)
            else:
                child.join(rng.uniform(0.0, max_delay_s))
            heard.close()
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
