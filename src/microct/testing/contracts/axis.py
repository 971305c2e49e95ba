"""The axis contracts: ``AxisContract`` (a stage with soft limits), ``UnboundedAxisContract`` (a rotation
stage without them) and ``AxisFaultContract`` (what the stage really does, read through a simulator's
``AxisHook``: a silent controller, a stall, a limit switch, a refused move, stop, the velocity's unit)."""

from __future__ import annotations

import math
from typing import ClassVar

import pytest

from microct.devices.axis import Axis, move_duration_s
from microct.devices.base import Status
from microct.errors import DeviceFaultError, DeviceStateError, DeviceTimeoutError, LimitError, MicroCTError
from microct.testing.contracts._support import (
    assert_not_called,
    eventually,
    names_range,
    record_calls,
    settle,
    spy_on,
    within,
)
from microct.testing.contracts.hooks import AxisHook
from microct.testing.contracts.lifecycle import LifecycleContract


class _AxisLifecycle(LifecycleContract):
    """What both axis contracts share: the kind, the ``axis`` fixture (``new_device`` connected), bounded
    moves, and what needs a connection."""

    kind = "axis"
    interface = Axis
    connect_steps = ("_after_connect",)
    write_hooks = ("_do_prepare_motion", "_do_set_velocity", "_do_start_move", "_do_start_move_by",
                   "_do_start_home", "_do_stop")

    position_tolerance: ClassVar[float] = 0.01
    """How close the read-back must come to a target (in the axis unit)."""
    move_timeout_s: ClassVar[float] = 60.0
    """Longest a move or homing may take (device clock) before its Status is deemed hung."""

    @pytest.fixture
    def axis(self, new_device):
        axis = new_device()
        self.connect(axis)
        yield axis
        axis.close()

    def move_to(self, axis: Axis, target: float) -> None:
        axis.move_to(target, timeout_s=self.move_timeout_s)

    def move_by(self, axis: Axis, delta: float) -> None:
        axis.move_by(delta, timeout_s=self.move_timeout_s)

    def assert_at(self, axis: Axis, target: float) -> None:
        position = axis.read_position()
        assert abs(position - target) <= self.position_tolerance, (
            f"read-back {position:g} {axis.unit} is not within {self.position_tolerance:g} of {target:g}")

    def calls_safe_without_connection(self, device):
        return {**super().calls_safe_without_connection(device), "stop()": device.stop}

    def test_the_velocity_goes_out_before_the_first_motion_once(self, new_device, mocker):
        """Connect sends no set-point: ``_do_prepare_motion`` and the held velocity go out before the first
        motion since connect (a homing here), once; and again after a new connect."""
        axis = new_device()
        log: list[tuple[str, tuple]] = []
        record_calls(mocker, axis, ["_do_prepare_motion", "_do_set_velocity", "_do_start_home"], log)
        self.connect(axis)
        try:
            assert log == [], f"connect() sent {log}"
            axis.home(timeout_s=self.move_timeout_s)
            axis.home(timeout_s=self.move_timeout_s)
            assert [name for name, _ in log] == ["_do_prepare_motion", "_do_set_velocity", "_do_start_home",
                                                 "_do_start_home"], log
            assert log[1][1] == (axis.velocity,)
        finally:
            axis.close()
        log.clear()
        self.connect(axis)
        try:
            axis.home(timeout_s=self.move_timeout_s)
            assert [name for name, _ in log][:2] == ["_do_prepare_motion", "_do_set_velocity"], log
        finally:
            axis.close()


class AxisContract(_AxisLifecycle):
    """The Axis contract.

    Needs the fixture ``new_device`` building an axis with finite soft limits
    (read from ``axis.capabilities``); ``axis`` connects one (override it to
    prepare the axis further).
    """

    home_position: ClassVar[float | None] = None
    """Where ``home()`` ends, if the driver under test knows it; None: not checked."""
    tiny_timeout_s: ClassVar[float] = 1e-3

    def calls_needing_connection(self, device):
        caps = device.capabilities
        inside = 0.0 if None in (caps.low_limit, caps.high_limit) else (caps.low_limit + caps.high_limit) / 2
        return {**super().calls_needing_connection(device),
                "read_position()": device.read_position,
                "start_move_to()": lambda: device.start_move_to(inside),
                "move_to()": lambda: device.move_to(inside),
                "move_by()": lambda: device.move_by(0.0),
                "home()": device.home,
                "read_referenced()": device.read_referenced,
                "set_velocity()": lambda: device.set_velocity(caps.max_velocity)}


    def limits(self, axis: Axis) -> tuple[float, float]:
        low, high = axis.capabilities.low_limit, axis.capabilities.high_limit
        assert low is not None and high is not None, "the axis fixture must have finite soft limits"
        return low, high

    def at(self, axis: Axis, fraction: float) -> float:
        """The position ``fraction`` of the way from the low to the high soft limit."""
        low, high = self.limits(axis)
        return low + fraction * (high - low)


    def test_move_to_reaches_target(self, axis):
        for fraction in (0.75, 0.1, 0.5):
            target = self.at(axis, fraction)
            self.move_to(axis, target)
            self.assert_at(axis, target)

    def test_start_move_to_returns_status_that_wait_completes(self, axis):
        target = self.at(axis, 0.8)
        status = axis.start_move_to(target)
        assert isinstance(status, Status)
        assert axis.moving or status.done
        status.wait(self.move_timeout_s)
        assert status.done and not axis.moving
        self.assert_at(axis, target)

    @pytest.mark.parametrize("side", ["below", "above"])
    @pytest.mark.parametrize("how", ["start_move_to", "move_to"])
    def test_move_outside_soft_limits_refused_before_any_move(self, axis, mocker, how, side):
        low, high = self.limits(axis)
        self.move_to(axis, self.at(axis, 0.5))
        target = self.at(axis, -0.1 if side == "below" else 1.1)
        spy = mocker.spy(axis, "_do_start_move")
        with pytest.raises(LimitError) as info:
            getattr(axis, how)(target)
        message = str(info.value)
        assert f"{target:g}" in message, message
        assert names_range(message, low, high), f"the soft limits {low:g}, {high:g} are not in: {message}"
        assert spy.call_count == 0
        self.assert_at(axis, self.at(axis, 0.5))

    def test_move_by_beyond_soft_limits_refused_before_any_move(self, axis, mocker):
        self.move_to(axis, self.at(axis, 0.5))
        spies = spy_on(mocker, axis, ["_do_start_move", "_do_start_move_by"])
        with pytest.raises(LimitError):
            axis.move_by(self.at(axis, 0.7) - self.at(axis, 0.0))
        assert_not_called(spies, "for a relative move beyond the soft limits")
        self.assert_at(axis, self.at(axis, 0.5))

    @pytest.mark.parametrize("position", [math.nan, math.inf, -math.inf])
    def test_non_finite_position_refused(self, axis, mocker, position):
        spy = mocker.spy(axis, "_do_start_move")
        with pytest.raises(LimitError) as info:
            axis.start_move_to(position)
        assert "position" in str(info.value)
        assert spy.call_count == 0

    def test_move_by_is_relative(self, axis):
        self.move_to(axis, self.at(axis, 0.3))
        step = self.at(axis, 0.2) - self.at(axis, 0.0)
        self.move_by(axis, step)
        self.assert_at(axis, self.at(axis, 0.5))
        self.move_by(axis, -2 * step)
        self.assert_at(axis, self.at(axis, 0.1))

    @pytest.mark.parametrize("factor", [0.0, -1.0, 1.5, math.nan])
    def test_velocity_outside_allowed_range_refused(self, axis, mocker, factor):
        top = axis.capabilities.max_velocity
        velocity = factor * top
        before = axis.velocity
        spy = mocker.spy(axis, "_do_set_velocity")
        with pytest.raises(LimitError) as info:
            axis.set_velocity(velocity)
        message = str(info.value)
        assert "velocity" in message and f"{velocity:g}" in message, message
        assert names_range(message, 0, top), f"the allowed range (0, {top:g}] is not in: {message}"
        assert spy.call_count == 0
        assert axis.velocity == before

    def test_velocity_in_range_is_held_and_moves_still_arrive(self, axis):
        half = axis.capabilities.max_velocity / 2
        axis.set_velocity(half)
        assert axis.velocity == half
        assert axis.describe()["velocity"] == half
        target = self.at(axis, 0.6)
        self.move_to(axis, target)
        self.assert_at(axis, target)

    def test_stop_when_idle_is_harmless(self, axis):
        target = self.at(axis, 0.4)
        self.move_to(axis, target)
        axis.stop()
        axis.stop()
        self.assert_at(axis, target)
        self.move_to(axis, self.at(axis, 0.6))
        self.assert_at(axis, self.at(axis, 0.6))

    def test_home_completes_and_axis_moves_afterwards(self, axis):
        self.move_to(axis, self.at(axis, 0.9))
        axis.home(timeout_s=self.move_timeout_s)
        if self.home_position is not None:
            self.assert_at(axis, self.home_position)
        assert axis.read_referenced() is not False, "after home() the axis reports no position reference"
        self.move_to(axis, self.at(axis, 0.2))
        self.assert_at(axis, self.at(axis, 0.2))

    def test_wait_with_tiny_timeout_raises_device_timeout_error(self, axis):
        self.move_to(axis, self.at(axis, 0.05))
        axis.set_velocity(axis.velocity / 100)  # a move of seconds: still running however late this thread runs
        start, target = axis.read_position(), self.at(axis, 0.95)
        status = axis.start_move_to(target)
        with pytest.raises(TimeoutError) as info:
            status.wait(self.tiny_timeout_s)
        assert isinstance(info.value, DeviceTimeoutError)
        assert axis.name in str(info.value), f"the time-out names the axis: {info.value}"
        assert not status.done
        axis.stop()
        here = axis.read_position()
        assert start - self.position_tolerance <= here <= target + self.position_tolerance, (
            f"after stop() the axis is at {here:g}, outside the path {start:g} → {target:g}")

    def test_close_stops_motion_and_is_safe_twice(self, axis, mocker):
        axis.start_move_to(self.at(axis, 0.9))
        log: list[tuple[str, tuple]] = []
        record_calls(mocker, axis, ["_do_stop", "_do_close"], log)
        axis.close()
        axis.close()
        assert not axis.connected
        names = [name for name, _ in log]
        assert names.count("_do_close") == 1, log
        assert "_do_stop" in names and names.index("_do_stop") < names.index("_do_close"), names
        with pytest.raises(DeviceStateError):
            axis.read_position()

    def test_describe_reports_position_and_unit(self, axis):
        target = self.at(axis, 0.3)
        self.move_to(axis, target)
        description = axis.describe()
        assert description["unit"] == axis.unit
        assert abs(description["position"] - target) <= self.position_tolerance
        assert description["velocity"] == axis.velocity


class UnboundedAxisContract(_AxisLifecycle):
    """The contract of a rotation stage without soft limits (``capabilities.low_limit`` and ``high_limit``
    None): moves of several turns either way arrive, relative moves add up, nothing finite is refused.

    Needs the fixture ``new_device``; ``axis`` connects one. ``span`` is how far (unit) the moves go.
    """

    span: ClassVar[float] = 720.0

    def calls_needing_connection(self, device):
        return {**super().calls_needing_connection(device),
                "read_position()": device.read_position,
                "start_move_to()": lambda: device.start_move_to(0.0),
                "move_to()": lambda: device.move_to(0.0),
                "home()": device.home,
                "read_referenced()": device.read_referenced}



    def test_has_no_soft_limits(self, axis):
        caps = axis.capabilities
        assert caps.low_limit is None and caps.high_limit is None and not caps.bounded, (
            f"an unbounded stage has no soft limits: {caps.low_limit}, {caps.high_limit}")
        for position in (-1e6, 1e6):
            caps.check_position(position)

    def test_turns_either_way_arrive(self, axis):
        start = axis.read_position()
        for target in (start + self.span, start - self.span, start + self.span / 3):
            axis.move_to(target, timeout_s=self.move_timeout_s)
            self.assert_at(axis, target)

    def test_relative_moves_add_up(self, axis):
        start = axis.read_position()
        for _ in range(3):
            axis.move_by(self.span / 3, timeout_s=self.move_timeout_s)
        self.assert_at(axis, start + self.span)
        axis.move_by(-self.span, timeout_s=self.move_timeout_s)
        self.assert_at(axis, start)

    @pytest.mark.parametrize("position", [math.nan, math.inf, -math.inf])
    def test_non_finite_position_refused(self, axis, mocker, position):
        spied = mocker.spy(axis, "_do_start_move")
        with pytest.raises(LimitError):
            axis.start_move_to(position)
        assert spied.call_count == 0


class AxisFaultContract:
    """What the stage really does when things go wrong, checked past the driver through an ``AxisHook``.

    Needs the fixtures ``axis`` (connected, finite soft limits, referenced/homed as its driver needs) and
    ``hook`` (the simulator's AxisHook for that stage). Every wait is bounded: a Status that never ends
    fails the test.
    """

    position_tolerance: ClassVar[float] = 0.01
    move_timeout_s: ClassVar[float] = 60.0
    """Longest a move may take (device clock) before its Status is deemed hung."""
    reply_timeout_bound_s: ClassVar[float] = 15.0
    """Longest (real time) a request to a silent controller may take to raise DeviceTimeoutError."""
    silent_move_bound_s: ClassVar[float] = 15.0
    """Longest (device clock) a running move's Status may take to fail after its controller went silent."""
    slow_move_s: ClassVar[float] = 4.0
    """How long (device clock) the moves that faults strike take: long enough to strike them mid-way."""
    timing_slack_s: ClassVar[float] = 2.0
    """What a loaded machine may add (device clock) to the time of a timed move (only as an upper bound)."""

    def at(self, axis: Axis, fraction: float) -> float:
        low, high = axis.capabilities.low_limit, axis.capabilities.high_limit
        assert low is not None and high is not None, "the axis fixture must have finite soft limits"
        return low + fraction * (high - low)

    def move_to(self, axis: Axis, target: float) -> None:
        axis.move_to(target, timeout_s=self.move_timeout_s)

    def slow_move(self, axis: Axis, start: float, end: float) -> Status:
        """From ``start``, start a move to ``end`` at a velocity that makes it last about ``slow_move_s``."""
        self.move_to(axis, self.at(axis, start))
        distance = abs(self.at(axis, end) - self.at(axis, start))
        axis.set_velocity(min(axis.capabilities.max_velocity, distance / self.slow_move_s))
        return axis.start_move_to(self.at(axis, end))

    def wait_until_under_way(self, axis: Axis, hook: AxisHook, origin: float) -> None:
        eventually(lambda: abs(hook.true_position() - origin) > self.position_tolerance, self.move_timeout_s,
                   "the stage leaving its start", axis.clock.sleep, axis.clock.monotonic, 0.02)

    def assert_stands_still(self, axis: Axis, hook: AxisHook, what: str) -> float:
        here = hook.true_position()
        axis.clock.sleep(0.3)
        later = hook.true_position()
        assert abs(later - here) <= self.position_tolerance, f"{what}: the stage still moves ({here:g} → {later:g})"
        return later

    def test_a_silent_controller_is_a_timeout_in_reads(self, axis, hook):
        hook.mute()
        try:
            with pytest.raises(DeviceTimeoutError) as info:
                within(self.reply_timeout_bound_s, axis.read_position, f"{axis.who}: read_position() with no reply")
            assert axis.name in str(info.value), f"the time-out names the axis: {info.value}"
        finally:
            hook.mute(False)
        assert abs(axis.read_position() - hook.true_position()) <= self.position_tolerance

    def test_a_silent_controller_fails_the_running_moves_status_with_a_timeout(self, axis, hook):
        origin = self.at(axis, 0.1)
        status = self.slow_move(axis, 0.1, 0.9)
        self.wait_until_under_way(axis, hook, origin)
        hook.mute()
        try:
            settle(status, self.silent_move_bound_s, "a move whose controller went silent")
        finally:
            hook.mute(False)
        assert isinstance(status.error, DeviceTimeoutError), (
            f"the move's Status ended with {status.error!r}, not a DeviceTimeoutError")
        assert not axis.moving
        axis.stop()
        axis.set_velocity(axis.capabilities.max_velocity)
        self.move_to(axis, self.at(axis, 0.5))
        assert abs(hook.true_position() - self.at(axis, 0.5)) <= self.position_tolerance

    def test_stop_really_halts_the_stage(self, axis, hook):
        origin = self.at(axis, 0.1)
        status = self.slow_move(axis, 0.1, 0.9)
        self.wait_until_under_way(axis, hook, origin)
        within(self.reply_timeout_bound_s, axis.stop, f"{axis.who}: stop()")
        settle(status, self.move_timeout_s, "a move that stop() ended")
        assert status.error is not None, "a move ended by stop() must not report success"
        here = self.assert_stands_still(axis, hook, "after stop()")
        assert abs(here - self.at(axis, 0.9)) > self.position_tolerance, "stop() came after the move had ended"
        assert not axis.moving

    def test_a_stall_never_completes_the_move_and_stop_ends_it(self, axis, hook):
        origin = self.at(axis, 0.1)
        status = self.slow_move(axis, 0.1, 0.9)
        self.wait_until_under_way(axis, hook, origin)
        hook.strike("stage_stall")
        with pytest.raises(DeviceTimeoutError):
            status.wait(self.slow_move_s * 2)
        assert not status.done, "a stalled move was reported done"
        within(self.reply_timeout_bound_s, axis.stop, f"{axis.who}: stop()")
        settle(status, self.move_timeout_s, "a stalled move that stop() ended")
        assert status.error is not None
        self.assert_stands_still(axis, hook, "after stop() of a stalled move")
        axis.set_velocity(axis.capabilities.max_velocity)
        self.move_to(axis, self.at(axis, 0.5))
        assert abs(hook.true_position() - self.at(axis, 0.5)) <= self.position_tolerance

    def test_a_limit_switch_fails_the_move_and_the_next_move_works(self, axis, hook):
        origin = self.at(axis, 0.1)
        status = self.slow_move(axis, 0.1, 0.9)
        self.wait_until_under_way(axis, hook, origin)
        hook.strike("limit_switch")
        settle(status, self.move_timeout_s, "a move stopped by a limit switch")
        assert isinstance(status.error, DeviceFaultError), (
            f"a limit switch mid-move must fail the Status with DeviceFaultError, not {status.error!r}")
        assert not axis.moving, "the axis reports moving after its move failed"
        here = self.assert_stands_still(axis, hook, "after the limit switch")
        assert abs(axis.read_position() - here) <= self.position_tolerance, "the read-back is not where the stage is"
        axis.set_velocity(axis.capabilities.max_velocity)
        self.move_to(axis, self.at(axis, 0.5))
        assert abs(hook.true_position() - self.at(axis, 0.5)) <= self.position_tolerance

    def test_a_refused_move_fails_and_nothing_moves(self, axis, hook):
        self.move_to(axis, self.at(axis, 0.3))
        before = hook.true_position()
        hook.refuse_moves()
        try:
            try:
                status = axis.start_move_to(self.at(axis, 0.7))
            except MicroCTError:
                pass
            else:
                settle(status, self.move_timeout_s, "a move the controller refused")
                assert status.error is not None, "a move the controller refused was reported done"
        finally:
            hook.refuse_moves(False)
        assert abs(hook.true_position() - before) <= self.position_tolerance, "a refused move moved the stage"
        self.move_to(axis, self.at(axis, 0.7))
        assert abs(hook.true_position() - self.at(axis, 0.7)) <= self.position_tolerance

    def test_the_stage_moves_at_the_velocity_set(self, axis, hook):
        """The speed measured past the driver (the true position between two pairs of clock readings) is the
        velocity set: a velocity sent in another unit moves the stage at another speed. Each position is
        read between two clock readings, so a late thread only widens the bounds, never fails the test."""
        clock = axis.clock
        self.slow_move(axis, 0.1, 0.9)
        velocity, mark, end = axis.velocity, self.at(axis, 0.3), self.at(axis, 0.9)
        eventually(lambda: hook.true_position() >= mark, self.move_timeout_s, "the stage passing 30 % of its travel",
                   clock.sleep, clock.monotonic, 0.005)

        def reading() -> tuple[float, float, float]:
            before = clock.monotonic()
            position = hook.true_position()
            return before, position, clock.monotonic()

        t1_before, x1, t1_after = reading()
        clock.sleep(self.slow_move_s / 4)
        t2_before, x2, t2_after = reading()
        assert x2 < end - self.position_tolerance, (
            f"the stage reached {x2:g} {axis.unit} sooner than a move at {velocity:g} {axis.unit}/s would: the "
            f"velocity is not sent in {axis.unit}/s")
        slowest, fastest = (x2 - x1) / (t2_after - t1_before), (x2 - x1) / (t2_before - t1_after)
        assert slowest <= 1.2 * velocity and fastest >= 0.8 * velocity, (
            f"velocity {velocity:g} {axis.unit}/s was set; the stage moved at {slowest:.4g} to {fastest:.4g} "
            f"{axis.unit}/s: the velocity is not sent in {axis.unit}/s")
        axis.stop()

    @pytest.mark.parametrize("fraction_of_top_speed", [0.25, 1.0])
    def test_velocity_is_honoured_in_the_axis_unit(self, axis, hook, fraction_of_top_speed):
        caps = axis.capabilities
        velocity = fraction_of_top_speed * caps.max_velocity
        distance = min(self.at(axis, 0.9) - self.at(axis, 0.1), velocity * self.slow_move_s)
        start = self.at(axis, 0.1)
        self.move_to(axis, start)
        axis.set_velocity(velocity)
        expected = move_duration_s(distance, velocity, caps.acceleration)
        began = axis.clock.monotonic()
        self.move_to(axis, start + distance)
        took = axis.clock.monotonic() - began
        assert abs(hook.true_position() - (start + distance)) <= self.position_tolerance
        # lower bound by construction (the simulated stage cannot arrive sooner); upper bound with room
        assert took >= 0.8 * expected, (
            f"a {distance:g} {axis.unit} move at {velocity:g} {axis.unit}/s took {took:.3g} s, expected at least "
            f"{expected:.3g} s: the velocity is not sent in {axis.unit}/s")
        assert took <= 1.5 * expected + self.timing_slack_s, (
            f"a {distance:g} {axis.unit} move at {velocity:g} {axis.unit}/s took {took:.3g} s, expected "
            f"{expected:.3g} s: the velocity is not sent in {axis.unit}/s")
