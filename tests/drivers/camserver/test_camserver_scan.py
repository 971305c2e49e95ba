"""Whole CT scans with the real camserver driver over pyvisa-py against the camserver simulator, whose panel
sees the scan's in-process tube and stages (configs/sim-camserver.toml); and scans that a detector fault
aborts."""

from __future__ import annotations

import re
import tomllib
from importlib.resources import files

import h5py
import numpy as np
import pytest

from microct.config import parse_config
from microct.devices import SourceState
from microct.driverkit import ErrorReply
from microct.errors import DeviceTimeoutError, ScanAborted
from microct.instruments import build_instruments
from microct.policies import RecoveryPolicy
from microct.sequencer import run_scan
from microct.simulators.camserver import CamserverResponder
from microct.simulators.faults import FaultSchedule
from microct.simulators.wire import WireServer

SMALL_SCAN = {"n_projections": 8, "exposure_s": 0.02, "n_darks": 2, "n_flats": 2, "settle_s": 0.0,
              "stable_hold_s": 0.05, "sample_out_position_mm": 20.0}


@pytest.fixture
def make_bench(tmp_path):
    """make_bench(*faults) -> (config, responder, instruments): sim-camserver.toml with the simulator served
    on a free port with ``FaultSchedule(faults)``, its panel seeing the scan's tube and stages."""
    servers = []

    def make(*faults: dict):
        devices: dict = {}
        data = tomllib.loads(files("microct.configs").joinpath("sim-camserver.toml").read_text())
        data["scan"]["reference_check"]["enabled"] = True  # served here, the panel sees the scan: check it
        data["scan"].update(SMALL_SCAN)
        for role in ("rotation", "sample_out"):  # quick stages: the scan's time goes to the detector
            data[role]["options"].update(max_velocity=5000.0, acceleration=1e5)
        config = parse_config(data)
        root = tmp_path / "camserver"
        schedule = FaultSchedule(faults)
        responder = CamserverResponder(root, model="300K", devices=devices, geometry=config.geometry, phantom="bga",
                                       seed=1, faults=schedule)
        servers.append(WireServer(responder, "camserver", schedule))
        data["detector"]["connection"] = f"TCPIP::127.0.0.1::{servers[-1].serve_tcp()}::SOCKET"
        data["detector"]["options"].update(local_image_path=str(root / "ramdisk" / "microct"), reply_timeout_s=0.3,
                                           margin_s=0.5)
        config = parse_config(data)
        instruments = build_instruments(config)
        devices.update((role, device) for role, device in instruments.devices().items() if role != "detector")
        return config, responder, instruments

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def bench(make_bench):
    """make_bench() without scheduled faults."""
    return make_bench()


def test_full_scan_over_camserver(bench, tmp_path):
    config, responder, instruments = bench
    out = tmp_path / "camserver.nxs"
    result = run_scan(config, instruments, out)
    assert (result.darks, result.flats, result.projections) == (2, 2, 8)
    with h5py.File(out, "r") as f:
        assert f["entry/logs/status"][()].decode() == "complete"
        keys = f["entry/instrument/detector/image_key"][()]
        data = f["entry/instrument/detector/data"][()]
        angles = f["entry/sample/rotation_angle"][()]
        mask = f["entry/instrument/detector/pixel_mask"][()]
    assert keys.tolist() == [2, 2, 1, 1] + [0] * 8
    assert angles[keys == 0] == pytest.approx([45.0 * i for i in range(8)], abs=0.01)
    assert data.shape == (12, 619, 487) and data.dtype == np.uint16
    darks, flats, projections = data[:2].astype(float), data[2:4].astype(float), data[4:].astype(float)
    assert darks.max() == 0                            # beam off: a photon counter counts nothing
    assert flats[:, :195].mean() > 200                 # beam on, sample out
    noise = np.abs(flats[0] - flats[1]).mean()         # two frames differing only by noise
    assert np.abs(projections[1] - projections[0]).mean() > 1.5 * noise  # 0° and 45° differ
    assert np.abs(projections[0] - flats[0]).mean() > 1.5 * noise        # the sample is seen
    assert mask.shape == (619, 487) and mask.dtype == np.uint32
    assert (mask[195:212] == 1).all() and (mask[407:424] == 1).all() and (mask == 1).sum() == 2 * 17 * 487
    assert (mask == 2).sum() == 5                      # the simulator's bad pixels
    assert list((tmp_path / "camserver" / "ramdisk" / "microct").iterdir()) == []  # every file read and deleted
    assert responder.lines.count(b"NImages 1") == 1    # sent once, not per frame


def refuse_exposure(responder: CamserverResponder, file_name: bytes, text: str) -> None:
    """From the ``Exposure`` of ``file_name`` on, the simulator answers ``Exposure`` with ERR ``text`` (set in
    the server's thread, as it reads that line: no race with the scan)."""
    answer = responder.answer

    def answer_then_refuse(session, line: bytes):
        if line == b"Exposure " + file_name:
            responder.hooks.error_replies["Exposure"] = text
        return answer(session, line)

    responder.answer = answer_then_refuse


@pytest.mark.parametrize(("fault", "cause", "message", "k_sent"), [
    ("frame_dropped", DeviceTimeoutError, r"image file .*microct_00006\.tif .* did not appear", True),
    ("truncated_frame", DeviceTimeoutError, r"image file .*microct_00006\.tif .* stayed incomplete", True),
    ("drop_at_frame", DeviceTimeoutError, r"image file .*microct_00006\.tif .* did not appear", False),
    ("error_reply", ErrorReply, r"'Exposure microct_00006\.tif' was refused: '7 ERR ERROR: disk full'", False),
])
def test_a_detector_fault_mid_scan_aborts_safely_and_keeps_every_frame(make_bench, tmp_path, fault, cause, message,
                                                                        k_sent):
    """Frames 0-5 come (2 darks, 2 flats, 2 projections); the 7th file fails (recovery off: the abort path):
    frame_dropped from the schedule, the others from the simulator's test hooks."""
    scheduled = [{"kind": fault, "device": "detector", "at_frame": 6}] if fault == "frame_dropped" else []
    config, responder, instruments = make_bench(*scheduled)
    config.scan.recovery = RecoveryPolicy(frame_retakes=0, retries=0)
    if fault == "error_reply":
        refuse_exposure(responder, b"microct_00006.tif", "ERROR: disk full")
    elif not scheduled:
        setattr(responder.hooks, fault, 6)
    out = tmp_path / "aborted.nxs"
    with pytest.raises(ScanAborted) as aborted:
        run_scan(config, instruments, out)
    assert isinstance(aborted.value.__cause__, cause)
    assert "detector 'detector'" in str(aborted.value) and aborted.value.frames_written == 6
    assert re.search(message, str(aborted.value)), aborted.value
    assert (b"K" in responder.lines) is k_sent  # the lost connection took the K with it
    with h5py.File(out, "r") as f:
        assert f["entry/logs/status"][()].decode() == "aborted"
        assert f["entry/instrument/detector/data"].shape[0] == 6
        events = [m.decode() for m in f["entry/logs/events/message"][()]]
        assert "entry/instrument/detector/pixel_mask" in f
    assert not any(e.startswith("abort:") for e in events)  # beam off and the stages stopped (no "abort: ... failed")
    source = instruments.source
    source.connect()
    assert source.read_state() is SourceState.STANDBY  # the beam is off
    source.close()


def test_with_the_default_policy_a_missing_file_is_retaken_and_the_scan_completes(make_bench, tmp_path):
    config, responder, instruments = make_bench({"kind": "frame_dropped", "device": "detector", "at_frame": 6})
    out = tmp_path / "retaken.nxs"
    result = run_scan(config, instruments, out)
    assert result.frames_written == 2 + 2 + 8
    with h5py.File(out, "r") as f:
        assert f["entry/logs/status"][()].decode() == "complete"
        events = [m.decode() for m in f["entry/logs/events/message"][()]]
    assert any("microct_00006.tif" in e and "retaken at the same angle (1 of 3)" in e for e in events)
    assert b"K" in responder.lines  # the failed series was stopped before the retake
