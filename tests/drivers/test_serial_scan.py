"""Whole CT scans with the real serial drivers against the wire-level simulators (configs/sim-serial.toml)."""

from __future__ import annotations

import re
import tomllib
from importlib.resources import files

import h5py
import pytest
from scan_helpers import Counting, Spoiled, aborted_file_events, after_requests, in_process_twin, load_nxtomo, structure

from microct.config import parse_config
from microct.devices import SourceState
from microct.driverkit import ErrorReply
from microct.errors import CommunicationError, DeviceTimeoutError, ProtocolError, ScanAborted
from microct.instruments import build_instruments
from microct.sequencer import run_scan
from microct.simulators.hamamatsu import HamamatsuResponder
from microct.simulators.wire import WireServer
from microct.simulators.zaber import ZaberResponder

FAST_ROTATION = {"max_speed": 720.0}  # deg/s: the same override for driver and simulator, to keep tests short
TUBE = {"warmed_up": True, "ramp_kv_per_s": 1e4, "ramp_ua_per_s": 1e5, "seed": 1}
SMALL_SCAN = {"n_projections": 12, "exposure_s": 0.01, "n_darks": 3, "n_flats": 3, "settle_s": 0.0,
              "stable_hold_s": 0.1, "sample_out_position_mm": 5.0, "recovery": {"retries": 2, "backoff_s": 0.05}}


@pytest.fixture
def bench(request):
    """Served simulators and a parsed sim-serial.toml pointing at them: (config, tube, stages, servers)."""
    link = getattr(request, "param", "tcp")
    tube = Counting(HamamatsuResponder(model="L10711", **TUBE))
    stages = Counting(ZaberResponder(overrides={1: FAST_ROTATION}))
    servers = {"tube": WireServer(tube, "hamamatsu"), "stages": WireServer(stages, "zaber")}
    urls = {name: server.serve_serial(link) for name, server in servers.items()}
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
    keys, angles = load_nxtomo(out)
    assert [(keys == key).sum() for key in (2, 1, 0)] == [3, 3, 12]
    assert angles[keys == 0] == pytest.approx([30.0 * i for i in range(12)], abs=0.001)
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
    # detector's), 1 for the darks' angle, 2 before the flats (sample-in position, angle), 1 after each
    # stage's homing (the simulated stages start without a reference: microct.homing)
    assert sum(line.endswith(b"get pos") for line in stages.lines) == 3 * 12 + 2 * 3 + 1 + 2 + 2


@pytest.mark.parametrize(("lost", "names"), [
    ("stages", r"axis 'rotation': Zaber device 1 axis 1: '/1 1( get pos| move abs \d+)?' failed"),
    ("tube", r"source 'source': .*'SAR'"),
], ids=["stages", "tube"])
@pytest.mark.parametrize("bench", ["tcp", "pty"], indirect=True)
def test_a_port_vanishing_mid_scan_aborts_safely_naming_device_and_command(bench, tmp_path, lost, names):
    config, tube, stages, servers = bench
    out = tmp_path / "lost.nxs"
    # after the 5th projection move the simulator goes away
    watcher = after_requests(stages, b"move abs", 5, servers[lost].stop)
    with pytest.raises(ScanAborted) as aborted:
        run_scan(config, build_instruments(config), out)
    watcher.join()
    assert isinstance(aborted.value.__cause__, (CommunicationError, DeviceTimeoutError))
    assert re.search(names, str(aborted.value)), str(aborted.value)
    events = aborted_file_events(out, aborted.value)
    if lost == "stages":
        assert not tube.responder.source._beam  # the tube is still reachable: the beam went off
    else:
        assert any("beam off failed" in e for e in events)  # it could not, and says so


SPOILED_STATUS = {"silent": [], "partial": [b"SAR 3 8"], "garbled": [b"\xffAR 3 80 100 0 0 0 0\r"],
                  "err": [b"ERR\r"]}
"""The tube's bulk status (``SAR``) unanswered, cut short, as line noise, or refused."""


@pytest.mark.parametrize(("mode", "cause", "message"), [
    ("silent", DeviceTimeoutError, "source 'source': no complete reply to 'SAR' within 0.2 s"),
    ("partial", DeviceTimeoutError, "source 'source': no complete reply to 'SAR' within 0.2 s (partial reply "
                                    "b'SAR 3 8')"),
    ("garbled", ProtocolError, "source 'source': 'SAR': garbled reply b'\\xffAR 3 80 100 0 0 0 0' (expected the "
                               "reply to start with 'SAR')"),
    ("err", ErrorReply, "source 'source': 'SAR' was answered 'ERR': unknown command, bad argument, or not allowed "
                        "in the current state"),
])
def test_a_tube_fault_mid_scan_is_retried_then_aborts_safely_naming_device_and_command(bench, tmp_path, mode, cause,
                                                                                        message):
    config, tube, stages, servers = bench
    config.source.options["timeout_s"] = 0.2
    simulated = tube.responder
    tube.responder = spoiled = Spoiled(simulated, b"SAR", SPOILED_STATUS)
    out = tmp_path / f"{mode}.nxs"
    stages.when(b"/1 1 move abs 512000", lambda: setattr(spoiled, "mode", mode))  # the move to 120 deg
    with pytest.raises(ScanAborted) as aborted:
        run_scan(config, build_instruments(config), out)
    assert type(aborted.value.__cause__) is cause
    assert message in str(aborted.value)
    events = aborted_file_events(out, aborted.value)
    assert aborted.value.frames_written == 3 + 3 + 4  # darks, flats, projections at 0 to 90 deg
    assert not simulated.source._beam  # XOF is still answered: the beam went off
    reactions = [e for e in events if message in e and ("; retry " in e or "retaken" in e)]
    assert len(reactions) >= 2  # the recovery policy's retries (or frame retakes), then the abort


LONG_EXPOSURES = {"n_projections": 1, "n_darks": 0, "n_flats": 1, "exposure_s": 1.5,
                  "recovery": {"retries": 2, "backoff_s": 0.05, "arc_retakes": 0}}
"""Exposures longer than the tube's automatic X-ray stop (AUTO_STOP_S); a dropped beam aborts at once."""
AUTO_STOP_S = 1.0
"""The simulated controller's auto-stop time, shortened from the device's 3 s so that the scan stays short
(a 0.1 s keepalive leaves 0.9 s for a loaded machine to fall behind)."""


@pytest.mark.parametrize("keepalive_s", [0.1, 0.0], ids=["keepalive", "no-keepalive"])
def test_exposures_longer_than_the_tube_s_auto_stop_keep_every_frame_with_the_keepalive(bench, tmp_path, keepalive_s):
    """The sequencer sends the tube nothing during an exposure; the Hamamatsu driver's keepalive does, so
    the controller does not switch X-rays off and every frame is kept. Without it, the real device's
    behaviour: the beam drops during the first beam-on frame and the scan stops there."""
    config, tube, stages, _ = bench
    tube.responder.auto_stop_s = AUTO_STOP_S
    data = config.model_dump(mode="json")
    data["scan"].update(LONG_EXPOSURES)
    data["source"]["options"]["keepalive_s"] = keepalive_s
    config = parse_config(data)
    out = tmp_path / "long.nxs"
    if not keepalive_s:
        with pytest.raises(ScanAborted, match=r"beam dropped during the frame \(state 'standby'\)") as aborted:
            run_scan(config, build_instruments(config), out)
        assert aborted.value.frames_written == 0  # the flat, the first frame, was exposed as the beam dropped
        return
    result = run_scan(config, build_instruments(config), out)
    assert (result.darks, result.flats, result.projections) == (0, 1, 1)
    with h5py.File(out, "r") as f:
        assert f["entry/logs/status"][()].decode() == "complete"
        assert f["entry/instrument/detector/data"].shape[0] == 2
        events = [m.decode() for m in f["entry/logs/events/message"][()]]
    assert not [e for e in events if "dropped" in e or "retak" in e or "arc" in e], events
    assert not tube.responder.source._beam  # beam off at the end
