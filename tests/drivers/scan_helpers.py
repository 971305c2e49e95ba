"""Helpers for the tests of the real drivers against the wire simulators."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import h5py
import numpy as np
from nxtomo.application.nxtomo import NXtomo

from microct.config import ScanConfig, parse_config
from microct.errors import ScanAborted
from microct.instruments import build_instruments
from microct.sequencer import run_scan


class Counting:
    """Wraps a responder, counting the request lines it answers; ``when(line, action)`` runs ``action()``
    once, before answering the first line equal to ``line`` (the scan waits for that answer)."""

    def __init__(self, responder) -> None:
        self.responder = responder
        self.request_terminators = responder.request_terminators
        self.lines: list[bytes] = []
        self._triggers: dict[bytes, Callable[[], None]] = {}

    def when(self, line: bytes, action: Callable[[], None]) -> None:
        self._triggers[line] = action

    def respond(self, line: bytes) -> list[bytes]:
        self.lines.append(line)
        if line in self._triggers:
            self._triggers.pop(line)()
        return self.responder.respond(line)


class Spoiled:
    """Wraps a responder: once ``mode`` is set, ``line`` is answered ``replies[mode]`` (an empty list:
    not at all) instead of what the device would say."""

    def __init__(self, responder, line: bytes, replies: dict[str, list[bytes]]) -> None:
        self.responder, self.line, self.replies = responder, line, replies
        self.mode: str | None = None

    def respond(self, line: bytes) -> list[bytes]:
        return self.replies[self.mode] if self.mode and line == self.line else self.responder.respond(line)


def structure(path) -> dict[str, tuple]:
    """Every object of a file: its kind, dtype, attribute names and, outside the time-stamped logs (whose
    length depends on timing), its shape; not values."""
    found = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: found.__setitem__(name, (
            type(obj).__name__, str(getattr(obj, "dtype", "")), tuple(sorted(obj.attrs)),
            None if name.startswith("entry/logs/") else getattr(obj, "shape", None))))
    found.pop("entry/logs/simulated_end_time", None)  # only a scan on a simulated clock (a twin) has one
    return found


def after_requests(counting: Counting, marker: bytes, n: int, then: Callable[[], None]) -> threading.Thread:
    """A running thread that calls ``then()`` once ``n`` request lines containing ``marker`` have reached
    ``counting`` (for what cannot run inside the server's own thread, such as stopping it)."""
    def watch() -> None:
        deadline = time.monotonic() + 30
        while sum(marker in line for line in counting.lines) < n and time.monotonic() < deadline:
            time.sleep(0.002)
        then()

    thread = threading.Thread(target=watch)
    thread.start()
    return thread


def aborted_file_events(path, aborted: ScanAborted) -> list[str]:
    """Check that the file is marked aborted and holds every frame written (more than 3 darks and 3 flats);
    its event log."""
    with h5py.File(path, "r") as f:
        assert f["entry/logs/status"][()].decode() == "aborted"
        assert f["entry/instrument/detector/data"].shape[0] == aborted.frames_written > 3 + 3
        return [m.decode() for m in f["entry/logs/events/message"][()]]


def load_nxtomo(path) -> tuple[np.ndarray, np.ndarray]:
    """Load the file with the ``nxtomo`` package (a valid NXtomo); its image keys and angles (degree)."""
    nx = NXtomo().load(str(path), "entry", detector_data_as="as_numpy_array")
    keys = np.array([key.value for key in nx.instrument.detector.image_key_control])
    return keys, nx.sample.rotation_angle.to("degree").magnitude


def in_process_twin(config: ScanConfig, out):
    """Run the same scan with the in-process simulators in simulated time; returns the file."""
    data = config.model_dump(mode="json")
    data["source"] = {"driver": "sim-source", "options": {"warmed_up": True}}
    data["rotation"] = {"driver": "sim-axis", "options": {"unit": "deg"}}
    data["sample_out"] = {"driver": "sim-axis", "options": {"unit": "mm"}}
    data["scan"]["spot_mode"] = "small"
    data["scan"]["current_ua"] = min(data["scan"]["current_ua"], 100.0)  # within the sim tube's small spot
    data["simulation"]["clock"] = "simulated"
    twin = parse_config(data)
    run_scan(twin, build_instruments(twin), out)
    return out


