"""Recovery policies: an arc, an opened interlock, a lost frame, a glitch on a link or a pause on request
costs a retake, not the scan; a fault that persists still aborts safely."""

from __future__ import annotations

import numpy as np
import pytest
from scan_file import events, read
from test_safety import FAIL_AT, aborted_by, assert_safe_and_aborted, fail_on_projection

from microct.devices import SourceState
from microct.errors import CommunicationError, FrameLostError, ProtocolError
from microct.policies import BeamDropped
from microct.sequencer import run_scan

FRAMES = 3 + 4 + 12


def once(action):
    """``action`` the first time, then nothing (a fault that comes and goes)."""
    done = []

    def run():
        if not done:
            done.append(True)
            action()
    return run


def raising(error):
    def run():
        raise error
    return run


def assert_complete_and_clean(out, reference=None):
    assert read(out, "entry/logs/status") == "complete"
    keys = read(out, "entry/instrument/detector/image_key")
    assert len(keys) == FRAMES
    np.testing.assert_allclose(read(out, "entry/sample/rotation_angle")[keys == 0], [30.0 * i for i in range(12)])
    projections = read(out, "entry/instrument/detector/data")[keys == 0].astype(float)
    means = projections.mean(axis=(1, 2))
    assert means.min() > 0.8 * np.median(means)  # no frame exposed during a fault was kept


def test_an_arc_mid_projection_is_reset_restabilised_and_the_projection_retaken(make_scan, mocker):
    config, inst, out = make_scan()
    reset = mocker.spy(inst.source, "reset")
    fail_on_projection(inst, mocker, once(inst.source.trigger_overload))
    result = run_scan(config, inst, out)
    assert result.status == "complete"
    assert_complete_and_clean(out)
    reset.assert_called_once()
    log = events(out)
    arc = next(i for i, m in enumerate(log) if "tube fault during the frame" in m)
    assert "frame dropped; beam off, reset, wait 5 s, re-stabilise, retake (1 of 3)" in log[arc]
    assert any(m.startswith("tube stable") for m in log[arc:])  # re-stabilised before the retake
    assert read(out, "entry/logs/events/frame")[arc] == 3 + 4 + FAIL_AT  # the frame it concerns


def test_a_tube_that_keeps_arcing_aborts_safely_after_the_retakes(make_scan, mocker):
    config, inst, out = make_scan({"scan": {"recovery": {"arc_retakes": 2}}})
    original, taken = inst.detector.acquire, []

    def acquire(n):  # from projection FAIL_AT on, every exposure arcs
        if inst.source.read_state() is SourceState.BEAM_ON and inst.sample_out.read_position() == 0.0:
            taken.append(n)
            if len(taken) > FAIL_AT:
                inst.source.trigger_overload()
        return original(n)

    mocker.patch.object(inst.detector, "acquire", side_effect=acquire)
    with aborted_by(BeamDropped, "beam dropped during the frame"):
        run_scan(config, inst, out)
    assert_safe_and_aborted(inst, out, frames_expected=3 + 4 + FAIL_AT)
    assert "giving up after 2 arc reactions" in " ".join(events(out))


def test_an_interlock_opened_and_closed_again_pauses_and_the_scan_completes(make_scan, mocker):
    config, inst, out = make_scan()

    def open_for_a_while():
        inst.source.set_interlock(False)
        inst.clock.call_later(30.0, lambda: inst.source.set_interlock(True))  # someone shuts the door

    fail_on_projection(inst, mocker, once(open_for_a_while))
    run_scan(config, inst, out)
    assert_complete_and_clean(out)
    log = " | ".join(events(out))
    assert "interlock opened" in log and "interlock closed: re-stabilising the beam" in log


@pytest.mark.parametrize("error", [CommunicationError("detector: link lost"), ProtocolError("detector: garbled reply")])
def test_a_transient_communication_error_is_retried_after_a_back_off(make_scan, mocker, error):
    config, inst, out = make_scan()
    fail_on_projection(inst, mocker, once(raising(error)))
    sleep = mocker.spy(inst.clock, "sleep")
    run_scan(config, inst, out)
    assert_complete_and_clean(out)
    assert f"{type(error).__name__}: {error}; retry 1 of 3 in 0.5 s" in " ".join(events(out))
    assert 0.5 in [c.args[0] for c in sleep.call_args_list]


def test_back_off_doubles_and_a_persistent_error_aborts(make_scan, mocker):
    config, inst, out = make_scan({"scan": {"recovery": {"retries": 3, "backoff_s": 1.0}}})
    fail_on_projection(inst, mocker, raising(CommunicationError("detector: link lost")))
    sleep = mocker.spy(inst.clock, "sleep")
    with aborted_by(CommunicationError, "link lost"):
        run_scan(config, inst, out)
    waits = [c.args[0] for c in sleep.call_args_list if c.args[0] >= 1.0]
    assert waits == [1.0, 2.0, 4.0]
    assert_safe_and_aborted(inst, out, frames_expected=3 + 4 + FAIL_AT)


def test_a_dropped_frame_is_retaken_at_the_same_angle(make_scan, mocker):
    config, inst, out = make_scan()
    moves = mocker.spy(inst.rotation, "start_move_to")
    fail_on_projection(inst, mocker, once(raising(FrameLostError("detector: frame 12 dropped by the plugin"))))
    run_scan(config, inst, out)
    assert_complete_and_clean(out)
    assert "frame 12 dropped by the plugin; retaken at the same angle (1 of 3)" in " ".join(events(out))
    targets = [c.args[0] for c in moves.call_args_list]
    assert targets.count(30.0 * FAIL_AT) == 2  # moved there again (a zero-length move) for the retake


def test_policy_zero_turns_a_reaction_off(make_scan, mocker):
    config, inst, out = make_scan({"scan": {"recovery": {"retries": 0}}})
    fail_on_projection(inst, mocker, once(raising(CommunicationError("detector: link lost"))))
    with aborted_by(CommunicationError):
        run_scan(config, inst, out)


def test_a_pause_on_request_holds_the_scan_and_a_long_one_switches_the_beam_off(make_scan, mocker):
    config, inst, out = make_scan({"scan": {"recovery": {"pause_beam_off_s": 60.0}}})
    pause = out.with_name(out.name + ".pause")
    states, frames = [], []

    def progress(at):
        if at.phase not in ("darks", "flats", "projections") or at.frames_done in frames:
            return  # not a new frame (the scan also reports while it connects, waits, pauses)
        frames.append(at.frames_done)
        if at.frames_done == 3 + 4 + 2:
            pause.touch()  # the user pauses (touch scan.nxs.pause) ...
            inst.clock.call_later(61.0, pause.unlink)  # ... and deletes it 61 s later (simulated time)
        states.append(inst.source.read_state())

    run_scan(config, inst, out, progress=progress)
    assert_complete_and_clean(out)
    log = events(out)
    assert [m for m in log if m.startswith(("paused", "resumed"))][:2] == [
        "paused on request: delete scan.nxs.pause to resume", "paused for over 60 s: beam off"]
    resumed = next(i for i, m in enumerate(log) if m.startswith("resumed after"))
    assert log[resumed + 1].startswith("beam on") and log[resumed + 2].startswith("tube stable")
    assert all(state is SourceState.BEAM_ON for state in states[3 + 4:-1])  # every projection under a stable beam
