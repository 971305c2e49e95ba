"""A scan does what its configuration says and records it in the NXtomo file."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from nxtomo.application.nxtomo import NXtomo
from scan_file import events, read

from microct.devices import SourceState
from microct.sequencer import run_scan


def test_scan_writes_darks_flats_projections_in_order(make_scan):
    config, inst, out = make_scan()
    result = run_scan(config, inst, out)
    assert (result.darks, result.flats, result.projections) == (3, 4, 12)
    keys = read(out, "entry/instrument/detector/image_key")
    assert keys.tolist() == [2] * 3 + [1] * 4 + [0] * 12
    assert read(out, "entry/logs/status") == "complete"
    angles = read(out, "entry/sample/rotation_angle")[keys == 0]
    np.testing.assert_allclose(angles, np.arange(12) * 30.0, atol=1e-6)
    assert inst.source.connected is False  # instruments closed at the end


def test_nxtomo_reader_loads_the_file(make_scan):
    config, inst, out = make_scan()
    run_scan(config, inst, out)
    nx = NXtomo().load(str(out), "entry", detector_data_as="as_numpy_array")
    assert nx.instrument.detector.data.shape == (19, 64, 64)
    assert nx.instrument.detector.x_pixel_size.to("m").magnitude == pytest.approx(1600e-6)
    assert nx.sample.x_pixel_size.to("m").magnitude == pytest.approx(1600e-6 / 5)
    assert nx.instrument.source.distance.to("mm").magnitude == pytest.approx(-100.0)
    assert nx.instrument.detector.distance.to("mm").magnitude == pytest.approx(400.0)
    keys = np.array([key.value for key in nx.instrument.detector.image_key_control])
    projections = nx.sample.rotation_angle.to("degree").magnitude[keys == 0]
    assert projections.min() == pytest.approx(0.0) and projections.max() == pytest.approx(330.0)


def test_frames_show_the_physics_darks_flats_and_object(make_scan):
    config, inst, out = make_scan()
    run_scan(config, inst, out)
    with h5py.File(out, "r") as f:
        data = f["entry/instrument/detector/data"][()].astype(float)
        keys = f["entry/instrument/detector/image_key"][()]
    dark, flat, proj = (data[keys == k].mean(axis=0) for k in (2, 1, 0))
    assert dark.mean() == pytest.approx(100 + 5 * 0.5, rel=0.05)  # offset + dark current × exposure
    assert flat.mean() > 10 * dark.mean()
    transmission = (proj - dark) / (flat - dark)
    assert transmission[32, 32] < 0.8  # the object absorbs at the centre
    assert transmission[2, 2] == pytest.approx(1.0, abs=0.05)  # open beam at the corner


def test_references_at_both_ends_and_flats_taken_with_sample_out(make_scan):
    config, inst, out = make_scan({"scan": {"references_at": "both"}})
    run_scan(config, inst, out)
    keys = read(out, "entry/instrument/detector/image_key").tolist()
    assert keys == [2] * 3 + [1] * 4 + [0] * 12 + [1] * 4 + [2] * 3
    x = read(out, "entry/sample/x_translation")
    assert np.all(x[np.array(keys) == 1] == pytest.approx(0.040))  # 40 mm, in metres
    assert inst.sample_out.connected is False


def test_without_sample_out_axis_flats_are_skipped_with_a_warning(make_scan):
    config, inst, out = make_scan({"sample_out": None, "scan": {"sample_out_position_mm": None}})
    result = run_scan(config, inst, out)
    assert result.flats == 0
    assert any("flats skipped" in e for e in events(out))


def test_averaging_and_skipping_use_the_right_number_of_frames(make_scan, mocker):
    config, inst, out = make_scan({"scan": {"frames_averaged": 4, "frames_skipped": 2, "n_flats": 0,
                                            "n_darks": 0, "n_projections": 3}})
    taken = []
    for method in ("skip", "acquire"):
        real = getattr(inst.detector, method)
        mocker.patch.object(inst.detector, method, side_effect=lambda n, real=real, name=method:
                            taken.append((name, n)) or real(n))
    run_scan(config, inst, out)
    assert taken == [("skip", 2), ("acquire", 4)] * 3


def test_averaging_lowers_noise(make_scan):
    stds = []
    for n in (1, 16):
        config, inst, out = make_scan({"scan": {"frames_averaged": n, "n_projections": 1, "n_darks": 0,
                                                "n_flats": 0},
                                       "detector": {"options": {"gain_spread": 0.0, "dark_offset_spread": 0.0}}})
        out = out.with_name(f"avg{n}.nxs")
        run_scan(config, inst, out)
        stds.append(read(out, "entry/instrument/detector/data")[0, :8, :8].astype(float).std())
    assert stds[0] / stds[1] == pytest.approx(4.0, rel=0.3)  # noise falls as √16 (8×8 open-beam patch)


def test_warm_up_runs_when_the_tube_needs_it(make_scan):
    config, inst, out = make_scan({"source": {"options": {"warmed_up": False, "warmup_s": 900.0}}})
    run_scan(config, inst, out)
    log = events(out)
    assert "warm-up started" in log and "warm-up done" in log
    assert read(out, "entry/logs/status") == "complete"


def test_next_move_overlaps_writing_the_frame(make_scan, mocker):
    config, inst, out = make_scan({"scan": {"n_darks": 0, "n_flats": 0, "n_projections": 4,
                                            "return_to_start": False}})
    calls = []
    mocker.patch.object(inst.rotation, "start_move_to", side_effect=lambda p, f=inst.rotation.start_move_to:
                        calls.append(("move", p)) or f(p))
    from microct.nexus import NXtomoWriter
    original = NXtomoWriter.append
    mocker.patch.object(NXtomoWriter, "append", autospec=True,
                        side_effect=lambda self, frame, info: calls.append(("write", info.rotation_angle_deg))
                        or original(self, frame, info))
    run_scan(config, inst, out)
    assert [c[0] for c in calls] == ["move", "move", "write", "move", "write", "move", "write", "write"]


def test_saturation_is_reported(make_scan):
    config, inst, out = make_scan({"detector": {"options": {"counts_per_ua_s": 1e5}}})
    run_scan(config, inst, out)
    assert any(e.startswith("saturated pixels") for e in events(out))


def test_tube_is_left_off_and_stage_returned(make_scan, mocker):
    config, inst, out = make_scan()
    states = []
    mocker.patch.object(inst.source, "close", side_effect=lambda: states.append(inst.source.read_state()))
    mocker.patch.object(inst.rotation, "close", side_effect=lambda: states.append(inst.rotation.read_position()))
    run_scan(config, inst, out)
    assert states == [SourceState.STANDBY, pytest.approx(0.0)]


@pytest.mark.parametrize("fail", [False, True])
def test_the_detectors_pixel_mask_is_written_also_when_the_scan_aborts(make_scan, mocker, fail):
    config, instruments, out = make_scan()
    mask = np.zeros(instruments.detector.capabilities.shape, np.uint32)
    mask[5, :] = 1  # a module gap row
    mask[10, 20] = 2  # a dead pixel
    instruments.detector._pixel_mask = mask  # as a driver that learns its mask from the frames sets it
    if fail:
        mocker.patch.object(instruments.rotation, "start_move_to", side_effect=RuntimeError("stage lost"))
        with pytest.raises(Exception, match="stage lost"):
            run_scan(config, instruments, out)
    else:
        run_scan(config, instruments, out)
    np.testing.assert_array_equal(read(out, "entry/instrument/detector/pixel_mask"), mask)
    assert read(out, "entry/logs/status") == ("aborted" if fail else "complete")
