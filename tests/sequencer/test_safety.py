"""Every way out of a scan switches the beam off and leaves a valid file marked aborted."""

from __future__ import annotations

import contextlib
import os
import signal

import h5py
import pytest

from microct.cli import EXIT_SIGTERM, _terminate
from microct.devices import SourceState
from microct.errors import CommunicationError, DeviceTimeoutError, InterlockError, ScanAborted
from microct.sequencer import run_scan

FAIL_AT = 5  # projection index at which the trouble starts (after 3 darks and 4 flats)


def fail_on_projection(inst, mocker, action):
    """Run ``action`` inside the detector's acquire of projection FAIL_AT."""
    original = inst.detector.acquire
    seen = {"n": 0}

    def acquire(n):
        if inst.source.read_state() is SourceState.BEAM_ON and inst.sample_out.read_position() == 0.0:
            if seen["n"] == FAIL_AT:
                action()
            seen["n"] += 1
        return original(n)

    mocker.patch.object(inst.detector, "acquire", side_effect=acquire)


@contextlib.contextmanager
def aborted_by(cause: type[BaseException], match: str | None = None):
    """Expect a ScanAborted caused by ``cause``, its message matching ``match``."""
    with pytest.raises(ScanAborted, match=match) as info:
        yield info
    assert isinstance(info.value.__cause__, cause), repr(info.value.__cause__)


def assert_safe_and_aborted(inst, out, frames_expected):
    assert inst.source._beam is False  # the simulated tube's own high-voltage flag
    assert not inst.source.connected
    with h5py.File(out, "r") as f:  # opens: a valid HDF5 file
        assert f["entry/logs/status"][()].decode() == "aborted"
        n = f["entry/instrument/detector/data"].shape[0]
        assert n == frames_expected
        for name in ("image_key", "count_time", "sequence_number", "start_time"):
            assert f[f"entry/instrument/detector/{name}"].shape == (n,)
        assert f["entry/sample/rotation_angle"].shape == (n,)
        assert f["entry/end_time"][()].decode() != ""
        assert any(m.decode().startswith("scan aborted") for m in f["entry/logs/events/message"][()])


@pytest.mark.parametrize("raised, caught", [
    (CommunicationError("detector: link lost"), CommunicationError),
    (DeviceTimeoutError("detector: no frame"), TimeoutError),
    (RuntimeError("a bug"), RuntimeError),
    (KeyboardInterrupt(), KeyboardInterrupt),  # propagates as itself
])
def test_error_or_ctrl_c_mid_scan_turns_beam_off_and_keeps_frames(make_scan, mocker, raised, caught):
    config, inst, out = make_scan()
    beam_off = mocker.spy(inst.source, "beam_off")

    def boom():
        raise raised

    fail_on_projection(inst, mocker, boom)
    with pytest.raises(caught) if caught is KeyboardInterrupt else aborted_by(caught):
        run_scan(config, inst, out)
    assert beam_off.called
    assert_safe_and_aborted(inst, out, frames_expected=3 + 4 + FAIL_AT)


def test_sigterm_mid_scan_turns_beam_off_and_exits_143(make_scan, mocker):
    config, inst, out = make_scan()
    previous = signal.signal(signal.SIGTERM, _terminate)  # the CLI's handler
    try:
        fail_on_projection(inst, mocker, lambda: os.kill(os.getpid(), signal.SIGTERM))
        with pytest.raises(SystemExit) as stop:
            run_scan(config, inst, out)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert stop.value.code == EXIT_SIGTERM
    # the signal lands during the acquire that raised it; that frame is never written
    assert_safe_and_aborted(inst, out, frames_expected=3 + 4 + FAIL_AT)


def test_real_sigint_mid_scan(make_scan, mocker):
    config, inst, out = make_scan()
    fail_on_projection(inst, mocker, lambda: os.kill(os.getpid(), signal.SIGINT))
    with pytest.raises(KeyboardInterrupt):
        run_scan(config, inst, out)
    assert_safe_and_aborted(inst, out, frames_expected=3 + 4 + FAIL_AT)


def test_interlock_that_stays_open_aborts_safely_after_the_timeout(make_scan, mocker):
    config, inst, out = make_scan()
    fail_on_projection(inst, mocker, lambda: inst.source.set_interlock(False))
    with aborted_by(InterlockError, "stayed open for 600 s"):
        run_scan(config, inst, out)
    assert_safe_and_aborted(inst, out, frames_expected=3 + 4 + FAIL_AT)


def test_open_interlock_at_start_never_switches_the_beam_on(make_scan, mocker):
    config, inst, out = make_scan({"source": {"options": {"interlock_closed": False}}})
    beam_on = mocker.spy(inst.source, "_do_beam_on")
    with aborted_by(InterlockError):
        run_scan(config, inst, out)
    assert not beam_on.called
    assert_safe_and_aborted(inst, out, frames_expected=0)


def test_unstable_tube_times_out_with_beam_off(make_scan):
    config, inst, out = make_scan({"source": {"options": {"ramp_kv_per_s": 0.01}},
                                   "scan": {"stable_timeout_s": 30.0}})
    with aborted_by(DeviceTimeoutError, "not within"):
        run_scan(config, inst, out)
    assert_safe_and_aborted(inst, out, frames_expected=3)  # the darks, taken before the beam came on


def test_failing_beam_off_during_abort_is_reported_and_the_file_still_closes(make_scan, mocker):
    config, inst, out = make_scan()

    def source_and_detector_fail():
        mocker.patch.object(inst.source, "_do_beam_off", side_effect=CommunicationError("source: port closed"))
        raise CommunicationError("detector: gone")

    fail_on_projection(inst, mocker, source_and_detector_fail)
    with aborted_by(CommunicationError, "detector: gone") as aborted:  # the scan's error, not the abort's
        run_scan(config, inst, out)
    assert aborted.value.path == out and aborted.value.frames_written == 3 + 4 + FAIL_AT
    assert f"keeps {3 + 4 + FAIL_AT} frames" in str(aborted.value)
    with h5py.File(out, "r") as f:
        assert f["entry/logs/status"][()].decode() == "aborted"
        log = [m.decode() for m in f["entry/logs/events/message"][()]]
    assert any("beam off failed" in m for m in log)


def test_beam_off_at_abort_is_tried_again_until_the_link_is_back(make_scan, mocker):
    """A link that drops and comes back (Channel Access re-connects within 10 s) must not leave the tube on
    because the scan aborted in the gap: beam off is tried again, with the recovery policy's back-off."""
    config, inst, out = make_scan({"scan": {"recovery": {"retries": 3, "backoff_s": 0.5}}})
    real_beam_off = inst.source._do_beam_off
    attempts = []

    def link_back_at_the_third_try():
        attempts.append(inst.clock.monotonic())
        if len(attempts) < 3:
            raise CommunicationError("source: link lost")
        real_beam_off()

    def link_drops():
        mocker.patch.object(inst.source, "_do_beam_off", side_effect=link_back_at_the_third_try)
        raise RuntimeError("a bug")  # not transient: the scan aborts at once, with the link still down

    fail_on_projection(inst, mocker, link_drops)
    with aborted_by(RuntimeError):
        run_scan(config, inst, out)
    assert len(attempts) >= 3  # the abort's three tries (then closing the instruments switches it off again)
    assert [round(b - a, 3) for a, b in zip(attempts[:3], attempts[1:3])] == [0.5, 1.0]  # the policy's back-off
    assert_safe_and_aborted(inst, out, frames_expected=3 + 4 + FAIL_AT)
    with h5py.File(out, "r") as f:
        log = [m.decode() for m in f["entry/logs/events/message"][()]]
    assert sum("abort: beam off failed" in m and "trying again" in m for m in log) == 2


def test_beam_off_at_abort_gives_up_after_the_retries_and_says_so(make_scan, mocker):
    config, inst, out = make_scan({"scan": {"recovery": {"retries": 2, "backoff_s": 0.1}}})
    beam_off = mocker.patch.object(inst.source, "_do_beam_off")

    def link_gone_for_good():
        beam_off.side_effect = CommunicationError("source: gone")
        beam_off.reset_mock()
        raise RuntimeError("a bug")

    fail_on_projection(inst, mocker, link_gone_for_good)
    with aborted_by(RuntimeError):
        run_scan(config, inst, out)
    assert beam_off.call_count >= 3  # the abort's three tries (closing the instruments tries once more)
    with h5py.File(out, "r") as f:
        log = [m.decode() for m in f["entry/logs/events/message"][()]]
    assert any(m.startswith("abort: beam off failed: ") for m in log)
