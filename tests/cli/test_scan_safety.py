"""Operator safety of `microct scan`: one owner per scan file, outputs checked before anything connects,
resumes that always converge, and what the operator is told (issue 14)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from importlib.resources import files
from pathlib import Path

import h5py
import pytest

from microct.cli import main
from microct.errors import LockedError
from microct.instruments import Instruments
from microct.journal import journal_path, read_journal
from microct.testing.waiting import wait_until

REALTIME = files("microct.configs").joinpath("sim-realtime.toml").read_text()
SIM = files("microct.configs").joinpath("sim.toml").read_text()


def small(text: str, **scan: object) -> str:
    """A shipped configuration with its [scan] keys changed (TOML values as Python literals)."""
    for key, value in {"n_projections": 12, "n_darks": 2, "n_flats": 2, **scan}.items():
        literal = str(value).lower() if isinstance(value, bool) else repr(value).replace("'", '"')
        text, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {literal}", text)
        if not n:
            text = text.replace("[scan]\n", f"[scan]\n{key} = {literal}\n", 1)
    return text


def status_and_frames(path: Path) -> tuple[str, int]:
    with h5py.File(path, "r") as f:
        return f["entry/logs/status"][()].decode(), len(f["entry/instrument/detector/image_key"])


@pytest.fixture
def connects(mocker):
    """Every Instruments.connect() call (none may happen when the output is bad)."""
    return mocker.spy(Instruments, "connect")


# -- one owner per scan file ------------------------------------------------------------------------------------
def test_a_second_forced_scan_on_a_running_scans_file_is_refused_and_the_first_completes(tmp_path, capsys):
    config = tmp_path / "realtime.toml"
    config.write_text(small(REALTIME, n_projections=6))
    out = tmp_path / "same.nxs"
    pause = tmp_path / "same.nxs.pause"
    pause.touch()  # the first scan holds at its first frame until the test lets it go
    first = subprocess.Popen([sys.executable, "-m", "microct", "scan", str(config), "-o", str(out), "-q"],
                             cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        log = tmp_path / "same.nxs.log"
        wait_until(lambda: log.exists() and "paused on request" in log.read_text(), 60.0, "the first scan paused")
        assert main(["scan", str(config), "-o", str(out), "--force", "-q"]) == 2
        err = capsys.readouterr().err
        assert f"pid {first.pid}" in err and "same.nxs" in err and "--force does not take" in " ".join(err.split())
        pause.unlink()
        stdout, stderr = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 0, stderr
    assert stdout.startswith("complete:")
    assert status_and_frames(out) == ("complete", 2 + 2 + 6)  # intact: every frame of the first scan


def test_two_scans_on_one_instrument_set_the_second_is_refused(tmp_path):
    """Two scans driving the same served Zaber stages and Hamamatsu tube: the second is refused before it
    touches anything, naming the connection; the first goes on."""
    import tomllib

    from microct.config import parse_config
    from microct.instruments import build_instruments
    from microct.sequencer import run_scan
    from microct.simulators.hamamatsu import HamamatsuResponder
    from microct.simulators.wire import WireServer
    from microct.simulators.zaber import ZaberResponder

    servers = [WireServer(HamamatsuResponder(model="L10711", warmed_up=True, ramp_kv_per_s=1e4, ramp_ua_per_s=1e5),
                          "hamamatsu"), WireServer(ZaberResponder(overrides={1: {"max_speed": 720.0}}), "zaber")]
    tube, stages = (server.serve_serial("tcp") for server in servers)
    data = tomllib.loads(small(files("microct.configs").joinpath("sim-serial.toml").read_text(),
                               exposure_s=0.01, settle_s=0.0, stable_hold_s=0.1, sample_out_position_mm=5.0))
    data["source"]["connection"] = tube
    data["rotation"]["connection"] = data["sample_out"]["connection"] = stages
    data["rotation"]["options"]["overrides"] = {"max_speed": 720.0}
    config = parse_config(data)
    first_frame, go_on, results = threading.Event(), threading.Event(), []

    def hold(at):
        if at.frames_done == 1:
            first_frame.set()
            go_on.wait(60)

    worker = threading.Thread(target=lambda: results.append(run_scan(config, build_instruments(config),
                                                                     tmp_path / "first.nxs", progress=hold)))
    worker.start()
    try:
        assert first_frame.wait(60)
        second = build_instruments(config)
        with pytest.raises(LockedError, match="instrument connection tcp:127.0.0.1:") as refused:
            run_scan(config, second, tmp_path / "second.nxs")
        assert any(url in str(refused.value) for url in (tube, stages)) and f"pid {os.getpid()}" in str(refused.value)
        assert not (tmp_path / "second.nxs").exists() and not second.source.connected
    finally:
        go_on.set()
        worker.join(120)
        for server in servers:
            server.stop()
    assert results and results[0].status == "complete"


# -- errors caught before anything connects -----------------------------------------------------------------------
@pytest.mark.parametrize("output, words", [
    ("nofolder/out.nxs", ["the folder", "nofolder", "does not exist"]),
    ("afile/out.nxs", ["afile", "is not a folder"]),
    ("adir", ["adir is a folder", "name a file in it"]),
])
@pytest.mark.parametrize("force", [False, True])
def test_a_bad_output_exits_2_before_any_device_connects(output, words, force, tmp_path, capsys, connects,
                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / "adir").mkdir()
    assert main(["scan", "-q", "-o", output, *(["--force"] if force else [])]) == 2
    err = capsys.readouterr().err
    assert all(word in err for word in words), err
    assert "Traceback" not in err and ".tmp" not in err and len(err.strip().splitlines()) <= 2
    assert connects.call_count == 0


def test_an_unwritable_folder_exits_2_before_any_device_connects(tmp_path, capsys, connects, monkeypatch):
    folder = tmp_path / "readonly"
    folder.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == folder else real_access(path, mode))
    assert main(["scan", "-q", "-o", str(folder / "out.nxs")]) == 2  # (as root, chmod would not stop the write)
    assert "is not writable" in capsys.readouterr().err
    assert connects.call_count == 0


def test_not_enough_disk_is_refused_and_a_tight_disk_warned(tmp_path, capsys, connects, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    needed = 200 * 256 * 256 * 2  # the default scan: 200 frames of 256 × 256 pixels, 2 bytes each
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 * needed, 0, needed // 2))
    assert main(["scan", "-q", "-o", str(tmp_path / "a.nxs")]) == 2
    err = capsys.readouterr().err
    assert "the scan needs about" in err and "free" in err and connects.call_count == 0
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 * needed, 0, int(needed * 1.3)))
    assert main(["scan", "-q", "-o", str(tmp_path / "b.nxs")]) == 0
    assert "little will be left" in capsys.readouterr().err


# -- resume converges ------------------------------------------------------------------------------------------------
def interrupted_scan(tmp_path, mocker, after_projections: int = 3) -> Path:
    """A default (simulated) scan that fails after a few projections: aborted, journal kept."""
    from microct.simulators.axis import SimulatedAxis

    out = tmp_path / "scan.nxs"
    real, moves = SimulatedAxis.start_move_to, []

    def failing(axis, position):
        if axis.name == "rotation":
            moves.append(position)
            if len(moves) == after_projections + 1:
                raise RuntimeError("stage lost")
        return real(axis, position)

    mocker.patch.object(SimulatedAxis, "start_move_to", failing)
    assert main(["scan", "-q", "-o", str(out)]) == 1
    mocker.stopall()
    return out


def test_resume_of_a_complete_scan_exits_0_saying_so(tmp_path, capsys):
    out = tmp_path / "done.nxs"
    assert main(["scan", "-q", "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["scan", "-q", "--resume", str(out)]) == 0
    assert "already complete (200 frames)" in capsys.readouterr().err


@pytest.mark.parametrize("extra, option", [(["-o", "other.nxs"], "-o/--output"), (["--force"], "--force")])
def test_resume_with_o_or_force_is_an_error(extra, option, tmp_path, mocker, capsys, connects, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = interrupted_scan(tmp_path, mocker)
    capsys.readouterr()
    calls = connects.call_count
    assert main(["scan", "-q", "--resume", str(out), *extra]) == 2
    assert f"{option} cannot be used with --resume" in capsys.readouterr().err
    assert connects.call_count == calls and not (tmp_path / "other.nxs").exists()


def test_the_abort_message_names_the_file_the_frames_kept_and_the_resume_command(tmp_path, mocker, capsys):
    out = interrupted_scan(tmp_path, mocker, after_projections=3)
    err = " ".join(capsys.readouterr().err.split())
    assert f"{out} keeps 23 frames, marked aborted" in err  # 10 darks, 10 flats, 3 projections
    assert f"resume with: microct scan --resume {out}" in err
    assert err.count("stage lost") == 1  # said once, not by the log and again by the command


def test_a_frame_cut_short_on_the_disk_is_dropped_and_taken_again(tmp_path, mocker, capsys):
    out = interrupted_scan(tmp_path, mocker, after_projections=5)
    frames = read_journal(journal_path(out)).frames
    last = frames[-1]
    with open(out, "r+b") as f:  # a power cut: the disk lost the end of the last frame's chunk
        f.truncate(last.offset + last.nbytes // 2)
    assert main(["scan", "-q", "--resume", str(out)]) == 0
    assert status_and_frames(out) == ("complete", len(frames) - 1 + 1 + 10 + 10 + 180 - 5)  # fresh set: 10 + 10
    with h5py.File(out, "r") as f:
        events = [m.decode() for m in f["entry/logs/events/message"][()]]
    assert any(f"frame {last.index} is not whole" in m and "taken again" in m for m in events)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.nxs", "scan.nxs.log"]


def test_a_scan_interrupted_before_its_first_frame_is_replaced_without_force(tmp_path, mocker, capsys):
    from microct.simulators.source import SimulatedSource

    out = tmp_path / "scan.nxs"
    mocker.patch.object(SimulatedSource, "warm_up", side_effect=KeyboardInterrupt)  # sim.toml's tube needs one
    assert main(["scan", "-q", "-o", str(out)]) == 130  # Ctrl-C during the warm-up
    assert journal_path(out).exists() and read_journal(journal_path(out)).frames == []
    assert "keeps 0 frames" in capsys.readouterr().err
    mocker.stopall()
    assert main(["scan", "-q", "-o", str(out)]) == 0  # no --force needed: nothing to lose
    assert "replacing" in capsys.readouterr().err
    assert status_and_frames(out) == ("complete", 200)


def test_a_resume_takes_fresh_references_and_the_file_keeps_both_sets(tmp_path, mocker):
    out = interrupted_scan(tmp_path, mocker, after_projections=4)
    assert main(["scan", "-q", "--resume", str(out)]) == 0
    with h5py.File(out, "r") as f:
        keys = list(f["entry/instrument/detector/image_key"][()])
        events = [m.decode() for m in f["entry/logs/events/message"][()]]
    assert keys == [2] * 10 + [1] * 10 + [0] * 4 + [2] * 10 + [1] * 10 + [0] * 176
    assert any(m.startswith("reference set 2: fresh darks and flats taken at the resume, from frame 24")
               for m in events)
    assert sum(m.startswith("references look right") for m in events) == 2  # each set checked


def test_a_scan_interrupted_before_an_upgrade_resumes_with_the_keys_added_since(tmp_path, mocker):
    """A journal written before `home`, `reference_check` and `resume_references_after_s` existed: their
    defaults fill in, and the resume is not refused as a changed configuration."""
    from microct.journal import _line

    out = interrupted_scan(tmp_path, mocker)
    journal = journal_path(out)
    first, rest = journal.read_bytes().split(b"\n", 1)
    header = read_journal(journal).header
    header.pop("t")
    for key in ("reference_check", "resume_references_after_s"):
        del header["configuration"]["scan"][key]
    for role in ("rotation", "sample_out"):
        del header["configuration"][role]["home"], header["configuration"][role]["home_timeout_s"]
    journal.write_bytes(_line({"t": "header", **header}) + rest)
    sim = tmp_path / "sim.toml"
    sim.write_text(SIM)
    assert main(["scan", str(sim), "-q", "--resume", str(out)]) == 0
    assert status_and_frames(out)[0] == "complete"


@pytest.mark.parametrize("command", ["scan", "home", "check"])
def test_no_command_touches_the_instruments_a_running_scan_owns(command, tmp_path, capsys, connects):
    """The stages of a scan under way (here: their connection, as a lock) are refused to a second scan, to
    `microct home` (a homing would ruin the scan) and to `microct check` (its queries would interleave with
    the scan's on the same link), before anything connects."""
    from microct.config import load_config
    from microct.locks import instrument_locks

    path = tmp_path / "bench.toml"
    path.write_text(SIM.replace('[rotation]\ndriver = "sim-axis"\n', '[rotation]\ndriver = "sim-axis"\n'
                                                                   'connection = "bench-7:rotation"\n', 1))
    config, _ = load_config(path)
    assert config.rotation.connection == "bench-7:rotation"
    with instrument_locks(config):  # what a running scan holds
        assert main([command, str(path), *(["-q", "-o", str(tmp_path / "x.nxs")] if command == "scan" else [])]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "refused" in err and "bench-7:rotation" in err and f"pid {os.getpid()}" in err
    assert connects.call_count == 0
