"""`microct check` is a strictly read-only commissioning report (issue 14, item 7).

On every shipped configuration it reports every device, and three recorders show it wrote nothing: every
request line the wire simulators received is a query of its protocol (each codec's ``is_query``, from the
manual), every Channel Access put the simulated IOC received (none), and every call of a device hook that
sets, switches or moves something (none). The lab examples' links are pointed at simulators served here;
the in-process simulators need nothing. Putting a write back at connect makes the recorders see it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from caproto import WriteNotifyRequest, WriteRequest
from caproto.server.common import VirtualCircuit

from microct import cli
from microct.cli import main
from microct.config import parse_config
from microct.drivers.camserver import codec as camserver_codec
from microct.drivers.dexela import codec as dexela_codec
from microct.drivers.hamamatsu import codec as hamamatsu_codec
from microct.drivers.pi_gcs import codec as pi_codec
from microct.drivers.spellman.codec import COMMAND_SETS, Codec
from microct.drivers.zaber import codec as zaber_codec
from microct.drivers.zaber.driver import ZaberAxis
from microct.geometry import Geometry
from microct.simulators import epics_ad_ioc, epics_ioc, epics_motor_ioc
from microct.simulators.axis import SimulatedAxisOptions
from microct.simulators.bench import Bench as SimulationBench
from microct.simulators.camserver import CamserverResponder
from microct.simulators.detector import SimulatedDetector, SimulatedDetectorOptions
from microct.simulators.dexela import DexelaResponder
from microct.simulators.epics_beamline import start_beamline
from microct.simulators.epics_ioc import run_ioc_in_thread
from microct.simulators.hamamatsu import HamamatsuResponder
from microct.simulators.pi_gcs import PIResponder
from microct.simulators.source import SimulatedSourceOptions
from microct.simulators.spellman import SpellmanResponder
from microct.simulators.wire import WireServer
from microct.simulators.zaber import ZaberResponder
from microct.testing.contracts import AxisContract, DetectorContract, SourceContract
from microct.testing.rigs import fast_socket_close

SHIPPED = sorted(entry.name for entry in files("microct.configs").iterdir() if entry.name.endswith(".toml"))
EPICS_CONFIGS = ("sim-epics.toml", "lab-epics.example.toml")
WRITE_HOOKS = {"source": SourceContract.write_hooks, "axis": AxisContract.write_hooks,
               "detector": DetectorContract.write_hooks}
"""Per device kind, the hooks that set, switch or move something (the contracts' lists)."""
XRV_OVER_TCP = Codec(COMMAND_SETS["XRV"], checksum=False)  # a TCPIP SOCKET resource carries no checksum


@pytest.fixture(autouse=True)
def no_pause_after_closing_a_socket(monkeypatch):
    fast_socket_close(monkeypatch)


class Recorder:
    """A wire responder that records every request line before answering it."""

    def __init__(self, responder: Any) -> None:
        self.responder = responder
        self.lines: list[bytes] = []
        self.request_terminators = responder.request_terminators

    def __getattr__(self, name: str) -> Any:  # single_byte_commands, fault_device ...
        return getattr(self.responder, name)

    def respond(self, line: bytes) -> list[bytes]:
        self.lines.append(line)
        return self.responder.respond(line)


@dataclass
class Bench:
    """The simulators served for one ``microct check``: what each received, and how its protocol tells a
    query (``is_query``)."""

    stack: contextlib.ExitStack
    tmp_path: Path
    wires: list[tuple[str, Callable[[], list[bytes]], Callable[[bytes], bool]]] = field(default_factory=list)
    unasked: set[str] = field(default_factory=set)
    """Simulators a check asks nothing (a Dexela: its register protocol has no query to report)."""

    def serve(self, name: str, responder: Any, is_query: Callable[[bytes], bool], link: str = "tcp",
              asked: bool = True) -> str:
        """Serve ``responder`` (recording its lines) on ``link``: "tcp" (a socket:// URL) or "visa";
        ``asked``: whether a check sends it anything."""
        if not asked:
            self.unasked.add(name)
        if hasattr(responder, "connect"):  # per-client handlers: the responder records its own lines
            server, lines = WireServer(responder, name), (lambda: list(responder.lines))
        else:
            recorder = Recorder(responder)
            server, lines = WireServer(recorder, name), (lambda: list(recorder.lines))
        self.stack.enter_context(server)
        self.wires.append((name, lines, is_query))
        if link == "visa":
            return f"TCPIP::127.0.0.1::{server.serve_tcp()}::SOCKET"
        return server.serve_serial("tcp")

    def writes(self) -> list[str]:
        """Every line a simulator received that is not a query of its protocol."""
        return [f"{name}: {line!r}" for name, lines, is_query in self.wires for line in lines() if not is_query(line)]

    def silent(self) -> list[str]:
        """The simulators that received nothing (each must have been asked something)."""
        return [name for name, lines, _ in self.wires if not lines() and name not in self.unasked]


# -- pointing each configuration's links at simulators ------------------------------------------------------
def tube(bench: Bench, data: dict) -> None:
    responder = HamamatsuResponder(model=data["source"]["options"]["model"])
    data["source"]["connection"] = bench.serve("hamamatsu", responder, hamamatsu_codec.is_query)


def zaber_chain(bench: Bench, data: dict) -> None:
    url = bench.serve("zaber", ZaberResponder(), zaber_codec.is_query)
    data["rotation"]["connection"] = data["sample_out"]["connection"] = url


def generator(bench: Bench, data: dict) -> None:
    data["source"]["connection"] = bench.serve("spellman", SpellmanResponder(), XRV_OVER_TCP.is_query, "visa")


def pi_controller(bench: Bench, data: dict) -> None:
    resource = bench.serve("pi", PIResponder(), pi_codec.is_query, "visa")
    data["rotation"]["connection"] = data["sample_out"]["connection"] = resource
    for role in ("rotation", "sample_out"):
        data[role]["options"]["visa"] = {"timeout_s": 1.0}


def pilatus(bench: Bench, data: dict) -> None:
    root = bench.tmp_path / "camserver"
    options = data["detector"]["options"]
    responder = CamserverResponder(root, model=options["model"])
    data["detector"]["connection"] = bench.serve("camserver", responder, camserver_codec.is_query, "visa")
    options["local_image_path"] = str(root / options["image_path"].lstrip("/"))  # camserver makes it at first use


def dexela(bench: Bench, data: dict) -> None:
    options = data["detector"]["options"]
    size = {"rows": options["rows"], "columns": options["columns"]}
    if options["frame_channel"] == "folder":
        folder = bench.tmp_path / "dexela-frames"
        responder = DexelaResponder(frame_folder=str(folder), **size)
        options["frame_folder"] = str(folder)
    else:
        responder = DexelaResponder(frame_port=0, **size)
        options["frame_address"] = f"127.0.0.1:{responder.frame_port}"
    bench.stack.callback(responder.stop)
    data["detector"]["connection"] = bench.serve("dexela", responder, dexela_codec.is_query, asked=False)


def in_process(bench: Bench, data: dict) -> None:
    """Nothing to serve: every instrument is an in-process simulator (their hook calls are recorded)."""


SETUPS: dict[str, tuple[Callable[[Bench, dict], None], ...]] = {
    "sim.toml": (in_process,), "sim-realtime.toml": (in_process,),
    "sim-serial.toml": (tube, zaber_chain), "lab-serial.example.toml": (tube, zaber_chain),
    "sim-visa.toml": (generator, pi_controller), "lab-visa.example.toml": (generator, pi_controller),
    "sim-camserver.toml": (pilatus,), "lab-camserver.example.toml": (generator, pi_controller, pilatus),
    "sim-dexela.toml": (dexela,), "lab-dexela.example.toml": (tube, zaber_chain, dexela),
}


def test_every_shipped_configuration_is_checked():
    assert sorted([*SETUPS, *EPICS_CONFIGS]) == SHIPPED


def shipped(name: str) -> dict:
    return tomllib.loads(files("microct.configs").joinpath(name).read_text())


@dataclass
class Outcome:
    code: int
    out: str
    writes: list[str]
    """Non-query lines received, write-hook calls, Channel Access puts: what the check must never do."""


def run_check(name: str, data: dict, bench: Bench, monkeypatch, capsys) -> Outcome:
    """``microct check`` (``cli.main``) on ``data``, its instruments' write hooks recorded."""
    config = parse_config(data, name)
    monkeypatch.setattr(cli, "load_config", lambda path: (config, ""))  # the configuration as pointed here
    hook_calls: list[str] = []
    build = cli.build_instruments

    def recording_build(config, *args, **kwargs):
        instruments = build(config, *args, **kwargs)
        for role, device in instruments.devices().items():
            for hook in WRITE_HOOKS[device.kind]:
                original = getattr(device, hook)

                def recorded(*call_args, _hook=hook, _role=role, _original=original, **call_kwargs):
                    hook_calls.append(f"{_role}.{_hook}{call_args}")
                    return _original(*call_args, **call_kwargs)

                monkeypatch.setattr(device, hook, recorded)
        return instruments

    monkeypatch.setattr(cli, "build_instruments", recording_build)
    monkeypatch.setenv("COLUMNS", "200")  # one table row per finding
    code = main(["check", name])
    out = capsys.readouterr().out
    return Outcome(code, out, bench.writes() + hook_calls)


@pytest.mark.parametrize("name", sorted(SETUPS))
def test_check_reports_every_device_of_a_shipped_configuration_and_writes_nothing(name, tmp_path, monkeypatch,
                                                                                capsys):
    data = shipped(name)
    with contextlib.ExitStack() as stack:
        bench = Bench(stack, tmp_path)
        for setup in SETUPS[name]:
            setup(bench, data)
        outcome = run_check(name, data, bench, monkeypatch, capsys)
        assert bench.silent() == []  # each simulator was asked (the check reached the device)
    assert outcome.writes == []
    assert outcome.code == 0, outcome.out
    for role in ("source", "rotation", "sample_out", "detector"):
        assert f"{role}: " in outcome.out


def test_the_recorders_see_a_write_put_back_at_connect(tmp_path, monkeypatch, capsys):
    """The old connect (``set maxspeed`` to a Zaber stage): both the wire recorder and the hook recorder
    catch it, so the test above would fail."""
    def connect_writing(axis: ZaberAxis, _original=ZaberAxis._after_connect) -> None:
        _original(axis)
        axis._do_set_velocity(axis.velocity)

    monkeypatch.setattr(ZaberAxis, "_after_connect", connect_writing)
    data = shipped("sim-serial.toml")
    with contextlib.ExitStack() as stack:
        bench = Bench(stack, tmp_path)
        tube(bench, data)
        zaber_chain(bench, data)
        outcome = run_check("sim-serial.toml", data, bench, monkeypatch, capsys)
    assert outcome.writes == ["zaber: b'/1 1 set maxspeed 803908'", "zaber: b'/2 1 set maxspeed 894455'",
                              "rotation._do_set_velocity(115.0,)", "sample_out._do_set_velocity(26.0,)"]


# -- the serial links: what the report says -------------------------------------------------------------------
def test_a_device_that_cannot_connect_is_an_error_line_and_every_other_device_is_checked(tmp_path, monkeypatch,
                                                                                        capsys):
    data = shipped("lab-serial.example.toml")
    data["source"]["connection"] = str(tmp_path / "no-such-port")  # the tube's port does not exist
    with contextlib.ExitStack() as stack:
        bench = Bench(stack, tmp_path)
        zaber_chain(bench, data)
        outcome = run_check("lab-serial.example.toml", data, bench, monkeypatch, capsys)
    assert outcome.code == 1
    assert outcome.writes == []
    source, rest = outcome.out.split("rotation: ", 1)
    assert "error" in source and "connect" in source and "no-such-port" in source
    for role in ("sample_out: ", "detector: "):
        assert role in rest
    assert "position" in rest  # the stages were read after the tube failed


def test_codes_show_their_meaning(tmp_path, monkeypatch, capsys):
    """A Zaber stage fresh from power-up: WR, "no reference position"; the Hamamatsu tube before its
    warm-up; both warnings, so the check passes (exit 0)."""
    data = shipped("sim-serial.toml")
    with contextlib.ExitStack() as stack:
        bench = Bench(stack, tmp_path)
        tube(bench, data)
        zaber_chain(bench, data)
        outcome = run_check("sim-serial.toml", data, bench, monkeypatch, capsys)
    assert outcome.code == 0
    rows = [" ".join(line.replace("│", " ").split()) for line in outcome.out.splitlines()]
    assert "warning warning WR: no reference position (home needed)" in rows
    assert any(row.startswith("warning state warm-up needed:") for row in rows)


# -- Channel Access: the simulated IOCs record every put ---------------------------------------------------
@pytest.fixture
def puts(monkeypatch) -> list[str]:
    """Every Channel Access put (write) any IOC of this process receives, by PV name."""
    recorded: list[str] = []
    original = VirtualCircuit._process_command

    async def recording(circuit, command):
        if isinstance(command, (WriteRequest, WriteNotifyRequest)):
            recorded.append(circuit.circuit.channels_sid[command.sid].name)
        return await original(circuit, command)

    monkeypatch.setattr(VirtualCircuit, "_process_command", recording)
    return recorded


def lab_iocs(data: dict) -> Any:
    """The IOCs lab-epics.example.toml names, under its prefixes, as one simulated IOC: the tube, the two
    motor records and an ADPerkinElmer panel of its size with the HDF5 plugin."""
    source = data["source"]["options"]
    tube, tube_ioc = epics_ioc.build(data["source"]["connection"], SimulatedSourceOptions(
        voltage_range_kv=source["voltage_range_kv"], current_range_ua=source["current_range_ua"],
        spot_modes=source["spot_modes"]))
    rotation = epics_motor_ioc.build(data["rotation"]["connection"],
                                     SimulatedAxisOptions(unit="deg", max_velocity=90.0), high_limit=0.0, low_limit=0.0)
    sample = epics_motor_ioc.build(data["sample_out"]["connection"], SimulatedAxisOptions(unit="mm", max_velocity=20.0),
                                   high_limit=100.0, low_limit=-100.0)
    options = data["detector"]["options"]
    panel = SimulatedDetector("detector", SimulatedDetectorOptions(
        rows=options["rows"], columns=options["columns"], pixel_pitch_um=options["pixel_pitch_um"],
        binnings=tuple(options["binnings"])), SimulationBench(geometry=Geometry(source_object_distance_mm=60.0,
                                                                                source_detector_distance_mm=600.0),
                                                            devices={"source": tube}))
    ad_ioc = epics_ad_ioc.build(data["detector"]["connection"], panel, vendor="perkinelmer")
    return run_ioc_in_thread({**tube_ioc.pvdb, **rotation.pvdb, **sample.pvdb, **ad_ioc.pvdb}, "lab-epics")


def check_over_channel_access(path: Path, port: int, *, patch: str = "") -> subprocess.CompletedProcess:
    """``microct check PATH`` in its own process (its own Channel Access context), searching the IOC on
    127.0.0.1:``port`` only; ``patch``: Python run before it (a driver changed for the test)."""
    env = {**os.environ, "EPICS_CA_ADDR_LIST": f"127.0.0.1:{port}", "EPICS_CA_AUTO_ADDR_LIST": "NO",
           "COLUMNS": "200"}
    code = f"import sys\n{patch}\nfrom microct.cli import main\nsys.exit(main(['check', {str(path)!r}]))"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", EPICS_CONFIGS)
def test_check_over_channel_access_reports_every_device_and_puts_nothing(name, tmp_path, puts):
    text = files("microct.configs").joinpath(name).read_text()
    data = tomllib.loads(text)
    if name == "sim-epics.toml":
        iocs = start_beamline(data["source"]["connection"].removesuffix("XRAY:"))
        port = iocs.handle.port
    else:
        iocs = lab_iocs(data)
        port = iocs.port
        lab_addresses = f'addr_list = "{data["source"]["options"]["addr_list"]}"'
        assert lab_addresses in text
        text = text.replace(lab_addresses, f'addr_list = "127.0.0.1:{port}"')  # the IOC served here
    path = tmp_path / name
    path.write_text(text)
    try:
        done = check_over_channel_access(path, port)
    finally:
        iocs.stop()
    assert puts == []
    assert done.returncode == 0, done.stdout + done.stderr
    for role in ("source", "rotation", "sample_out", "detector"):
        assert f"{role}: " in done.stdout
    assert "error" not in done.stdout.replace("error register", "")


def test_the_put_recorder_sees_a_put_put_back_at_connect(tmp_path, puts):
    """The old connect (``VELO`` put to a motor record): the IOC's recorder catches it."""
    beamline = start_beamline("CT:")
    path = tmp_path / "sim-epics.toml"
    path.write_text(files("microct.configs").joinpath("sim-epics.toml").read_text())
    patch = ("from microct.drivers.epics_motor.driver import EpicsMotorAxis as A\n"
             "_connect = A._after_connect\n"
             "A._after_connect = lambda axis: (_connect(axis), axis._do_set_velocity(axis.velocity))")
    try:
        check_over_channel_access(path, beamline.handle.port, patch=patch)
    finally:
        beamline.stop()
    assert sorted(puts) == ["CT:ROT:m1.VELO", "CT:SMP:m2.VELO"]
