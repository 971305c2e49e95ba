"""Whole CT scans over Channel Access (configs/sim-epics.toml): the PV-mapped tube, two motor records
and the areaDetector panel, against the simulated CT IOC; and an IOC lost in the middle of a scan."""

from __future__ import annotations

import os
import tomllib
from importlib.resources import files

import h5py
import numpy as np
import pytest
from nxtomo.application.nxtomo import NXtomo

from microct.clock import Clock
from microct.config import parse_config
from microct.devices import SourceState
from microct.errors import CommunicationError, ScanAborted
from microct.geometry import Geometry
from microct.instruments import build_instruments
from microct.sequencer import run_scan
from microct.simulators.bench import Bench
from microct.simulators.detector import SimulatedDetector, SimulatedDetectorOptions
from microct.simulators.epics_ad_ioc import start_ad_ioc
from microct.simulators.epics_beamline import DEFAULT_ROTATION, DEFAULT_SAMPLE_OUT, start_beamline
from microct.simulators.epics_ioc import build as build_tube
from microct.simulators.epics_ioc import run_ioc_in_thread
from microct.simulators.epics_motor_ioc import build as build_motor
from microct.simulators.faults import FaultSchedule
from microct.simulators.source import SimulatedSourceOptions

PORTS = {role: int(port) for role, port in (item.split("=") for item in os.environ["MICROCT_TEST_IOC_PORTS"].split())}
FAST_TUBE = SimulatedSourceOptions(warmed_up=True, ramp_kv_per_s=1e4, ramp_ua_per_s=1e5)
SCAN = {"n_projections": 12, "exposure_s": 0.01, "n_darks": 3, "n_flats": 3, "settle_s": 0.0, "stable_hold_s": 0.1,
        "sample_out_position_mm": 5.0}


def config_for(prefix: str, tmp_path, scan=None, detector=None):
    """sim-epics.toml with PV names under ``prefix`` (pyepics keeps one channel per name per session)."""
    data = tomllib.loads(files("microct.configs").joinpath("sim-epics.toml").read_text())
    for role in ("source", "rotation", "sample_out", "detector"):
        data[role]["connection"] = data[role]["connection"].replace("CT:", prefix, 1)
    data["scan"].update(SCAN, **(scan or {}))
    data["detector"]["options"].update(detector or {})
    return parse_config(data)


def read(path, name):
    with h5py.File(path, "r") as f:
        return f[name][()]


def test_full_scan_over_channel_access(tmp_path):
    beamline = start_beamline("SCAN:", PORTS["beamline"], source=FAST_TUBE, seed=1)
    try:
        config = config_for("SCAN:", tmp_path)
        out = tmp_path / "epics.nxs"
        result = run_scan(config, build_instruments(config), out)
        assert beamline.source.read_state() is SourceState.STANDBY  # the beam went off at the end
    finally:
        beamline.stop()
    assert (result.darks, result.flats, result.projections) == (3, 3, 12)
    assert read(out, "entry/logs/status").decode() == "complete"
    keys = read(out, "entry/instrument/detector/image_key")
    data = read(out, "entry/instrument/detector/data")
    angles = read(out, "entry/sample/rotation_angle")[keys == 0]
    current = read(out, "entry/control/data")[keys == 0]
    assert data.shape == (18, 128, 128)  # binning 4 of the 512² panel
    assert angles == pytest.approx([30.0 * i for i in range(12)], abs=0.01)
    assert current == pytest.approx(100.0, abs=1.0)
    dark, flat, projections = data[keys == 2].mean(), data[keys == 1].mean(), data[keys == 0].astype(float)
    assert dark < 150 < projections.mean() < flat  # beam off, sample in the beam, sample out
    assert np.abs(projections[0] - projections[3]).mean() > 20  # 0° and 90°: the panel saw the stage turn


def file_mode(tmp_path, name="det"):
    return {"frames": "hdf5-file", "ioc_file_path": str(tmp_path), "file_name": name}


def mapped_frames(path):
    """(the files ``data`` maps, in order, without repeats; the frames as a reader gets them; image keys)"""
    with h5py.File(path, "r") as f:
        data = f["entry/instrument/detector/data"]
        assert data.is_virtual and f["entry/data/data"] == data
        files = list(dict.fromkeys(source.file_name for source in data.virtual_sources()))
        return files, data[()], f["entry/instrument/detector/image_key"][()]


def test_scan_with_the_iocs_hdf5_plugin_maps_its_file(tmp_path):
    beamline = start_beamline("SCANF:", PORTS["beamline"], source=FAST_TUBE, seed=2)
    try:
        config = config_for("SCANF:", tmp_path, scan={"frames_skipped": 1}, detector=file_mode(tmp_path))
        out = tmp_path / "epics-file.nxs"
        run_scan(config, build_instruments(config), out)
    finally:
        beamline.stop()
    files, data, keys = mapped_frames(out)
    assert files == ["det_000001.h5"]  # beside the scan file: named relative to it, the folder can move
    assert data.shape == (len(keys), 128, 128) == (18, 128, 128)  # skipped frames stayed out of the IOC's file
    assert data[keys == 2].mean() < 150 < data[keys == 1].mean()
    scan = NXtomo().load(str(out), "entry")  # nxtomo resolves the mapping from the scan's folder
    assert len(scan.instrument.detector.image_key) == 18
    url = scan.instrument.detector.data[0]
    assert (url.file_path(), url.data_path()) == (str(tmp_path / files[0]), "/entry/data/data")


def test_file_mode_a_frame_exposed_during_an_arc_stays_out_of_the_scan(tmp_path):
    """The IOC's file keeps the arced frame; the scan's data maps the frames around it."""
    schedule = FaultSchedule([{"kind": "arc", "device": "source", "at_projection": 4}], seed=1)
    beamline = start_beamline("ARCF:", PORTS["beamline"], source=FAST_TUBE, seed=4, faults=schedule)
    try:
        config = config_for("ARCF:", tmp_path, scan={"recovery": {"arc_wait_s": 0.05}}, detector=file_mode(tmp_path))
        out = tmp_path / "arc.nxs"
        result = run_scan(config, build_instruments(config, faults=schedule), out)
    finally:
        beamline.stop()
    assert [hit.fault.kind for hit in schedule.hits] == ["arc"] and result.status == "complete"
    files, data, keys = mapped_frames(out)
    with h5py.File(tmp_path / files[0], "r") as f:
        assert f["entry/data/data"].shape[0] == 19  # the IOC wrote the arced frame too
    assert data.shape[0] == len(keys) == 18
    projections = data[keys == 0].reshape(12, -1).mean(axis=1)
    assert projections.min() > 0.8 * projections.max()  # no frame of the dimmed arc among them


def test_file_mode_scan_resumed_maps_both_of_the_iocs_files(tmp_path):
    beamline = start_beamline("RESF:", PORTS["beamline"], source=FAST_TUBE, seed=5)
    out = tmp_path / "resumed.nxs"

    def interrupt(at):
        if at.phase == "projections" and at.frames_done == 10:
            raise KeyboardInterrupt

    try:
        config = config_for("RESF:", tmp_path, detector=file_mode(tmp_path))
        with pytest.raises(KeyboardInterrupt):
            run_scan(config, build_instruments(config), out, progress=interrupt)
        result = run_scan(config, build_instruments(config), out, resume=True)
    finally:
        beamline.stop()
    assert result.status == "complete" and result.frames_written == 18 + 6  # a fresh reference set at the resume
    files, data, keys = mapped_frames(out)
    assert files == ["det_000001.h5", "det_000002.h5"]
    assert keys.tolist() == [2] * 3 + [1] * 3 + [0] * 4 + [2] * 3 + [1] * 3 + [0] * 8
    assert read(out, "entry/sample/rotation_angle")[keys == 0] == pytest.approx([30.0 * i for i in range(12)],
                                                                                 abs=0.01)
    dark, flat, projections = data[keys == 2].mean(), data[keys == 1].mean(), data[keys == 0]
    assert dark < 150 < projections.reshape(12, -1).mean(axis=1).min() and projections.mean() < flat
    assert len(NXtomo().load(str(out), "entry").instrument.detector.image_key) == 24
    events = [message.decode() for message in read(out, "entry/logs/events/message")]
    skipped = "reference check skipped: the detector wrote these 6 references to its own files"
    assert sum(message.startswith(skipped) for message in events) == 2  # each set said so, none passed unchecked


def test_frames_averaged_in_file_mode_is_refused_before_anything_moves(tmp_path):
    config = config_for("UNUSED:", tmp_path, scan={"frames_averaged": 4},
                        detector={"frames": "hdf5-file", "ioc_file_path": str(tmp_path)})
    with pytest.raises(ValueError, match=r"scan.frames_averaged=4: detector 'detector' writes its frames to its own"):
        build_instruments(config)


def test_detector_ioc_killed_mid_scan_aborts_naming_the_pv_beam_off_frames_kept(tmp_path):
    tube, tube_ioc = build_tube("KILL:XRAY:", FAST_TUBE)
    rotation, sample = (build_motor(name, options, high_limit=0.0, low_limit=0.0) for name, options in (
        ("KILL:ROT:m1", DEFAULT_ROTATION), ("KILL:SMP:m2", DEFAULT_SAMPLE_OUT)))
    rest = run_ioc_in_thread({**tube_ioc.pvdb, **rotation.pvdb, **sample.pvdb}, "kill tube+stages", PORTS["kill_rest"])
    panel = SimulatedDetector("panel", SimulatedDetectorOptions(rows=512, columns=512, pixel_pitch_um=200.0,
                                                                phantom="bga", binnings=(1, 2, 4)),
                              Bench(clock=Clock(), geometry=Geometry(50.0, 500.0),
                                            devices={"source": tube, "rotation": rotation.axis,
                                                     "sample_out": sample.axis}))
    detector_ioc = start_ad_ioc("KILL:DET1:", panel, PORTS["kill_detector"])
    config = config_for("KILL:", tmp_path, scan={"recovery": {"retries": 1, "backoff_s": 0.5}})  # one retry, then out
    out = tmp_path / "killed.nxs"

    def progress(at):
        if at.phase == "projections" and at.frames_done == 9:  # 3 darks, 3 flats, 3 projections
            detector_ioc.stop()

    try:
        with pytest.raises(ScanAborted) as info:
            run_scan(config, build_instruments(config), out, progress=progress)
        assert tube.read_state() is SourceState.STANDBY  # the beam went off over the tube's own IOC
    finally:
        detector_ioc.stop()
        rest.stop()
    assert isinstance(info.value.__cause__, CommunicationError)
    assert "KILL:DET1:" in str(info.value) and info.value.frames_written == 9
    assert read(out, "entry/logs/status").decode() == "aborted"
    assert read(out, "entry/instrument/detector/data").shape == (9, 128, 128)


def test_channel_access_circuits_dropped_mid_scan_come_back_and_the_scan_completes(tmp_path):
    """A network glitch: every client circuit of the IOC closes during projection 4; pyepics reconnects by
    itself (within 10 s: libca searches for a channel whose circuit closed at the next tick of its 10 s
    disconnect governor), the sequencer's retries bridge the gap with the back-off sim-epics.toml sets
    (2, 4, 8 s), nothing is lost."""
    beamline = start_beamline("GLITCH:", PORTS["beamline"], source=FAST_TUBE, seed=3)
    dropped = []

    def progress(at):
        if at.phase == "projections" and at.frames_done == 3 + 3 + 4 and not dropped:
            dropped.append(at.frames_done)
            beamline.handle.drop_clients()

    try:
        config = config_for("GLITCH:", tmp_path)
        out = tmp_path / "glitch.nxs"
        result = run_scan(config, build_instruments(config), out, progress=progress)
        assert beamline.source.read_state() is SourceState.STANDBY
    finally:
        beamline.stop()
    assert dropped and result.status == "complete"
    keys = read(out, "entry/instrument/detector/image_key")
    assert (keys == 0).sum() == 12 and len(keys) == 18
    assert read(out, "entry/sample/rotation_angle")[keys == 0] == pytest.approx([30.0 * i for i in range(12)],
                                                                                 abs=0.01)
    with h5py.File(out, "r") as f:
        events = [m.decode() for m in f["entry/logs/events/message"][()]]
    assert any("CommunicationError" in e and "retry 1 of 3" in e for e in events), events
