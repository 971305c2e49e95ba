"""Whole CT scans with the real serial drivers against the wire-level simulators (configs/sim-serial.toml)."""

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
from microct.simulators.hamamatsu import HamamatsuResponder
from microct.simulators.wire import WireServer
from microct.simulators.zaber import ZaberResponder
from scan_helpers import Counting, in_process_twin, structure

FAST_ROTATION = {"max_speed": 720.0}  # deg/s: the same override for driver and simulator, to keep tests short
TUBE = {"warmed_up": True, "ramp_kv_per_s": 1e4, "ramp_ua_per_s": 1e5, "seed": 1}
SMALL_SCAN = {"n_projections": 12, "exposure_s": 0.01, "n_darks": 3, "n_flats": 3, "settle_s": 0.0,
              "stable_hold_s": 0.1, "sample_out_position_mm": 5.0}


@pytest.fixture
def bench(request):
    """Served simulators and a parsed sim-serial.toml pointing at them: (config, tube, stages, servers)."""
    link = getattr(request, "param", "tcp")
    tube = Counting(HamamatsuResponder(model="L10711", **TUBE))
    stages = Counting(ZaberResponder(overrides={1: FAST_ROTATION}))
    servers = {"tube": WireServer(tube, "hamamatsu"), "stages": WireServer(stages, "zaber")}
    urls = {name: (server.serve_pty() if link == "pty" else f"socket://127.0.0.1:{server.serve_tcp()}")
            for name, server in servers.items()}
    data = tomllib.loads(files("microct.configs").joinpath("sim-serial.toml").read_text())
    data["source"]["connection"] = urls["tube"]
    for role in ("rotation", "sample_out"):
        data[role]["connection"] = urls["stages"]
    data["rotation"]["options"]["overrides"] = FAST_ROTATION
    data["scan"].update(SMALL_SCAN)
    yield parse_config(data), tube, stages, servers
    for server in servers.values():
        server.stop()


@pytest.mark.parametrize("bench", ["tcp", "pty"], indirect=True)
def test_full_scan_over_serial_matches_the_in_process_file(bench, tmp_path):
    config, tube, stages, _ = bench
    out = tmp_path / "serial.nxs"
    result = run_scan(config, build_instruments(config), out)
    assert (result.darks, result.flats, result.projections) == (3, 3, 12)
    with h5py.File(out, "r") as f:
        assert f["entry/logs/status"][()].decode() == "complete"
        angles = f["entry/sample/rotation_angle"][()][f["entry/instrument/detector/image_key"][()] == 0]
    assert angles == pytest.approx([30.0 * i for i in range(12)], abs=0.001)
    assert tube.responder.source.read_state() is SourceState.STANDBY  # beam off at the end

    reference = in_process_twin(config, tmp_path / "in-process.nxs")
    assert structure(out) == structure(reference)


def test_commands_per_projection_are_few(bench, tmp_path):
    """Per projection the sequencer reads the angle and the tube's kV and µA, and the simulated detector
    reads the tube's state, kV and µA and both stage positions; the Hamamatsu driver answers the panel's
    reads of one frame from one SAR reply, and the sequencer's check after each beam-on frame from a new
    one (no reply from before the frame); the move costs one command plus IDLE polls."""
    config, tube, stages, _ = bench
    run_scan(config, build_instruments(config), tmp_path / "count.nxs")
    frames, beam_on_frames = 3 + 3 + 12, 3 + 12
    assert sum(line == b"SAR" for line in tube.lines) <= frames + beam_on_frames + 10  # + stabilisation
    # get pos: 3 per projection (the sequencer's angle, the detector's angle and x), 2 per flat (the
    # detector's), 1 for the darks' angle, 2 before the flats (sample-in position, angle)
    assert sum(line.endswith(b"get pos") for line in stages.lines) == 3 * 12 + 2 * 3 + 1 + 2


@pytest.mark.parametrize("lost", ["stages", "tube"])
def test_a_port_vanishing_mid_scan_aborts_safely_and_keeps_frames(bench, tmp_path, lost):
    config, tube, stages, servers = bench
    out = tmp_path / "lost.nxs"
    counter = tube if lost == "tube" else stages

    def pull_the_plug() -> None:  # after the 5th projection move, the simulator goes away
        deadline = time.monotonic() + 30
        while sum(b"move abs" in line for line in stages.lines) < 5 and time.monotonic() < deadline:
            time.sleep(0.002)
        servers[lost].stop()

    watcher = threading.Thread(target=pull_the_plug)
    watcher.start()
    with pytest.raises(ScanAborted) as aborted:
        run_scan(config, build_instruments(config), out)
    watcher.join()
    assert isinstance(aborted.value.__cause__, (CommunicationError, DeviceTimeoutError))
    assert ("source" if lost == "tube" else "axis") in str(aborted.value)  # names the device that went away
    with h5py.File(out, "r") as f:
        assert f["entry/logs/status"][()].decode() == "aborted"
        assert f["entry/instrument/detector/data"].shape[0] == aborted.value.frames_written > 3 + 3
        events = [m.decode() for m in f["entry/logs/events/message"][()]]
    if lost == "stages":
        assert not tube.responder.source._beam  # the tube is still reachable: the beam went off
    else:
        assert any("beam off failed" in e for e in events)  # it could not, and says so
    assert counter.lines  # the simulator was used before it vanished
