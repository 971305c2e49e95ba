"""The `microct` command as a user runs it."""

from __future__ import annotations

import signal
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import h5py
import numpy as np
import pytest
from nxtomo.application.nxtomo import NXtomo

from microct.cli import main
from microct.instruments import Instruments
from microct.journal import journal_path, read_journal
from microct.testing.waiting import wait_until

SIM_TEXT = files("microct.configs").joinpath("sim.toml").read_text()
REALTIME = Path(str(files("microct.configs").joinpath("sim-realtime.toml")))


def run_cli(*args: str, cwd: Path, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "microct", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def test_default_scan_from_any_folder_writes_a_loadable_nxtomo(tmp_path):
    done = subprocess.run([sys.executable, "-m", "microct", "scan", "-q"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "microct-scan.nxs"
    nx = NXtomo().load(str(out), "entry", detector_data_as="as_numpy_array")
    keys = np.array([k.value for k in nx.instrument.detector.image_key_control])
    assert [(keys == k).sum() for k in (2, 1, 0)] == [10, 10, 180]
    angles = nx.sample.rotation_angle.to("degree").magnitude[keys == 0]
    assert angles[0] == pytest.approx(0.0) and angles[-1] == pytest.approx(358.0)  # 360° in 2° steps
    assert nx.instrument.detector.data.shape == (200, 256, 256)


BAD_CONFIGS = {
    "kv above the source maximum": (("voltage_kv = 80.0", "voltage_kv = 200.0"),
                                    ["voltage_kv=200", "20-150 kV"]),
    "power above the spot-mode limit": (("current_ua = 100.0 ", "current_ua = 400.0 "),
                                        ["32 W", "'small'", "10 W"]),
    "unknown driver": (('driver = "sim-detector"', 'driver = "pilatus-9000"'),
                       ["detector.driver='pilatus-9000'", "not a registered driver"]),
    "unknown key": (("n_darks = 10", "n_darks = 10\nn_dark = 5"), ["scan.n_dark", "unknown key"]),
    "unknown driver option": (("pixel_pitch_um = 200.0", "pixel_pitch_um = 200.0\npitch = 3"),
                              ["detector.options.pitch", "unknown key"]),
    "wrong type": (("n_projections = 180", 'n_projections = "many"'), ["scan.n_projections='many'"]),
    "sample-out outside its limits": (("sample_out_position_mm = 40.0", "sample_out_position_mm = 80.0"),
                                      ["sample_out_position_mm", "80", "-50 to 50 mm"]),
}


@pytest.mark.parametrize("case", BAD_CONFIGS)
def test_bad_config_exits_2_with_one_line_and_connects_nothing(case, tmp_path, capsys, mocker):
    (old, new), expected = BAD_CONFIGS[case]
    assert old in SIM_TEXT
    path = tmp_path / "bad.toml"
    path.write_text(SIM_TEXT.replace(old, new, 1))
    connect = mocker.spy(Instruments, "connect")
    assert main(["scan", str(path), "-o", str(tmp_path / "out.nxs")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for fragment in expected:
        assert fragment in err
    assert not connect.called
    assert not (tmp_path / "out.nxs").exists()


def test_existing_output_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "scan.nxs"
    out.write_bytes(b"precious")
    assert main(["scan", "-q", "-o", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert out.read_bytes() == b"precious"


def test_drivers_lists_the_simulators(capsys):
    assert main(["drivers"]) == 0
    out = capsys.readouterr().out
    for name in ("sim-source", "sim-axis", "sim-detector"):
        assert name in out


def test_check_connects_and_never_switches_the_beam_on(capsys, mocker):
    from microct.simulators.source import SimulatedSource
    beam_on = mocker.spy(SimulatedSource, "_do_beam_on")
    assert main(["check"]) == 0
    assert "warm-up needed" in capsys.readouterr().out
    assert not beam_on.called


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_scan_beam_off_file_aborted(sig, code, tmp_path):
    out = tmp_path / "scan.nxs"
    proc = run_cli("-v", "scan", str(REALTIME), "-q", "-o", str(out), cwd=tmp_path)
    try:
        journal = journal_path(out)  # frames reach it at each flush (every second): 10 darks, 10 flats, then
        wait_until(lambda: journal.exists() and len(read_journal(journal).frames) >= 10 + 10 + 3, 60.0,
                   "three projections in the journal")  # projections, however slow the machine
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == code, err
    assert "beam off" in err
    with h5py.File(out, "r") as f:
        assert f["entry/logs/status"][()].decode() == "aborted"
        keys = f["entry/instrument/detector/image_key"][()]
        assert f["entry/instrument/detector/data"].shape[0] == len(keys)
        assert (keys == 0).sum() > 0  # projections were taken, and kept
        assert (keys == 0).sum() < 60
        log = [m.decode() for m in f["entry/logs/events/message"][()]]
    assert any(m.startswith("scan aborted") for m in log)


def test_resume_continues_an_interrupted_scan_and_a_new_scan_will_not_clobber_it(tmp_path, capsys, mocker):
    from microct.simulators.axis import SimulatedAxis

    out = tmp_path / "scan.nxs"
    real, moves = SimulatedAxis.start_move_to, []

    def failing(axis, position):
        moves.append(position)
        if len(moves) == 20:
            raise RuntimeError("stage lost")
        return real(axis, position)

    mocker.patch.object(SimulatedAxis, "start_move_to", failing)
    assert main(["scan", "-q", "-o", str(out)]) == 1
    mocker.stopall()
    assert main(["scan", "-q", "-o", str(out)]) == 2  # the interrupted scan is not thrown away
    assert f"resume it with `microct scan --resume {out}`" in capsys.readouterr().err
    assert main(["scan", "-q", "--resume", str(out)]) == 0  # without CONFIG: the one it started with
    with h5py.File(out, "r") as f:
        assert f["entry/logs/status"][()].decode() == "complete"
        keys = f["entry/instrument/detector/image_key"][()]
    # sim.toml's plan, whole, and the fresh reference set taken at the resume
    assert ((keys == 2).sum(), (keys == 1).sum(), (keys == 0).sum()) == (20, 20, 180)


@pytest.mark.parametrize("name, options, played, unplayed, plays", [
    ("camserver", ["-O", "image_root={tmp}"], ("garbled_reply", "detector"), ("arc", "source"), "'detector'"),
    ("hamamatsu", [], ("garbled_reply", "source"), ("disk_full", "writer"), "'source'"),
    ("epics", ["--tcp", "0"], ("reply_timeout", "source"), ("write_error", "writer"),
     "'detector', 'rotation', 'sample_out', 'source'"),
])
def test_sim_serve_refuses_a_fault_it_cannot_play(name, options, played, unplayed, plays, tmp_path, capsys):
    """A fault for a device the served simulator does not play would never fire: refused, named."""
    faults = tmp_path / "faults.toml"
    faults.write_text("".join(f'[[faults]]\nkind = "{kind}"\ndevice = "{device}"\nat_projection = 2\n'
                              for kind, device in (played, unplayed)))
    arguments = [item.format(tmp=tmp_path) for item in options]
    assert main(["sim", "serve", name, *arguments, "--faults", str(faults)]) == 2
    err = capsys.readouterr().err.strip()
    refusal = f"faults.1 ({unplayed[0]} on '{unplayed[1]}', at_projection=2): this simulator does not simulate"
    assert f"sim serve {name}: --faults {faults}: " in err and f"{refusal} '{unplayed[1]}'" in err
    assert all(f"\n  {device}: " in err for device in plays.split(", "))  # what it fires, device by device
