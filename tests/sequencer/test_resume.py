"""Resume: an aborted or killed scan continues from its last whole frame into a file equivalent to an
uninterrupted scan; the journal is what makes it possible."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
from scan_file import events, read

from microct.errors import ConfigurationError, MicroCTError, ScanAborted
from microct.journal import journal_path, read_journal
from microct.options import deep_merged as merged
from microct.sequencer import run_scan

FIELDS = ("entry/instrument/detector/image_key", "entry/sample/rotation_angle", "entry/instrument/detector/count_time",
          "entry/sample/x_translation")


@pytest.fixture
def make_scan(make_scan):
    """These tests compare a resumed file with an uninterrupted one: no fresh references at the resume
    (test_resume_checks.py has the default, fresh references at every resume)."""
    return lambda overrides=None: make_scan(merged({"scan": {"resume_references_after_s": 1e9}}, overrides or {}))


def abort_at(instruments, mocker, projection: int):
    """Make the scan fail as it moves to projection ``projection`` (a lost stage, say)."""
    real = instruments.rotation.start_move_to
    moves = []

    def move(angle):
        moves.append(angle)
        if len(moves) == projection + 1:
            raise RuntimeError("stage lost")
        return real(angle)

    mocker.patch.object(instruments.rotation, "start_move_to", side_effect=move)


@pytest.fixture
def reference(make_scan, tmp_path):
    config, instruments, _ = make_scan()
    out = tmp_path / "reference.nxs"
    run_scan(config, instruments, out)
    return out


def test_an_aborted_scan_resumes_into_a_file_equivalent_to_an_uninterrupted_one(make_scan, mocker, reference):
    config, instruments, out = make_scan()
    abort_at(instruments, mocker, 5)
    with pytest.raises(ScanAborted):
        run_scan(config, instruments, out)
    assert journal_path(out).exists()  # kept: the scan is not complete
    with h5py.File(out, "r") as f:
        before = f["entry/instrument/detector/data"][()]
    assert len(before) == 3 + 4 + 5  # darks, flats, projections 0-4 (the 5th kept although its next move failed)

    config, instruments, _ = make_scan()
    result = run_scan(config, instruments, out, resume=True)
    assert (result.status, result.frames_written) == ("complete", 3 + 4 + 12)
    assert (result.darks, result.flats, result.projections) == (3, 4, 12)
    for name in FIELDS:
        np.testing.assert_allclose(read(out, name), read(reference, name), atol=1e-6)
    data = read(out, "entry/instrument/detector/data")
    np.testing.assert_array_equal(data[:len(before)], before)  # the first frames, copied as they were
    assert read(out, "entry/logs/status") == "complete"
    log = events(out)
    assert any(m.startswith("scan aborted: RuntimeError: stage lost") for m in log)  # the interruption stays logged
    assert "scan resumed after 12 frames" in " ".join(log)
    assert not journal_path(out).exists() and not any(p.name.endswith(".interrupted") for p in out.parent.iterdir())


def test_resume_rebuilds_frames_from_a_file_hdf5_cannot_open_any_more(make_scan, mocker, reference):
    config, instruments, out = make_scan()
    abort_at(instruments, mocker, 7)
    with pytest.raises(ScanAborted):
        run_scan(config, instruments, out)
    with h5py.File(out, "r") as f:
        before = f["entry/instrument/detector/data"][()]
    with open(out, "r+b") as f:  # what a kill during a metadata flush can leave: a broken superblock
        f.write(b"\0" * 512)
    with pytest.raises(OSError):
        h5py.File(out, "r")
    config, instruments, _ = make_scan()
    run_scan(config, instruments, out, resume=True)
    np.testing.assert_array_equal(read(out, "entry/instrument/detector/data")[:len(before)], before)
    np.testing.assert_array_equal(read(out, FIELDS[0]), read(reference, FIELDS[0]))


def test_resume_refuses_another_configuration_before_touching_anything(make_scan, mocker):
    config, instruments, out = make_scan()
    abort_at(instruments, mocker, 3)
    with pytest.raises(ScanAborted):
        run_scan(config, instruments, out)
    config, instruments, _ = make_scan({"scan": {"n_projections": 24, "exposure_s": 0.2}})
    connect = mocker.spy(instruments, "connect")
    with pytest.raises(ConfigurationError, match=r"scan.exposure_s: 0.5 then, 0.2 now; scan.n_projections: 12 then, "
                                                 r"24 now"):
        run_scan(config, instruments, out, resume=True)
    connect.assert_not_called()
    assert journal_path(out).exists()  # still resumable with the right configuration


def test_a_complete_scan_has_no_journal_and_nothing_to_resume(make_scan, reference):
    assert not journal_path(reference).exists()
    config, instruments, _ = make_scan()
    with pytest.raises(MicroCTError, match=r"nothing to resume .*it completed"):
        run_scan(config, instruments, reference, resume=True)


def test_a_new_scan_will_not_overwrite_an_interrupted_scans_journal(make_scan, mocker):
    config, instruments, out = make_scan()
    abort_at(instruments, mocker, 2)
    with pytest.raises(ScanAborted):
        run_scan(config, instruments, out)
    os.unlink(out)
    config, instruments, _ = make_scan()
    with pytest.raises(ScanAborted, match=r"journal of an interrupted scan"):
        run_scan(config, instruments, out)


@pytest.mark.parametrize("stopped", ["between the renames", "while rebuilding", "between the deletes"])
def test_a_resume_killed_at_any_step_resumes_again(make_scan, mocker, reference, stopped):
    config, instruments, out = make_scan()
    abort_at(instruments, mocker, 6)
    with pytest.raises(ScanAborted):
        run_scan(config, instruments, out)
    aside, journal = out.with_name(out.name + ".interrupted"), journal_path(out)
    os.replace(out, aside)  # the first rename of a resume
    if stopped == "while rebuilding":
        os.replace(journal, journal_path(aside))
        out.write_bytes(b"half a file")
        journal.write_bytes(b"half a journal")
    elif stopped == "between the deletes":  # the rebuilt pair is the one to resume; a stale journal is left
        os.replace(journal, journal_path(aside))
        config, instruments, _ = make_scan()
        abort_at(instruments, mocker, 2)  # two projections more, then it fails again
        mocker.patch("microct.sequencer.discard", side_effect=lambda i: i.data_file.unlink())
        with pytest.raises(ScanAborted):
            run_scan(config, instruments, out, resume=True)
        assert journal_path(aside).exists() and not aside.exists()
        mocker.stopall()
    config, instruments, _ = make_scan()
    run_scan(config, instruments, out, resume=True)
    np.testing.assert_array_equal(read(out, FIELDS[0]), read(reference, FIELDS[0]))
    np.testing.assert_allclose(read(out, FIELDS[1]), read(reference, FIELDS[1]), atol=1e-6)


def test_a_torn_last_journal_line_is_dropped(make_scan, mocker):
    config, instruments, out = make_scan()
    abort_at(instruments, mocker, 4)
    with pytest.raises(ScanAborted):
        run_scan(config, instruments, out)
    path = journal_path(out)
    whole = read_journal(path)
    frame_lines = [line for line in path.read_bytes().splitlines(keepends=True) if line.startswith(b'{"t":"frame"')]
    with open(path, "ab") as f:  # what a kill in the middle of a write leaves
        f.write(frame_lines[-1][:40])
    torn = read_journal(path)
    assert len(torn.frames) == len(whole.frames) == 3 + 4 + 4
