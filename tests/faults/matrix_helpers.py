"""Helpers of the fault matrix (test_fault_matrix.py): one tiny scan per backend, run against simulators
that share one FaultSchedule, and what the file it leaves says (reactions, frames).

Backends: "in-process" (sim.toml, simulated clock), "serial" (Hamamatsu tube and Zaber stages over
socket:// to WireServers started here, the in-process panel), "VISA" (Spellman generator and PI stages
over pyvisa-py TCPIP SOCKET), "EPICS" (epics_beamline: tube, motor records and areaDetector over Channel
Access), and the wire detectors with the in-process tube and stages, which their panels see: "camserver"
(the camserver driver over pyvisa-py against a PILATUS 100K simulator, image files in a temporary folder)
and "Dexela" (the Dexela driver: registers over socket://, frames on the TCP frame stream). The wire
servers and the IOC join the schedule themselves, so the instruments are built here with that schedule
(``instruments_on``) rather than by ``build_instruments``, which makes its own.

Channel Access: pyepics reads its environment once. tests/drivers/epics/conftest.py sets it (ports by
role, ``matrix`` among them) when pytest collects that folder; without it, importing this module sets
the same variables for one port of its own, before any test starts Channel Access. ``ca_port()`` reads
the port when a test runs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import tempfile
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import h5py
import numpy as np
from fault_helpers import merged

from microct.config import ScanConfig, parse_config
from microct.geometry import Geometry
from microct.instruments import Instruments, build_instruments
from microct.simulators.bench import schedule_of
from microct.simulators.faults import FaultSchedule
from microct.simulators.source import SimulatedSource, SimulatedSourceOptions
from microct.testing.waiting import wait_until

SCAN = {"n_projections": 4, "n_darks": 1, "n_flats": 1, "references_at": "start", "exposure_s": 0.01,
        "binning": 1, "settle_s": 0.0, "stable_hold_s": 0.05, "sample_out_position_mm": 8.0, "move_timeout_s": 1.0,
        "recovery": {"retries": 3, "backoff_s": 0.05, "arc_retakes": 2, "arc_wait_s": 0.05, "frame_retakes": 2,
                     "interlock_timeout_s": 5.0}}
"""1 dark, 1 flat, projections at 0, 90, 180, 270 deg (file frames 2-5); quick recovery."""
DARKS, FLATS, PROJECTIONS = 1, 1, 4
FIRST_PROJECTION = DARKS + FLATS
PANEL = {"rows": 32, "columns": 32, "pixel_pitch_um": 1600.0}
"""±2.56 mm at the sample (M = 10): the BGA board (6 mm square) leaves it entirely 8 mm out."""
WIRE_DETECTORS = ("camserver", "Dexela")
BACKENDS = ("in-process", "serial", "VISA", "EPICS", *WIRE_DETECTORS)

ROTATION_DEG_S, SAMPLE_OUT_MM_S = 1440.0, 200.0
"""Stage speeds, driver and simulator alike, on every backend but the wire detectors' (faster than the
stage tables: the real clock's scans stay short)."""
IN_PROCESS_STAGES = {"rotation": {"options": {"max_velocity": ROTATION_DEG_S, "acceleration": 1e5}},
                     "sample_out": {"options": {"max_velocity": SAMPLE_OUT_MM_S, "acceleration": 1e4}}}
FAST_ROTATION, FAST_SAMPLE_OUT = {"max_speed": ROTATION_DEG_S}, {"max_speed": SAMPLE_OUT_MM_S}  # Zaber
PI_ROTATION, PI_SAMPLE_OUT = {"max_velocity": ROTATION_DEG_S}, {"max_velocity": SAMPLE_OUT_MM_S}
QUICK_TUBE = {"warmed_up": True, "ramp_kv_per_s": 1e4, "ramp_ua_per_s": 1e5}
TUBE = {**QUICK_TUBE, "seed": 1}
GENERATOR = {"ramp_kv_per_s": 1e4, "ramp_ua_per_s": 1e6, "seed": 1}
FAST_TUBE = SimulatedSourceOptions(**QUICK_TUBE)
BESIDE_A_WIRE_DETECTOR = {"source": {"options": QUICK_TUBE},
                          "rotation": {"options": {"max_velocity": 5 * ROTATION_DEG_S, "acceleration": 1e6}},
                          "sample_out": {"options": {"max_velocity": 5 * SAMPLE_OUT_MM_S, "acceleration": 1e5}}}
"""The in-process tube and stages beside the wire detectors, in real time: quick ramps, and stages 5 times
as fast as the other backends' (the scan's time goes to the detector: a move takes under 0.05 s)."""
QUICK_MOVE_TIMEOUT_S = 0.4
"""SCAN's move_timeout_s beside the wire detectors (1 s elsewhere): what a stalled stage costs there."""
WIRE_TIMEOUT_S = 0.3
"""Reply time-out of the wire drivers: a lost reply costs this much."""
EPICS_READ_TIMEOUT_S = 1.0
"""The EPICS tube driver's time-out (it connects its PVs within it, too)."""
FRAME_MARGIN_S = 0.3
"""How late a wire detector's frame may be before the driver gives up on it (camserver ``margin_s``,
Dexela ``readout_margin_s``): a frame that never comes costs this much."""
CAMSERVER = {"model": "100K", "image_path": "/ramdisk/microct", "reply_timeout_s": WIRE_TIMEOUT_S,
             "margin_s": FRAME_MARGIN_S}
"""The smallest PILATUS (487 × 195 pixels of 172 µm: ±4.2 mm at the sample, the board 8 mm out clear of it)."""
DEXELA = {**PANEL, "frame_channel": "tcp", "readout_margin_s": FRAME_MARGIN_S, "serial": {"timeout_s": WIRE_TIMEOUT_S}}


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_drivers_conftest = _load(Path(__file__).parents[1] / "drivers" / "conftest.py", "drivers_conftest")
no_pause_after_closing_a_socket = _drivers_conftest.no_pause_after_closing_a_socket
"""The wire tests' fixture: pyserial's 0.3 s pause after closing a socket:// port, skipped."""


def packaged_config(name: str) -> dict:
    return tomllib.loads(files("microct.configs").joinpath(name).read_text())


# -- Channel Access ------------------------------------------------------------------------------------------
def _ca_environment() -> None:
    """Give Channel Access a ``matrix`` IOC port if tests/drivers/epics/conftest.py has not (see above)."""
    roles = os.environ.get("MICROCT_TEST_IOC_PORTS", "")
    if "matrix=" in roles:
        return
    from microct.simulators.epics_ioc import free_port

    port = free_port()
    os.environ["MICROCT_TEST_IOC_PORTS"] = f"{roles} matrix={port}".strip()
    os.environ["EPICS_CA_ADDR_LIST"] = f"{os.environ.get('EPICS_CA_ADDR_LIST', '')} 127.0.0.1:{port}".strip()
    os.environ["EPICS_CA_AUTO_ADDR_LIST"] = "NO"
    os.environ.setdefault("EPICS_CA_SERVER_PORT", str(port))
    os.environ.setdefault("EPICS_CA_MAX_ARRAY_BYTES", str(16 * 2**20))


_ca_environment()


def ca_port() -> int:
    """The ``matrix`` IOC port (read when a test runs: the epics conftest may have set it since import)."""
    return int(re.search(r"\bmatrix=(\d+)", os.environ["MICROCT_TEST_IOC_PORTS"])[1])


# -- instruments ---------------------------------------------------------------------------------------------
def instruments_on(config: ScanConfig, schedule: FaultSchedule) -> Instruments:
    """The drivers ``config`` names, sharing ``schedule`` with the simulators already serving them (the
    in-process panel joins it here)."""
    return build_instruments(config, faults=schedule)


@dataclass
class Bench:
    """One backend ready to scan: the configuration, its instruments, and the simulated tube behind the
    source driver (to tell whether the beam is off at the end)."""

    config: ScanConfig
    instruments: Instruments
    tube: SimulatedSource

    @property
    def schedule(self) -> FaultSchedule:
        return schedule_of(self.instruments)


def _config(data: dict, faults: list[dict], detector: dict | None = None, scan: dict | None = None) -> ScanConfig:
    """``data`` with SCAN (updated by ``scan``), the detector options (default: PANEL) and ``faults``."""
    data = merged(data, {"scan": {**SCAN, **(scan or {})}, "detector": {"options": detector or PANEL},
                         "simulation": {"seed": 1, "faults": faults}})
    return parse_config(data)


@contextlib.contextmanager
def in_process(faults: list[dict], garble: str = "corrupt") -> Iterator[Bench]:
    """sim.toml in simulated time: every instrument an in-process simulator (stages as fast as the other
    backends')."""
    config = _config(merged(packaged_config("sim.toml"), IN_PROCESS_STAGES), faults)
    instruments = build_instruments(config)
    yield Bench(config, instruments, instruments.source)


@contextlib.contextmanager
def over_serial(faults: list[dict], garble: str = "corrupt") -> Iterator[Bench]:
    """sim-serial.toml: Hamamatsu and Zaber wire simulators on TCP ports of their own."""
    from microct.simulators.hamamatsu import HamamatsuResponder
    from microct.simulators.wire import WireServer
    from microct.simulators.zaber import ZaberResponder

    data = packaged_config("sim-serial.toml")
    schedule = FaultSchedule(faults, seed=1)
    tube = HamamatsuResponder(model="L10711", faults=schedule, **TUBE)
    stages = ZaberResponder(overrides={1: FAST_ROTATION, 2: FAST_SAMPLE_OUT}, faults=schedule)
    servers = [WireServer(tube, "hamamatsu", schedule, garble), WireServer(stages, "zaber", schedule, garble)]
    try:
        tube_url, stages_url = (server.serve_serial("tcp") for server in servers)
        serial = {"timeout_s": WIRE_TIMEOUT_S}
        config = _config(merged(data, {
            "source": {"connection": tube_url, "options": {"timeout_s": WIRE_TIMEOUT_S}},
            "rotation": {"connection": stages_url, "options": {"overrides": FAST_ROTATION, "serial": serial}},
            "sample_out": {"connection": stages_url, "options": {"overrides": FAST_SAMPLE_OUT, "serial": serial}}}),
            faults)
        yield Bench(config, instruments_on(config, schedule), tube.source)
    finally:
        for server in servers:
            server.stop()


@contextlib.contextmanager
def over_visa(faults: list[dict], garble: str = "corrupt") -> Iterator[Bench]:
    """sim-visa.toml: Spellman and PI wire simulators behind pyvisa-py TCPIP SOCKET sessions."""
    from microct.simulators.pi_gcs import PIResponder
    from microct.simulators.spellman import SpellmanResponder
    from microct.simulators.wire import WireServer

    data = packaged_config("sim-visa.toml")
    schedule = FaultSchedule(faults, seed=1)
    generator = SpellmanResponder(faults=schedule, **GENERATOR)
    stages = PIResponder(overrides={1: PI_ROTATION, 2: PI_SAMPLE_OUT}, faults=schedule)
    servers = [WireServer(generator, "spellman", schedule, garble), WireServer(stages, "pi", schedule, garble)]
    try:
        generator_resource, stages_resource = (f"TCPIP::127.0.0.1::{server.serve_tcp()}::SOCKET"
                                               for server in servers)
        visa = {"timeout_s": WIRE_TIMEOUT_S}
        config = _config(merged(data, {
            "source": {"connection": generator_resource, "options": {"visa": visa}},
            "rotation": {"connection": stages_resource, "options": {"overrides": PI_ROTATION, "visa": visa}},
            "sample_out": {"connection": stages_resource, "options": {"overrides": PI_SAMPLE_OUT, "visa": visa}}}),
            faults)
        yield Bench(config, instruments_on(config, schedule), generator.source)
    finally:
        for server in servers:
            server.stop()


_prefixes = iter(range(1_000_000))


@contextlib.contextmanager
def over_epics(faults: list[dict], garble: str = "corrupt") -> Iterator[Bench]:
    """sim-epics.toml against the simulated CT IOC, under a prefix of its own (pyepics keeps one channel
    per PV name per session)."""
    from microct.simulators.axis import SimulatedAxisOptions
    from microct.simulators.detector import SimulatedDetectorOptions
    from microct.simulators.epics_beamline import DEFAULT_SAMPLE_OUT, start_beamline

    prefix = f"MX{next(_prefixes)}:"
    data = packaged_config("sim-epics.toml")
    for role in ("source", "rotation", "sample_out", "detector"):
        data[role]["connection"] = data[role]["connection"].replace("CT:", prefix, 1)
    data["rotation"]["options"]["max_velocity"] = ROTATION_DEG_S
    data["source"]["options"]["connect_timeout_s"] = EPICS_READ_TIMEOUT_S
    # a lost reply is a read of the tube's state the IOC answers too late, a dropped link one it answers by
    # closing every client circuit of the IOC (a network glitch; epics_ioc): both at the tube's first read
    # once the fault is due, as on the other links. libca re-connects within ~10 s (its disconnect governor's
    # tick), so the retries back off as sim-epics.toml does (2, 4, 8 s)
    config = _config(data, faults, {**PANEL, "frame_timeout_margin_s": 0.3})
    if any(fault["kind"] == "disconnect" for fault in faults):
        config.scan.recovery = config.scan.recovery.model_copy(update={"backoff_s": 2.0})
    schedule = FaultSchedule(faults, seed=1)
    beamline = start_beamline(prefix, ca_port(), source=FAST_TUBE, seed=1, faults=schedule,
                              reply_late_s=1.5 * EPICS_READ_TIMEOUT_S,
                              panel=SimulatedDetectorOptions(**PANEL, phantom="bga"),
                              rotation=SimulatedAxisOptions(unit="deg", max_velocity=ROTATION_DEG_S, acceleration=1e5),
                              sample_out=DEFAULT_SAMPLE_OUT.model_copy(update={"max_velocity": SAMPLE_OUT_MM_S,
                                                                               "acceleration": 1e4}))
    try:
        yield Bench(config, instruments_on(config, schedule), beamline.source)
    finally:
        beamline.stop()
        _until_channel_access_sees_it_stop(f"{prefix}XRAY:State_RBV")


def _until_channel_access_sees_it_stop(name: str, timeout_s: float = 10.0) -> None:
    """Return once libca has seen the circuit of a stopped IOC close (channel ``name`` of it, which pyepics
    keeps, no longer connected). libca keeps one circuit per server address: the next bench's IOC, on the
    same port, would otherwise get its channels put on the dead circuit if libca is late to tear it down (seen
    on a throttled CPU: the next scan's first read failed, "Virtual circuit disconnect")."""
    import epics.ca

    entry = epics.ca.get_cache(name)
    if entry is not None:
        wait_until(lambda: not epics.ca.isConnected(entry.chid), timeout_s, f"Channel Access to see {name} go")


def _panel_sees(devices: dict, instruments: Instruments) -> None:
    """Show a wire detector simulator's panel the scan's tube and stages (filled into its ``devices``)."""
    devices.update((role, device) for role, device in instruments.devices().items() if role != "detector")


@contextlib.contextmanager
def over_camserver(faults: list[dict], garble: str = "corrupt") -> Iterator[Bench]:
    """sim-camserver.toml: the camserver driver over pyvisa-py against the camserver simulator (a 100K),
    in-process tube and stages."""
    from microct.simulators.camserver import CamserverResponder
    from microct.simulators.wire import WireServer

    data = merged(packaged_config("sim-camserver.toml"), BESIDE_A_WIRE_DETECTOR)
    schedule = FaultSchedule(faults, seed=1)
    devices: dict = {}
    with tempfile.TemporaryDirectory(prefix="camserver-") as root:
        responder = CamserverResponder(root, model=CAMSERVER["model"], devices=devices, phantom="bga", seed=1,
                                       geometry=Geometry(**data["geometry"]), faults=schedule)
        with WireServer(responder, "camserver", schedule, garble) as server:
            resource = f"TCPIP::127.0.0.1::{server.serve_tcp()}::SOCKET"
            config = _config(merged(data, {"detector": {"connection": resource}}), faults,
                             {**CAMSERVER, "local_image_path": f"{root}/ramdisk/microct"},
                             {"move_timeout_s": QUICK_MOVE_TIMEOUT_S})
            instruments = instruments_on(config, schedule)
            _panel_sees(devices, instruments)
            yield Bench(config, instruments, instruments.source)


@contextlib.contextmanager
def over_dexela(faults: list[dict], garble: str = "corrupt") -> Iterator[Bench]:
    """sim-dexela.toml at M = 10: the Dexela driver against the Dexela simulator (registers over socket://,
    frames on its TCP frame stream, 32 × 32 pixels as PANEL), in-process tube and stages."""
    from microct.simulators.dexela import DexelaResponder
    from microct.simulators.wire import WireServer

    data = merged(packaged_config("sim-dexela.toml"),
                  {**BESIDE_A_WIRE_DETECTOR, "geometry": {"source_object_distance_mm": 50.0}})
    schedule = FaultSchedule(faults, seed=1)
    devices: dict = {}
    responder = DexelaResponder(frame_port=0, **PANEL, devices=devices, geometry=data["geometry"], phantom="bga",
                                seed=1, faults=schedule)
    try:
        with WireServer(responder, "dexela", schedule, garble) as server:
            config = _config(merged(data, {"detector": {"connection": server.serve_serial("tcp")}}),
                             faults, {**DEXELA, "frame_address": f"127.0.0.1:{responder.frame_port}"},
                             {"move_timeout_s": QUICK_MOVE_TIMEOUT_S})
            instruments = instruments_on(config, schedule)
            _panel_sees(devices, instruments)
            yield Bench(config, instruments, instruments.source)
    finally:
        responder.stop()


BENCHES = {"in-process": in_process, "serial": over_serial, "VISA": over_visa, "EPICS": over_epics,
           "camserver": over_camserver, "Dexela": over_dexela}


# -- the file ------------------------------------------------------------------------------------------------
REACTIONS = (  # an event of microct.policies / the sequencer → the reaction it reports
    ("interlock pause", re.compile(r": interlock opened \(")),
    ("arc procedure", re.compile(r": tube fault during the frame \(")),
    ("retake", re.compile(r"; retaken at the same angle \(")),
    ("retry", re.compile(r"; retry \d+ of \d+ in ")),
    ("move restarted", re.compile(r"^starting the move to .* failed: ")),
    ("abort", re.compile(r"^scan aborted: ")),
)


@dataclass(frozen=True)
class ScanFile:
    status: str
    keys: np.ndarray
    angles: np.ndarray
    means: np.ndarray
    """Mean counts of each frame."""
    events: list[str]

    @property
    def reactions(self) -> list[str]:
        """The reactions the event log reports, in order (one per event)."""
        return [name for message in self.events for name, pattern in REACTIONS if pattern.search(message)]


def read_scan(path: Path) -> ScanFile:
    with h5py.File(path, "r") as f:
        data = f["entry/instrument/detector/data"][()]
        return ScanFile(f["entry/logs/status"][()].decode(), f["entry/instrument/detector/image_key"][()],
                        f["entry/sample/rotation_angle"][()],
                        data.reshape(len(data), -1).mean(axis=1) if len(data) else np.zeros(0),
                        [m.decode() for m in f["entry/logs/events/message"][()]])
