"""Helpers for the tests of the real drivers against the wire simulators."""

from __future__ import annotations

import contextlib
import re
import select
import subprocess
import sys
from collections.abc import Iterator

import h5py

from microct.config import ScanConfig, parse_config
from microct.instruments import build_instruments
from microct.sequencer import run_scan


class Counting:
    """Wraps a responder, counting the request lines it answers."""

    def __init__(self, responder) -> None:
        self.responder = responder
        self.request_terminators = responder.request_terminators
        self.lines: list[bytes] = []

    def respond(self, line: bytes) -> list[bytes]:
        self.lines.append(line)
        return self.responder.respond(line)


def structure(path) -> dict[str, tuple]:
    """Every object of a file: its kind, dtype and attribute names (not values, not sizes)."""
    found = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: found.__setitem__(name, (
            type(obj).__name__, str(getattr(obj, "dtype", "")), tuple(sorted(obj.attrs)))))
    return found


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


@contextlib.contextmanager
def sim_serve(name: str, *options: str, extra: tuple[str, ...] = (), timeout_s: float = 30.0) -> Iterator[int]:
    """Run ``microct sim serve NAME --tcp 0 -O OPTION ... EXTRA...`` in its own process; yield the port of
    the ``socket://127.0.0.1:PORT`` URL it prints (checked), and stop it afterwards."""
    arguments = [item for option in options for item in ("-O", option)] + list(extra)
    process = subprocess.Popen([sys.executable, "-m", "microct", "sim", "serve", name, "--tcp", "0", *arguments],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        ready, _, _ = select.select([process.stdout], [], [], timeout_s)
        assert ready, f"sim serve {name}: no URL printed within {timeout_s:g} s"
        url = process.stdout.readline().strip()
        match = re.fullmatch(r"socket://127\.0\.0\.1:(\d+)", url)
        assert match, url
        yield int(match[1])
    finally:
        process.terminate()
        process.wait(timeout=10)
