"""The fault matrix: every fault that applies to a backend, against every backend (in-process, serial, VISA,
EPICS, and the wire detectors camserver and Dexela beside an in-process tube and stages; see matrix_helpers),
each in a tiny scan (1 dark, 1 flat, 4 projections of 32 × 32, a camserver's of 487 × 195, quick recovery)
under the default recovery policies. Each case asserts, from the file the scan leaves, the reaction its
event log reports (retry, retake, arc procedure, interlock pause, move restarted, abort), that the beam
is off at the end (the simulated tube's own high voltage), and that the file holds every good frame and
no bad one: the planned frames in order for a recovered scan, the frames before the fault for an aborted
one, each as bright as the same frame of a fault-free scan on that backend (a frame exposed while the
beam was cut would not be), darks dark and flats bright.

The table of what was observed is printed at the end of the module (``-s`` not needed) and is the
parametrize ids: backend, fault, expected reaction.
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import numpy as np
import pytest
from matrix_helpers import (
    BACKENDS,
    BENCHES,
    DARKS,
    FIRST_PROJECTION,
    FLATS,
    PROJECTIONS,
    WIRE_DETECTORS,
    ScanFile,  # noqa: F401  (an autouse fixture)
    read_scan,
)

from microct.errors import ScanAborted
from microct.sequencer import run_scan

PLANNED = DARKS + FLATS + PROJECTIONS
P = FIRST_PROJECTION  # file index of projection 0
LINKED = ("in-process", "serial", "VISA", *WIRE_DETECTORS)  # backends whose tube and stage drivers hold a
# request link a simulator can fault
IN_PROCESS_STAGES = ("in-process", *WIRE_DETECTORS)
DETECTOR_LINKED = ("in-process", *WIRE_DETECTORS)  # the same for the detector (the serial and VISA backends'
# is the in-process one: a row of its own would repeat in-process)
ANGLES = [0.0] * (DARKS + FLATS) + [90.0 * i for i in range(PROJECTIONS)]
KEYS = [2] * DARKS + [1] * FLATS + [0] * PROJECTIONS


class Case(NamedTuple):
    name: str
    fault: dict
    backends: tuple[str, ...]
    reaction: str
    kept: int | None = None
    """Frames an aborted scan keeps; None: the scan recovers and completes."""
    garble: str = "corrupt"


CASES = [
    Case("arc mid-exposure of projection 1", {"kind": "arc", "device": "source", "at_projection": 1},
         BACKENDS, "arc procedure"),
    Case("interlock open 0.3 s from mid-exposure of projection 2",
         {"kind": "interlock_open", "device": "source", "at_projection": 2, "duration_s": 0.3},
         BACKENDS, "interlock pause"),
    Case("rotation stalls moving to projection 2", {"kind": "stage_stall", "device": "rotation", "at_projection": 2},
         BACKENDS, "retry"),
    Case("rotation limit switch moving to projection 2",
         {"kind": "limit_switch", "device": "rotation", "at_projection": 2}, BACKENDS, "abort", kept=P + 2),
    Case("sample_out stalls moving out for the flat", {"kind": "stage_stall", "device": "sample_out", "at_frame": 1},
         IN_PROCESS_STAGES, "retry"),
    Case("sample_out limit switch moving out for the flat",
         {"kind": "limit_switch", "device": "sample_out", "at_frame": 1}, IN_PROCESS_STAGES, "abort", kept=DARKS),
    Case("frame of projection 1 times out", {"kind": "frame_timeout", "device": "detector", "at_projection": 1},
         BACKENDS, "retake"),
    Case("frame of projection 1 dropped", {"kind": "frame_dropped", "device": "detector", "at_projection": 1},
         BACKENDS, "retake"),
    Case("tube reply lost after projection 1", {"kind": "reply_timeout", "device": "source", "at_projection": 1},
         (*LINKED, "EPICS"), "retry"),  # EPICS: a read answered too late
    Case("tube reply garbled after projection 1", {"kind": "garbled_reply", "device": "source", "at_projection": 1},
         LINKED, "retry"),
    Case("tube reply cut short after projection 1",
         {"kind": "garbled_reply", "device": "source", "at_projection": 1}, ("serial", "VISA"), "retry",
         garble="partial"),
    Case("tube link drops after projection 1 and comes back",  # EPICS: every CA circuit (matrix_helpers)
         {"kind": "disconnect", "device": "source", "at_projection": 1}, BACKENDS, "retry"),
    Case("stage link drops starting the move to projection 2",
         {"kind": "disconnect", "device": "rotation", "at_projection": 2}, LINKED, "move restarted"),
    # the detector's request faults: camserver, the '15 OK' to 'Exposure'; Dexela, the frame stream's reply to
    # 'T<N>', played once that frame is made, so at_projection 1 hits the frame of projection 0
    Case("detector reply garbled on projection 1",
         {"kind": "garbled_reply", "device": "detector", "at_projection": 1}, DETECTOR_LINKED, "retry"),
    Case("detector reply lost on projection 1: no frame",
         {"kind": "reply_timeout", "device": "detector", "at_projection": 1}, ("in-process", "Dexela"), "retake"),
    Case("camserver's '15 OK' lost on projection 1: its '7 OK' comes instead",
         {"kind": "reply_timeout", "device": "detector", "at_projection": 1}, ("camserver",), "retry"),
    Case("detector link drops on projection 1 and comes back",
         {"kind": "disconnect", "device": "detector", "at_projection": 1}, DETECTOR_LINKED, "retry"),
    Case("disk full writing frame 3", {"kind": "disk_full", "device": "writer", "at_frame": 3},
         BACKENDS, "abort", kept=3),
    Case("write error on projection 2", {"kind": "write_error", "device": "writer", "at_projection": 2},
         BACKENDS, "abort", kept=P + 2),
]
PARAMS = [pytest.param(backend, case, id=f"{backend}: {case.name} -> {case.reaction}")
          for backend in BACKENDS for case in CASES if backend in case.backends]


@pytest.fixture(scope="module")
def table(request):
    """Rows of the observed matrix, printed as a table when the module's tests are done."""
    rows: list[tuple[str, ...]] = []
    yield rows
    header = ("backend", "fault", "reaction (event log)", "beam at end", "frames in the file", "verdict")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [" | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
             for row in [header, tuple("-" * w for w in widths), *rows]]
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and rows:
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            reporter.write_sep("=", "fault matrix")
            for line in lines:
                reporter.write_line(line)


_references: dict[str, ScanFile] = {}


def reference(backend: str, tmp_path_factory) -> ScanFile:
    """The same scan on ``backend`` without faults (run once per backend)."""
    if backend not in _references:
        out = tmp_path_factory.mktemp(f"reference-{backend}") / "scan.nxs"
        with BENCHES[backend]([]) as bench:
            run_scan(bench.config, bench.instruments, out)
        _references[backend] = read_scan(out)
        assert _references[backend].reactions == []
    return _references[backend]


def frame_problems(found: ScanFile, ref: ScanFile, n: int) -> list[str]:
    """What is wrong with the file's frames, expected ``n`` as planned (kind and angle), each as bright as
    the fault-free scan's (a frame exposed while the beam was cut is not), darks dark and flats bright."""
    if found.keys.tolist() != KEYS[:n]:
        return [f"image keys {found.keys.tolist()}, planned {KEYS[:n]}"]
    problems = []
    if not np.allclose(found.angles, ANGLES[:n], atol=0.01):
        problems.append(f"angles {found.angles.round(2).tolist()}, planned {ANGLES[:n]}")
    dark, expected = found.keys == 2, ref.means[:n]
    off = (np.abs(found.means - expected) > np.where(dark, 5.0, 0.03 * expected)).nonzero()[0]  # counts; 3 %
    problems += [f"frame {i}: mean {found.means[i]:.0f} counts, {expected[i]:.0f} without faults" for i in off]
    if not found.means[dark].max() < ref.means[ref.keys == 1].min() / 2:
        problems.append("a dark is not dark")
    if not found.means[found.keys == 0].max(initial=0) < ref.means[ref.keys == 1].min():
        problems.append("a projection is as bright as a flat")
    return problems


@pytest.mark.parametrize("backend, case", PARAMS)
def test_fault_matrix(backend, case, table, tmp_path, tmp_path_factory):
    ref = reference(backend, tmp_path_factory)
    out = tmp_path / "scan.nxs"
    with BENCHES[backend]([case.fault], case.garble) as bench:
        error = None
        try:
            result = run_scan(bench.config, bench.instruments, out)
        except ScanAborted as aborted:
            error = aborted
        beam_on = bench.tube._beam  # the simulated tube's own high-voltage flag (readable once closed)
        hits = [hit.what for hit in bench.schedule.hits]
    found = read_scan(out)
    kept = len(found.keys)
    reactions = list(dict.fromkeys(found.reactions))
    problems = frame_problems(found, ref, kept)
    expected = reactions == [case.reaction] and not beam_on and kept == (case.kept or PLANNED) and not problems
    table.append((backend, case.name, ", ".join(reactions) or "none", "ON" if beam_on else "off",
                  f"{kept} of {PLANNED}" + (f" ({found.status})" if found.status != "complete" else ""),
                  "as expected" if expected else "; ".join(problems) or "UNEXPECTED"))

    assert hits, f"the fault never struck: {case.fault}"
    assert not beam_on
    assert reactions == [case.reaction], found.events
    if case.kept is None:
        assert error is None and found.status == "complete"
        assert result.frames_written == kept == PLANNED
    else:
        assert error is not None and found.status == "aborted"
        assert error.frames_written == kept == case.kept
    assert problems == []
