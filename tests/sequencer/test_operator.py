"""What a scan tells its operator, and the references it checks before its projections (issue 14)."""

from __future__ import annotations

import time
from datetime import datetime

import h5py
import pytest
from scan_file import events

from microct.cli import main
from microct.errors import ReferenceCheckError, ScanAborted
from microct.sequencer import run_scan


def test_a_tube_that_emits_nothing_stops_the_scan_after_the_flats_saying_they_are_dark(make_scan):
    config, inst, out = make_scan({"source": {"options": {"emits_xrays": False}}})
    with pytest.raises(ScanAborted) as aborted:
        run_scan(config, inst, out)
    assert isinstance(aborted.value.__cause__, ReferenceCheckError)
    assert "the flats are dark" in str(aborted.value) and "no X-rays reached the detector" in str(aborted.value)
    with h5py.File(out, "r") as f:
        assert list(f["entry/instrument/detector/image_key"][()]) == [2] * 3 + [1] * 4  # no projection exposed
        assert f["entry/logs/status"][()].decode() == "aborted"
    assert inst.source._beam is False  # the simulated tube's own high-voltage flag


def test_darks_that_look_lit_stop_the_scan(make_scan):
    config, inst, out = make_scan({"scan": {"reference_check": {"max_dark_fraction": 1e-4}}})  # 6.5 counts: lit
    with pytest.raises(ScanAborted, match="the darks look lit"):
        run_scan(config, inst, out)


def test_the_reference_check_can_be_turned_off(make_scan):
    config, inst, out = make_scan({"source": {"options": {"emits_xrays": False}},
                                   "scan": {"reference_check": {"enabled": False}}})
    assert run_scan(config, inst, out).status == "complete"


def test_references_taken_at_the_end_are_checked_with_a_warning(make_scan):
    config, inst, out = make_scan({"source": {"options": {"emits_xrays": False}}, "scan": {"references_at": "end"}})
    assert run_scan(config, inst, out).status == "complete"  # the projections are taken already: keep them
    assert any(m.startswith("reference check: the flats are dark") for m in events(out))


def test_good_references_are_logged_with_their_figures(make_scan):
    config, inst, out = make_scan()
    run_scan(config, inst, out)
    assert any(m.startswith("references look right: darks") for m in events(out))


def test_a_scan_without_flats_warns_in_plan_and_at_its_start(make_scan, tmp_path, capsys):
    config, inst, out = make_scan({"scan": {"n_flats": 0}})
    run_scan(config, inst, out)
    assert any(m.startswith("scan.n_flats = 0: no flat fields") for m in events(out))
    toml = tmp_path / "noflats.toml"
    from importlib.resources import files

    toml.write_text(files("microct.configs").joinpath("sim.toml").read_text().replace("n_flats = 10", "n_flats = 0"))
    assert main(["plan", str(toml)]) == 0
    assert "scan.n_flats = 0: no flat fields" in " ".join(capsys.readouterr().out.split())


def test_progress_names_each_phase_with_counts_details_and_a_falling_eta(make_scan):
    config, inst, out = make_scan({"source": {"options": {"warmed_up": False, "warmup_s": 5.0}}})
    seen = []
    run_scan(config, inst, out, progress=seen.append)
    phases = [p.phase for p in seen]
    order = ["connecting", "homing", "warm-up", "darks", "stabilising", "flats", "projections", "finishing"]
    assert [phase for phase in dict.fromkeys(phases)] == order
    warm = next(p for p in seen if p.phase == "warm-up")
    assert "kV" in warm.detail and "µA" in warm.detail and "(at most 3600 s)" in warm.detail
    assert "about 5 s left" in warm.detail  # the simulated tube tells how long its warm-up still needs
    darks = [p for p in seen if p.phase == "darks"]
    assert [(p.done, p.total) for p in darks] == [(i, 3) for i in range(1, 4)]
    projections = [p for p in seen if p.phase == "projections"]
    assert [(p.done, p.total) for p in projections] == [(i, 12) for i in range(1, 13)]
    assert projections[-1].frames_done == projections[-1].frames_total == 3 + 4 + 12
    etas = [p.eta_s for p in projections]
    assert etas == sorted(etas, reverse=True) and etas[-1] == pytest.approx(0.0) and etas[0] > 0


def test_a_pause_is_reported_with_its_reason(make_scan):
    config, inst, out = make_scan()
    pause = out.with_name(out.name + ".pause")
    seen = []

    def progress(at):
        seen.append(at)
        if at.phase == "projections" and at.done == 2 and not pause.exists() and not any(
                p.phase == "paused" for p in seen):
            pause.touch()
            inst.clock.call_later(5.0, pause.unlink)

    run_scan(config, inst, out, progress=progress)
    paused = [p for p in seen if p.phase == "paused"]
    assert paused and f"delete {pause} to go on" in paused[0].detail


def test_the_log_is_kept_beside_the_file_and_in_it(make_scan):
    config, inst, out = make_scan()
    run_scan(config, inst, out)
    beside = out.with_name(out.name + ".log").read_text()
    with h5py.File(out, "r") as f:
        inside = f["entry/logs/log"][()].decode()
    for text in (beside, inside):
        assert "INFO" in text and "scan started" in text and "tube stable" in text


def test_a_simulated_clock_scan_records_wall_clock_times(make_scan):
    config, inst, out = make_scan()  # sim.toml: a simulated clock, a 600 s warm-up that takes no time
    before = time.time()
    run_scan(config, inst, out)
    with h5py.File(out, "r") as f:
        end = datetime.fromisoformat(f["entry/end_time"][()].decode()).timestamp()
        simulated_end = datetime.fromisoformat(f["entry/logs/simulated_end_time"][()].decode()).timestamp()
        assert f["entry/logs/clock"][()].decode() == "simulated"
    assert before <= end <= time.time() + 1
    assert simulated_end > end + 500  # the warm-up's 10 minutes, in simulated time only
