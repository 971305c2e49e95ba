"""Whole CT scans with the real VISA drivers (Spellman, PI) over pyvisa-py against the wire simulators
(configs/sim-visa.toml)."""

from __future__ import annotations

import threading
import time
import tomllib
from importlib.resources import files

import h5py
import pytest

from microct.config import parse_config
from microct.devices import SourceState
from microct.errors import CommunicationError, DeviceTimeoutError, ScanAborted
from microct.instruments import build_instruments
from microct.sequencer import run_scan
from microct.simulators.pi_gcs import PIResponder
from microct.simulators.spellman import SpellmanResponder
from microct.simulators.wire import WireServer
from scan_helpers import Counting, in_process_twin, structure

GENERATOR = {"ramp_kv_per_s": 1e4, "ramp_ua_per_s": 1e6, "seed": 1}
SMALL_SCAN = {"n_projections": 12, "exposure_s": 0.01, "n_darks": 3, "n_flats": 3, "settle_s": 0.0,
              "stable_hold_s": 0.1, "sample_out_position_mm": 5.0}


@pytest.fixture
def bench():
    """Served simulators and a parsed sim-visa.toml pointing at them: (config, generator, stages, servers)."""
    generator, stages = Counting(SpellmanResponder(**GENERATOR)), Counting(PIResponder())
    servers = {"generator": WireServer(generator, "spellman"), "stages": WireServer(stages, "pi")}
    resources = {name: f"TCPIP::127.0.0.1::{server.serve_tcp()}::SOCKET" for name, server in servers.items()}
    data = tomllib.loads(files("microct.configs").joinpath("sim-visa.toml").read_text())
    data["source"]["connection"] = resources["generator"]
    data["rotation"]["connection"] = data["sample_out"]["connection"] = resources["stages"]
    for role in ("rotation", "sample_out"):  # a dead controller shows in 1 s, not the 7 s of PI's own client
        data[role]["options"]["visa"] = {"timeout_s": 1.0}
    data["scan"].update(SMALL_SCAN)
    yield parse_config(data), generator, stages, servers
    for server in servers.values():
        server.stop()


def test_full_scan_over_visa_matches_the_in_process_file(bench, tmp_path):
    config, generator, stages, _ = bench
    out = tmp_path / "visa.nxs"
    result = run_scan(config, build_instruments(config), out)
    assert (result.darks, result.flats, result.projections) == (3, 3, 12)
    with h5py.File(out, "r") as f:
        assert f["entry/logs/status"][()].decode() == "complete"
        keys = f["entry/instrument/detector/image_key"][()]
        angles = f["entry/sample/rotation_angle"][()][keys == 0]
        current = f["entry/control/data"][()][keys == 0]
    assert angles == pytest.approx([30.0 * i for i in range(12)], abs=0.01)
    assert current == pytest.approx(1000.0, abs=15.0)  # 1 mA within a DAC and an ADC step
    assert generator.responder.source.read_state() is SourceState.STANDBY  # beam off at the end
    assert structure(out) == structure(in_process_twin(config, tmp_path / "in-process.nxs"))


def test_commands_per_projection_are_few(bench, tmp_path):
    """Per projection the Spellman driver answers the panel's tube reads from one status (22) and one
    monitor (19) reply, and the sequencer's check after each beam-on frame from new ones (no reply from
    before the frame); PI: the sequencer's POS?, the detector's two POS?, one MOV+ERR? and ONT? polls."""
    config, generator, stages, _ = bench
    run_scan(config, build_instruments(config), tmp_path / "count.nxs")
    frames, beam_on_frames = 3 + 3 + 12, 3 + 12
    monitors = sum(line.startswith(b"\x0219,") for line in generator.lines)
    assert monitors <= frames + beam_on_frames + 12  # + stabilisation polls
    moves = [line for line in stages.lines if line.startswith(b"MOV 1")]
    assert len(moves) == 12 + 1  # the projections and the return to the start


@pytest.mark.parametrize("lost", ["stages", "generator"])
def test_a_controller_vanishing_mid_scan_aborts_safely_and_keeps_frames(bench, tmp_path, lost):
    config, generator, stages, servers = bench
    out = tmp_path / "lost.nxs"

    def pull_the_plug() -> None:  # after the 5th projection move, the controller goes away
        deadline = time.monotonic() + 30
        while sum(line.startswith(b"MOV 1") for line in stages.lines) < 5 and time.monotonic() < deadline:
            time.sleep(0.002)
        servers[lost].stop()

    watcher = threading.Thread(target=pull_the_plug)
    watcher.start()
    with pytest.raises(ScanAborted) as aborted:
        run_scan(config, build_instruments(config), out)
    watcher.join()
    assert isinstance(aborted.value.__cause__, (CommunicationError, DeviceTimeoutError))
    assert ("source" if lost == "generator" else "axis") in str(aborted.value)
    with h5py.File(out, "r") as f:
        assert f["entry/logs/status"][()].decode() == "aborted"
        assert f["entry/instrument/detector/data"].shape[0] == aborted.value.frames_written > 3 + 3
        events = [m.decode() for m in f["entry/logs/events/message"][()]]
    if lost == "stages":
        assert not generator.responder.source._beam  # the generator is still reachable: the beam went off
    else:
        assert any("beam off failed" in e for e in events)  # it could not, and says so
