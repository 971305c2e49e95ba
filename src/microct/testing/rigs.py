"""Test rigs shared by microct's own tests and plug-in packages: a wire simulator served on each link a
driver supports, ``microct sim serve`` in its own process, and a whole scan with one driver under test
and in-process simulators for the other instruments.

Needs pytest (the ``test`` extra) only for ``fast_socket_close``.
"""

from __future__ import annotations

import contextlib
import re
import select
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

from microct.config import parse_config
from microct.instruments import build_instruments
from microct.options import deep_merged
from microct.sequencer import ScanResult, run_scan
from microct.simulators.wire import LOOPBACK, Responder, WireServer

SerialLink = Literal["pty", "tcp"]
SERIAL_LINKS: tuple[SerialLink, ...] = ("pty", "tcp")
"""The links a serial driver is tested over: a pseudo-terminal, and pyserial's ``socket://`` URL."""


@dataclass
class ServedLink:
    """A responder served by a WireServer: ``address`` is what a driver's ``connection`` names."""

    server: WireServer
    address: str
    link: str

    def mute(self, muted: bool = True) -> None:
        """Silence the server (requests neither carried out nor answered): a fault contract's ``mute``."""
        self.server.muted = muted


@contextlib.contextmanager
def served(responder: Responder, link: Literal["pty", "tcp", "visa"], faults: Any = None,
           name: str = "simulator") -> Iterator[ServedLink]:
    """Serve ``responder`` on ``link``: "pty" (a device path), "tcp" (a ``socket://`` URL for pyserial)
    or "visa" (a ``TCPIP::127.0.0.1::PORT::SOCKET`` resource); stopped on exit."""
    server = WireServer(responder, name, faults=faults)
    try:
        if link == "visa":
            address = f"TCPIP::{LOOPBACK}::{server.serve_tcp()}::SOCKET"
        else:
            address = server.serve_serial(link)
        yield ServedLink(server, address, link)
    finally:
        server.stop()


def fast_socket_close(monkeypatch: Any) -> None:
    """Skip pyserial's 0.3 s sleep after closing a ``socket://`` port ("in case of quick reconnects"): a
    local WireServer accepts at once. Call it from an autouse fixture with pytest's ``monkeypatch``."""
    from serial.urlhandler import protocol_socket

    monkeypatch.setattr(protocol_socket, "time", SimpleNamespace(sleep=lambda seconds: None))


@contextlib.contextmanager
def sim_served(name: str, *options: str, extra: tuple[str, ...] = (), timeout_s: float = 30.0) -> Iterator[str]:
    """Run ``microct sim serve NAME -O OPTION ... EXTRA...`` in its own process (its own GIL, as a real
    device's firmware); yield the first line it prints (the pty path or the URL) and stop it afterwards."""
    arguments = [item for option in options for item in ("-O", option)] + list(extra)
    process = subprocess.Popen([sys.executable, "-m", "microct", "sim", "serve", name, *arguments],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    try:
        ready, _, _ = select.select([process.stdout], [], [], timeout_s)
        assert ready, f"sim serve {name}: nothing printed within {timeout_s:g} s"
        yield process.stdout.readline().strip()
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextlib.contextmanager
def sim_serve(name: str, *options: str, extra: tuple[str, ...] = (), timeout_s: float = 30.0) -> Iterator[int]:
    """``sim_served`` on a free TCP port of 127.0.0.1: yields the port."""
    with sim_served(name, *options, extra=("--tcp", "0", *extra), timeout_s=timeout_s) as url:
        match = re.fullmatch(r"socket://127\.0\.0\.1:(\d+)", url)
        assert match, url
        yield int(match[1])


SMALL_SCAN: dict[str, Any] = {
    "source": {"driver": "sim-source", "options": {"warmed_up": True, "ramp_kv_per_s": 1000.0,
                                                   "ramp_ua_per_s": 10000.0}},
    "rotation": {"driver": "sim-axis", "options": {"unit": "deg", "max_velocity": 720.0, "acceleration": 1e4}},
    "detector": {"driver": "sim-detector", "options": {"rows": 32, "columns": 32, "pixel_pitch_um": 1600.0}},
    "geometry": {"source_object_distance_mm": 100.0, "source_detector_distance_mm": 500.0},
    "scan": {"n_projections": 4, "range_deg": 180.0, "voltage_kv": 80.0, "current_ua": 100.0,
             "spot_mode": "small", "exposure_s": 0.01, "n_darks": 1, "n_flats": 0, "stable_hold_s": 0.0,
             "settle_s": 0.0},
}
"""A scan of a few frames with in-process simulators in every role (real clock): replace the role of the
driver under test (``scan_with``)."""


def scan_with(roles: Mapping[str, Mapping[str, Any]], changes: Mapping[str, Any] | None = None,
              base: Mapping[str, Any] = SMALL_SCAN) -> dict[str, Any]:
    """``base`` with the instrument tables of ``roles`` replaced (e.g. ``{"rotation": {"driver": "my-stage",
    "connection": url, "options": {...}}}``) and ``changes`` merged in: a configuration as a dict."""
    data = {**base, **roles}
    return deep_merged(data, changes or {})


@dataclass(frozen=True)
class ScanFile:
    """What a test checks first in a scan's NXtomo file: its status ("complete", "aborted", "running"), the
    image key of every frame (0 projection, 1 flat, 2 dark) and the measured rotation angle (deg)."""

    status: str
    image_keys: list[int]
    angles_deg: list[float]

    @property
    def projection_angles_deg(self) -> list[float]:
        return [angle for angle, key in zip(self.angles_deg, self.image_keys) if key == 0]


def read_scan(path: str | Path) -> ScanFile:
    """The status, image keys and measured angles of a scan file (see ``ScanFile``)."""
    import h5py

    with h5py.File(path, "r") as f:
        status = f["entry/logs/status"][()]
        return ScanFile(status.decode() if isinstance(status, bytes) else str(status),
                        [int(key) for key in f["entry/instrument/detector/image_key"][()]],
                        [float(angle) for angle in f["entry/sample/rotation_angle"][()]])


def run_small_scan(data: Mapping[str, Any], output: str | Path) -> ScanResult:
    """Validate ``data``, build its instruments and run the scan into ``output`` (an NXtomo file)."""
    config = parse_config(dict(data), "rig")
    return run_scan(config, build_instruments(config), Path(output))
