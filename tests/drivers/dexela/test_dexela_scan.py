"""Whole CT scans with the real Dexela driver over the wire (configs/sim-dexela.toml): tube and stages are
in-process simulators, and the Dexela simulator's panel sees them, so its frames follow the scan."""

from __future__ import annotations

import threading
import time
import tomllib
from importlib.resources import files

import h5py
import numpy as np
import pytest

from microct.config import parse_config
from microct.errors import CommunicationError, DeviceTimeoutError, ProtocolError, ScanAborted
from microct.instruments import build_instruments
from microct.policies import RecoveryPolicy
from microct.sequencer import run_scan
from microct.simulators.dexela import DexelaResponder
from microct.simulators.faults import FaultSchedule
from microct.simulators.wire import WireServer

PANEL = {"rows": 48, "columns": 64, "pixel_pitch_um": 1200.0}  # 77 mm wide: the 15 mm field of view at M = 5
SMALL_SCAN = {"n_projections": 12, "exposure_s": 0.04, "n_darks": 3, "n_flats": 3, "settle_s": 0.0,
              "stable_hold_s": 0.1, "sample_out_position_mm": 20.0}
FAST = {"source": {"ramp_kv_per_s": 1e4, "ramp_ua_per_s": 1e5},
        "rotation": {"max_velocity": 3600.0, "acceleration": 36000.0},
        "sample_out": {"max_velocity": 1000.0, "acceleration": 10000.0}}


class Bench:
    """The Dexela simulator served on TCP (registers) with a frame ``channel`` and ``FaultSchedule(faults)``,
    and the parsed sim-dexela.toml pointing at it; ``build()`` makes the instruments and shows them to the
    panel."""

    def __init__(self, channel: str, folder, faults: tuple[dict, ...] = ()) -> None:
        self.devices: dict = {}
        data = tomllib.loads(files("microct.configs").joinpath("sim-dexela.toml").read_text())
        data["scan"]["reference_check"]["enabled"] = True  # served here, the panel sees the scan: check it
        geometry = data["geometry"]
        grabber = {"frame_port": 0} if channel == "tcp" else {"frame_folder": str(folder)}
        schedule = FaultSchedule(faults)
        self.responder = DexelaResponder(**grabber, **PANEL, devices=self.devices, geometry=geometry, seed=1,
                                         faults=schedule)
        self.server = WireServer(self.responder, "dexela", schedule)
        data["detector"]["connection"] = self.server.serve_serial("tcp")
        data["detector"]["options"].update(PANEL, frame_channel=channel, frame_folder=str(folder),
                                           frame_address=f"127.0.0.1:{self.responder.frame_port}",
                                           readout_margin_s=0.5)
        for role, fields in FAST.items():
            data[role]["options"].update(fields)
        data["scan"].update(SMALL_SCAN)
        self.config = parse_config(data)

    def build(self):
        instruments = build_instruments(self.config)
        self.devices.update((role, device) for role, device in instruments.devices().items() if role != "detector")
        return instruments

    def stop(self) -> None:
        self.server.stop()
        self.responder.stop()


@pytest.fixture(params=["tcp", "folder"])
def make_bench(request, tmp_path):
    """make_bench(*faults) -> a Bench on each frame channel, stopped after the test."""
    benches = []

    def make(*faults: dict) -> Bench:
        benches.append(Bench(request.param, tmp_path / "frames", faults))
        return benches[-1]

    yield make
    for bench in benches:
        bench.stop()


@pytest.fixture
def bench(make_bench):
    return make_bench()


FRAME_8_LOST = {"kind": "frame_dropped", "device": "detector", "at_frame": 8}
"""The third projection (frames 0-2 darks, 3-5 flats) never comes."""


def test_full_scan_writes_an_nxtomo_file_of_the_scan(bench, tmp_path):
    out = tmp_path / "dexela.nxs"
    instruments = bench.build()
    result = run_scan(bench.config, instruments, out)
    assert (result.darks, result.flats, result.projections) == (3, 3, 12)
    with h5py.File(out, "r") as f:
        assert f["entry/logs/status"][()].decode() == "complete"
        keys = f["entry/instrument/detector/image_key"][()]
        frames = f["entry/instrument/detector/data"][()]
        angles = f["entry/sample/rotation_angle"][()][keys == 0]
        pitch = f["entry/instrument/detector/x_pixel_size"][()]
    assert list(keys) == [2] * 3 + [1] * 3 + [0] * 12
    assert frames.shape == (18, 48, 64) and frames.dtype == np.uint16
    assert angles == pytest.approx([30.0 * i for i in range(12)], abs=0.01)
    assert pitch == pytest.approx(1.2e-3)  # m
    darks, flats, projections = frames[:3].astype(float), frames[3:6].astype(float), frames[6:].astype(float)
    assert darks.mean() < 130 and flats.mean() > 400  # the panel saw the scan's beam off, then on
    centre = np.s_[:, 20:28, 28:36]
    assert projections[centre].mean() < 0.8 * flats[centre].mean()  # the sample absorbs
    # the lopsided phantom turns: 4 × 4 pixel blocks at 0 and 180 deg differ far beyond the noise (of two flats)
    blocks = np.concatenate([flats, projections]).reshape(-1, 12, 4, 16, 4).mean(axis=(2, 4))
    noise = np.abs(blocks[0] - blocks[1]).max()
    assert np.abs(blocks[3 + 6] - blocks[3 + 0]).max() > 5 * noise
    assert not instruments.source._beam  # beam off at the end


def test_a_frame_that_never_comes_aborts_the_scan_and_keeps_the_frames_taken(make_bench, tmp_path):
    bench = make_bench(FRAME_8_LOST)
    out = tmp_path / "missing.nxs"
    instruments = bench.build()
    bench.config.scan.recovery = RecoveryPolicy(frame_retakes=0, retries=0)  # the abort path
    with pytest.raises(ScanAborted) as aborted:
        run_scan(bench.config, instruments, out)
    cause = aborted.value.__cause__
    assert isinstance(cause, DeviceTimeoutError)
    assert "detector 'detector': frame 8 did not come on the frame" in str(cause)
    assert aborted.value.frames_written == 8
    with h5py.File(out, "r") as f:
        assert f["entry/logs/status"][()].decode() == "aborted"
        assert f["entry/instrument/detector/data"].shape[0] == 8
    assert not instruments.source._beam


def test_with_the_default_policy_a_frame_that_never_comes_is_retaken(make_bench, tmp_path):
    bench = make_bench(FRAME_8_LOST)
    out = tmp_path / "retaken.nxs"
    result = run_scan(bench.config, bench.build(), out)
    assert result.status == "complete"
    with h5py.File(out, "r") as f:
        keys = f["entry/instrument/detector/image_key"][()]
        events = [m.decode() for m in f["entry/logs/events/message"][()]]
    assert len(keys) == result.frames_written and (keys == 0).sum() == bench.config.scan.n_projections
    assert any("frame 8 did not come" in e and "retaken at the same angle (1 of 3)" in e for e in events)


def test_a_refused_register_write_aborts_before_the_beam_goes_on(bench, tmp_path):
    bench.responder.refused_registers.add(11)
    instruments = bench.build()
    with pytest.raises(ScanAborted, match="no file written") as aborted:
        run_scan(bench.config, instruments, tmp_path / "refused.nxs")
    assert isinstance(aborted.value.__cause__, ProtocolError)
    # the scan's exposure, the first one the panel gets (connect writes nothing)
    assert "register 11 (exposure, low word) = 4000 (reply E)" in str(aborted.value)
    assert aborted.value.path is None and not (tmp_path / "refused.nxs").exists()
    assert not instruments.source._beam


def test_the_frame_grabber_going_away_mid_scan_aborts_safely(bench, tmp_path):
    out = tmp_path / "lost.nxs"

    def pull_the_plug() -> None:  # after the 4th projection, the grabber goes away
        deadline = time.monotonic() + 30
        while bench.responder.frames_delivered < 3 + 3 + 4 and time.monotonic() < deadline:
            time.sleep(0.002)
        bench.responder.stop()

    watcher = threading.Thread(target=pull_the_plug)
    watcher.start()
    instruments = bench.build()
    with pytest.raises(ScanAborted) as aborted:
        run_scan(bench.config, instruments, out)
    watcher.join()
    assert isinstance(aborted.value.__cause__, (CommunicationError, DeviceTimeoutError))
    assert "detector" in str(aborted.value) and "frame " in str(aborted.value)
    with h5py.File(out, "r") as f:
        assert f["entry/logs/status"][()].decode() == "aborted"
        assert f["entry/instrument/detector/data"].shape[0] == aborted.value.frames_written >= 3 + 3 + 4
    assert not instruments.source._beam
