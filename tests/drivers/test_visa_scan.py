"""Whole CT scans with the real VISA drivers (Spellman, PI) over pyvisa-py against the wire simulators
(configs/sim-visa.toml)."""

from __future__ import annotations

import re
import tomllib
from importlib.resources import files

import h5py
import pytest
from scan_helpers import Counting, Spoiled, aborted_file_events, after_requests, in_process_twin, load_nxtomo, structure

from microct.config import parse_config
from microct.devices import SourceState
from microct.errors import CommunicationError, DeviceTimeoutError, LimitError, ProtocolError, ScanAborted
from microct.instruments import build_instruments
from microct.sequencer import run_scan
from microct.simulators.pi_gcs import PIResponder
from microct.simulators.spellman import SpellmanResponder
from microct.simulators.wire import WireServer

GENERATOR = {"ramp_kv_per_s": 1e4, "ramp_ua_per_s": 1e6, "seed": 1}
SMALL_SCAN = {"n_projections": 12, "exposure_s": 0.01, "n_darks": 3, "n_flats": 3, "settle_s": 0.0,
              "stable_hold_s": 0.1, "sample_out_position_mm": 5.0, "recovery": {"retries": 2, "backoff_s": 0.05}}


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
        current = f["entry/control/data"][()][f["entry/instrument/detector/image_key"][()] == 0]
    keys, angles = load_nxtomo(out)
    assert [(keys == key).sum() for key in (2, 1, 0)] == [3, 3, 12]
    assert angles[keys == 0] == pytest.approx([30.0 * i for i in range(12)], abs=0.01)
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


@pytest.mark.parametrize(("lost", "names"), [
    ("stages", r"axis 'rotation': PI axis 1: '(POS\? 1|MOV 1 [\d.]+' \+ 'ERR\?|ONT\? 1' \+ 'ERR\?)' failed"),
    ("generator", r"source 'source': .*'\\x02(22|19),'"),
], ids=["stages", "generator"])
def test_a_controller_vanishing_mid_scan_aborts_safely_naming_device_and_command(bench, tmp_path, lost, names):
    config, generator, stages, servers = bench
    out = tmp_path / "lost.nxs"
    # after the 5th projection move the controller goes away
    watcher = after_requests(stages, b"MOV 1", 5, servers[lost].stop)
    with pytest.raises(ScanAborted) as aborted:
        run_scan(config, build_instruments(config), out)
    watcher.join()
    assert isinstance(aborted.value.__cause__, (CommunicationError, DeviceTimeoutError))
    assert re.search(names, str(aborted.value)), str(aborted.value)
    events = aborted_file_events(out, aborted.value)
    if lost == "stages":
        assert not generator.responder.source._beam  # the generator is still reachable: the beam went off
    else:
        assert any("beam off failed" in e for e in events)  # it could not, and says so


def test_an_error_code_from_the_controller_mid_scan_aborts_safely_naming_command_value_and_range(bench, tmp_path):
    """The controller's soft limit changes under the scan (TMX? 1 = 100 deg): the move to 120 deg is
    refused with error 7, a LimitError (not retried), and the scan stops there."""
    config, generator, stages, servers = bench
    out = tmp_path / "refused.nxs"
    controller = stages.responder.controller_axes["1"]
    stages.when(b"MOV 1 30.0", lambda: setattr(controller, "high_limit", 100.0))
    with pytest.raises(ScanAborted) as aborted:
        run_scan(config, build_instruments(config), out)
    assert isinstance(aborted.value.__cause__, LimitError)
    assert "axis 'rotation': PI axis 1 reports error 7 (position out of limits) after 'MOV 1 120.0'; position " \
           "120 deg; soft limits -360 to 360 deg" in str(aborted.value)
    aborted_file_events(out, aborted.value)
    assert aborted.value.frames_written == 3 + 3 + 4  # darks, flats, projections at 0 to 90 deg
    assert not generator.responder.source._beam


SPOILED_MONITORS = {"silent": [], "garbled": [b"\x0214,2047,\x03"]}
"""The generator's monitor reply (``19``) unanswered, or the answer to another command."""


@pytest.mark.parametrize(("mode", "cause", "message"), [
    ("silent", DeviceTimeoutError, "source 'source': no complete reply to '\\x0219,' within 0.3 s"),
    ("garbled", ProtocolError, "source 'source': '19' (monitors): garbled reply b'\\x0214,2047,' (it answers "
                               "command 14)"),
])
def test_a_generator_fault_mid_scan_is_retried_then_aborts_safely_naming_device_and_command(bench, tmp_path, mode,
                                                                                             cause, message):
    config, generator, stages, servers = bench
    config.source.options["timeout_s"] = 0.3
    simulated = generator.responder
    generator.responder = spoiled = Spoiled(simulated, b"\x0219,", SPOILED_MONITORS)
    stages.when(b"MOV 1 120.0", lambda: setattr(spoiled, "mode", mode))
    with pytest.raises(ScanAborted) as aborted:
        run_scan(config, build_instruments(config), tmp_path / f"{mode}.nxs")
    assert type(aborted.value.__cause__) is cause
    assert message in str(aborted.value)
    events = aborted_file_events(tmp_path / f"{mode}.nxs", aborted.value)
    assert aborted.value.frames_written == 3 + 3 + 4  # darks, flats, projections at 0 to 90 deg
    assert not simulated.source._beam  # HV off (98,0) is still answered
    assert len([e for e in events if message in e and ("; retry " in e or "retaken" in e)]) >= 2
