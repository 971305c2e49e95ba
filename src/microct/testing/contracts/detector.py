"""The detector contracts: ``DetectorContract`` (exposure, binning, trigger modes, frames) and
``DetectorFaultContract`` (checked through a simulator's ``DetectorHook``: a silent link, frames that
never come, the exposure really integrated)."""

from __future__ import annotations

import itertools
import math
from typing import ClassVar

import numpy as np
import pytest

from microct.devices.detector import Detector, Frame, TriggerMode
from microct.errors import DeviceTimeoutError, LimitError
from microct.testing.contracts._support import names_range, record_calls, within
from microct.testing.contracts.lifecycle import LifecycleContract


class DetectorContract(LifecycleContract):
    """The Detector contract.

    Needs the fixture ``new_device``; ``detector`` connects one (override it to
    prepare the detector further).
    """

    kind = "detector"
    interface = Detector
    connect_steps = ("_after_connect",)
    write_hooks = ("_do_prepare", "_do_set_binning", "_do_set_trigger_mode", "_do_set_exposure_s", "_do_acquire",
                   "_do_skip")

    bright_exposure_s: ClassVar[float | None] = None
    """Exposure for the saturation test; None: the longest allowed."""
    acquire_timeout_s: ClassVar[float] = 120.0
    """Longest (real time) an ``acquire`` may take before the driver is deemed hung."""

    @pytest.fixture
    def detector(self, new_device):
        detector = new_device()
        self.connect(detector)
        yield detector
        detector.close()

    def acquire(self, detector: Detector, n: int | np.integer) -> list[Frame]:
        """``detector.acquire(n)``, failing the test if it hangs."""
        return within(self.acquire_timeout_s, lambda: detector.acquire(n),  # type: ignore[arg-type]
                      f"{detector.who}: acquire({n})")

    def calls_needing_connection(self, device):
        caps = device.capabilities
        return {**super().calls_needing_connection(device),
                "acquire()": lambda: device.acquire(1),
                "set_exposure_s()": lambda: device.set_exposure_s(caps.exposure_range_s[0]),
                "set_binning()": lambda: device.set_binning(caps.binnings[0]),
                "set_trigger_mode()": lambda: device.set_trigger_mode(caps.trigger_modes[0])}

    def check_frames(self, detector: Detector, frames: list[Frame], n: int) -> None:
        assert len(frames) == n
        for frame in frames:
            assert isinstance(frame, Frame)
            assert frame.data is not None, "the contract needs a detector that hands back pixels"
            assert frame.data.shape == detector.shape
            assert frame.data.dtype == np.uint16
        numbers = [frame.frame_number for frame in frames]
        assert all(a < b for a, b in itertools.pairwise(numbers)), f"frame numbers not increasing: {numbers}"
        stamps = [frame.timestamp for frame in frames]
        assert all(a <= b for a, b in itertools.pairwise(stamps)), f"timestamps go backwards: {stamps}"

    def test_settings_go_out_at_the_first_acquisition(self, new_device, mocker):
        """Connect writes nothing: the first acquisition since connect runs ``_do_prepare`` and sends every
        held setting first, once; a setting set before it goes out when set, and not again."""
        detector = new_device()
        log: list[tuple[str, tuple]] = []
        hooks = ["_do_prepare", "_do_set_binning", "_do_set_trigger_mode", "_do_set_exposure_s", "_do_acquire"]
        record_calls(mocker, detector, hooks, log)
        self.connect(detector)
        try:
            assert log == [], f"connect() sent {log}"
            self.acquire(detector, 1)
            self.acquire(detector, 1)
            assert [name for name, _ in log] == [*hooks, "_do_acquire"], log
        finally:
            detector.close()
        log.clear()
        self.connect(detector)
        try:
            detector.set_exposure_s(detector.capabilities.exposure_range_s[0])
            self.acquire(detector, 1)
            assert [name for name, _ in log] == ["_do_prepare", "_do_set_exposure_s", "_do_set_binning",
                                                 "_do_set_trigger_mode", "_do_acquire"], log
        finally:
            detector.close()

    def test_acquire_returns_n_frames_in_order(self, detector):
        first = self.acquire(detector, 3)
        self.check_frames(detector, first, 3)
        second = self.acquire(detector, 2)
        self.check_frames(detector, first + second, 5)

    @pytest.mark.parametrize("where", ["below", "above", "zero", "negative", "nan", "inf"])
    def test_exposure_out_of_range_refused_before_hook(self, detector, mocker, where):
        low, high = detector.capabilities.exposure_range_s
        value = {"below": low / 2, "above": high * 2, "zero": 0.0, "negative": -low, "nan": math.nan,
                 "inf": math.inf}[where]
        before = detector.exposure_s
        spy = mocker.spy(detector, "_do_set_exposure_s")
        with pytest.raises(LimitError) as info:
            detector.set_exposure_s(value)
        message = str(info.value)
        assert "exposure_s" in message and f"{value:g}" in message, message
        assert names_range(message, low, high), f"the allowed range {low:g}-{high:g} is not in: {message}"
        assert spy.call_count == 0
        assert detector.exposure_s == before

    def test_exposure_in_range_is_held(self, detector):
        low, high = detector.capabilities.exposure_range_s
        value = math.sqrt(low * high)
        detector.set_exposure_s(value)
        assert detector.exposure_s == value
        assert detector.describe()["exposure_s"] == value

    def test_binning_sets_shape_pitch_and_frame_shape(self, detector):
        caps = detector.capabilities
        rows, cols = caps.shape
        for binning in (*caps.binnings, caps.binnings[0]):
            detector.set_binning(binning)
            assert detector.binning == binning
            assert detector.shape == (rows // binning, cols // binning)
            assert detector.pixel_pitch_um == pytest.approx(caps.pixel_pitch_um * binning)
            assert detector.describe()["shape"] == detector.shape
            (frame,) = self.acquire(detector, 1)
            assert frame.data is not None and frame.data.shape == detector.shape

    @pytest.mark.parametrize("which", ["unsupported", "zero", "negative"])
    def test_unsupported_binning_refused_before_hook(self, detector, mocker, which):
        binnings = detector.capabilities.binnings
        value = {"unsupported": next(b for b in itertools.count(2) if b not in binnings), "zero": 0,
                 "negative": -2}[which]
        shape = detector.shape
        spy = mocker.spy(detector, "_do_set_binning")
        with pytest.raises(LimitError) as info:
            detector.set_binning(value)
        assert "binning" in str(info.value) and str(value) in str(info.value)
        assert spy.call_count == 0
        assert detector.shape == shape

    def test_float_binning_is_refused_or_taken_as_integer(self, detector, mocker):
        binning = max(detector.capabilities.binnings)
        if binning == 1:
            pytest.skip("the detector only bins 1×1")
        before = detector.binning
        spy = mocker.spy(detector, "_do_set_binning")
        try:
            detector.set_binning(float(binning))
        except LimitError:
            assert spy.call_count == 0
            assert detector.binning == before
        else:
            assert type(detector.binning) is int
            assert all(type(n) is int for n in detector.shape)
            data = self.acquire(detector, 1)[0].data
            assert data is not None and data.shape == detector.shape

    def test_every_supported_trigger_mode_can_be_set(self, detector):
        for mode in detector.capabilities.trigger_modes:
            detector.set_trigger_mode(mode)
            assert detector.trigger_mode is mode
            assert detector.describe()["trigger_mode"] == mode.value

    def test_unsupported_trigger_mode_refused_before_hook(self, detector, mocker):
        unsupported = [mode for mode in TriggerMode if mode not in detector.capabilities.trigger_modes]
        before = detector.trigger_mode
        spy = mocker.spy(detector, "_do_set_trigger_mode")
        for mode in [*unsupported, "software"]:  # a plain string is not a TriggerMode
            with pytest.raises(LimitError) as info:
                detector.set_trigger_mode(mode)
            assert "trigger_mode" in str(info.value)
        assert spy.call_count == 0
        assert detector.trigger_mode is before

    @pytest.mark.parametrize("n", [0, -1])
    def test_frame_count_below_one_refused(self, detector, mocker, n):
        spy = mocker.spy(detector, "_do_acquire")
        with pytest.raises(LimitError) as info:
            self.acquire(detector, n)
        assert f"n={n}" in str(info.value)
        assert spy.call_count == 0

    def test_acquire_accepts_a_numpy_integer(self, detector):
        frames = self.acquire(detector, np.int64(2))
        self.check_frames(detector, frames, 2)

    def test_values_never_exceed_saturation(self, detector):
        exposure = self.bright_exposure_s or detector.capabilities.exposure_range_s[1]
        detector.set_exposure_s(exposure)
        saturation = detector.saturation_value
        assert saturation == 2 ** detector.capabilities.bit_depth - 1
        for frame in self.acquire(detector, 2):
            assert frame.data is not None and frame.data.dtype == np.uint16
            assert int(frame.data.max()) <= saturation, (
                f"frame {frame.frame_number}: max {int(frame.data.max())} > saturation {saturation}")


class DetectorFaultContract:
    """What the panel really does when things go wrong, checked past the driver through a ``DetectorHook``.

    Needs the fixtures ``detector`` (connected) and ``hook`` (the simulator's DetectorHook for that panel).
    """

    frame_timeout_bound_s: ClassVar[float] = 60.0
    """Longest (real time) an ``acquire`` may take to raise DeviceTimeoutError when no frame comes or the
    link is silent (the driver's own time-outs must end it before)."""
    exposure_resolution_s: ClassVar[float] = 1e-6
    """The smallest exposure step the detector takes (its exposure is rounded to it)."""
    exposures_s: ClassVar[tuple[float, ...] | None] = None
    """Exposures to check; None: two well inside the allowed range."""

    def exposures(self, detector: Detector) -> tuple[float, ...]:
        if self.exposures_s is not None:
            return self.exposures_s
        low, high = detector.capabilities.exposure_range_s
        first = max(low, min(high, 0.01))
        return first, max(low, min(high, 3 * first))

    def test_frames_that_never_come_are_a_timeout_and_the_next_frame_comes(self, detector, hook):
        detector.set_exposure_s(self.exposures(detector)[0])
        hook.withhold_frames()
        try:
            with pytest.raises(DeviceTimeoutError) as info:
                within(self.frame_timeout_bound_s, lambda: detector.acquire(1),
                       f"{detector.who}: acquire(1) with frames withheld")
            assert detector.name in str(info.value), f"the time-out names the detector: {info.value}"
        finally:
            hook.withhold_frames(False)
        (frame,) = within(self.frame_timeout_bound_s, lambda: detector.acquire(1), f"{detector.who}: acquire(1)")
        assert frame.data is None or frame.data.shape == detector.shape

    def test_a_silent_link_is_a_timeout_and_the_link_recovers(self, detector, hook):
        """A new exposure and a frame while the link is silent: a DeviceTimeoutError (for every detector, one
        that acquires over a separate frame channel too: the setting must cross the command link)."""
        first, second = self.exposures(detector)
        detector.set_exposure_s(first)
        hook.mute()
        try:
            with pytest.raises(DeviceTimeoutError) as info:
                within(self.frame_timeout_bound_s, lambda: (detector.set_exposure_s(second), detector.acquire(1)),
                       f"{detector.who}: set_exposure_s() and acquire(1) with no reply")
            assert detector.name in str(info.value), f"the time-out names the detector: {info.value}"
        finally:
            hook.mute(False)
        detector.set_exposure_s(second)
        (frame,) = within(self.frame_timeout_bound_s, lambda: detector.acquire(1), f"{detector.who}: acquire(1)")
        assert frame.data is None or frame.data.shape == detector.shape
        assert hook.last_exposure_s() is not None and abs(hook.last_exposure_s() - second) <= max(
            self.exposure_resolution_s, 1e-9 * second), "after the silence, the exposure set is the one integrated"

    def test_the_exposure_set_is_the_exposure_integrated(self, detector, hook):
        for exposure in self.exposures(detector):
            detector.set_exposure_s(exposure)
            frames = within(self.frame_timeout_bound_s, lambda: detector.acquire(1), f"{detector.who}: acquire(1)")
            assert len(frames) == 1
            integrated = hook.last_exposure_s()
            assert integrated is not None and abs(integrated - exposure) <= max(self.exposure_resolution_s,
                                                                                1e-9 * exposure), (
                f"exposure_s={exposure:g} was set; the panel integrated {integrated} s")
