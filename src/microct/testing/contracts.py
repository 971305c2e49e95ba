"""Contract test suites: written once, run against every implementation of a device interface.

Each contract is a plain pytest test class. A driver's test module subclasses
it and provides the fixtures it names; pytest then runs every contract test
against that driver. Today they run against the in-process simulators; the
same classes serve real drivers (against wire-level simulators) and
third-party driver packages::

    import pytest
    from microct.testing.contracts import SourceContract

    class TestMyTube(SourceContract):
        @pytest.fixture
        def new_device(self):
            # a zero-argument callable: each call builds a new, never-connected instance
            return lambda: MyTube("tube", MyTube.Options(port="loop://"))

        @pytest.fixture
        def source(self, new_device):
            source = new_device()
            source.connect()
            ...  # warm up; interlock closed; state STANDBY
            yield source
            source.close()

Fixtures every contract needs:

- ``new_device``: a callable returning a new, never-connected instance
  (``LifecycleContract``: construction, connection, context-manager use).
- ``source`` (``SourceContract``): a connected XRaySource, warmed up (state
  STANDBY), interlock closed.
- ``axis`` (``AxisContract``): a connected Axis with finite soft limits.
- ``detector`` (``DetectorContract``): a connected Detector.

Class attributes (tolerances, time-outs) can be overridden by the subclass.
Time passes through ``let_time_pass``, by default ``device.clock.sleep``, so a
driver on a ``SimulatedClock`` runs the suite instantly.

Behaviour that needs a simulator-only hook (opening the interlock, a tube
overload, a stalled stage) is deliberately not part of the contracts.

Needs pytest and pytest-mock (the ``test`` extra).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import numpy as np
import pydantic
import pytest

from microct.devices.axis import Axis
from microct.devices.base import Device, Status
from microct.devices.detector import Detector, Frame, TriggerMode
from microct.devices.source import SourceCapabilities, SourceState, XRaySource, target_power_w
from microct.errors import CommunicationError, DeviceStateError, DeviceTimeoutError, LimitError

__all__ = ["AxisContract", "DetectorContract", "LifecycleContract", "SourceContract"]


# -- helpers -----------------------------------------------------------------------------------------
def _hook_names(device: Device) -> list[str]:
    """Every driver hook (``_do_*`` method) of ``device``."""
    return sorted(name for name in dir(type(device)) if name.startswith("_do_") and callable(getattr(device, name)))


def _spy(mocker: Any, target: Any, names: Iterable[str]) -> dict[str, Any]:
    return {name: mocker.spy(target, name) for name in names}


def _assert_not_called(spies: dict[str, Any], when: str) -> None:
    called = {name: spy.call_args_list for name, spy in spies.items() if spy.call_count}
    assert not called, f"driver hooks ran {when}: {called}"


def _record_calls(mocker: Any, device: Device, names: Iterable[str], log: list[tuple[str, tuple]]) -> None:
    """Wrap hooks so that each call is appended to ``log`` (name, args) and then runs as usual."""
    for name in names:
        original = getattr(device, name)

        def call_through(*args, _name=name, _original=original, **kwargs):
            log.append((_name, args))
            return _original(*args, **kwargs)

        mocker.patch.object(device, name, side_effect=call_through)


def _names_range(message: str, low: float, high: float) -> bool:
    """True if ``message`` shows the range low..high (as "20-150", "20 to 150", "(0, 90]" ...)."""
    pattern = rf"(?<![\d.]){re.escape(f'{low:g}')}\D{{1,6}}{re.escape(f'{high:g}')}(?![\d.])"
    return re.search(pattern, message) is not None


def _raises(exc_type: type[BaseException], call: Callable[[], object], what: str) -> BaseException:
    """Call and return the exception of ``exc_type`` it raised; fail naming ``what`` if it did not."""
    try:
        call()
    except exc_type as exc:
        return exc
    pytest.fail(f"{what}: did not raise {exc_type.__name__}")


# -- lifecycle ---------------------------------------------------------------------------------------
class LifecycleContract:
    """What every device does: no I/O in ``__init__``, connect/close, context-manager use.

    Needs the fixture ``new_device``: a callable returning a new, never-connected instance.
    """

    kind: ClassVar[str]
    interface: ClassVar[type[Device]]
    connect_steps: ClassVar[tuple[str, ...]] = ()
    """Hooks that ``connect()`` runs after ``_do_connect`` (reading or sending the held settings)."""

    def calls_needing_connection(self, device: Device) -> dict[str, Callable[[], object]]:
        """Valid calls that must raise DeviceStateError before ``connect()``; per interface."""
        return {"describe()": device.describe}

    def calls_safe_without_connection(self, device: Device) -> dict[str, Callable[[], object]]:
        """Calls that must neither raise nor reach the driver before ``connect()``."""
        return {"close()": device.close}

    def test_implements_the_interface_and_can_be_registered(self, new_device):
        device = new_device()
        cls = type(device)
        assert isinstance(device, self.interface)
        assert cls.kind == self.kind
        assert isinstance(getattr(cls, "backend", None), str) and cls.backend, \
            "a driver declares how it reaches its device (backend), shown by `microct drivers`"
        options = getattr(cls, "Options", None)
        assert isinstance(options, type) and issubclass(options, pydantic.BaseModel), \
            "the registry builds drivers from an Options pydantic model"
        assert callable(getattr(cls, "from_config", None)), "the registry builds drivers with from_config()"

    def test_init_does_no_io(self, new_device, mocker):
        cls = type(new_device())
        spies = _spy(mocker, cls, [name for name in dir(cls) if name.startswith("_do_")])
        device = new_device()
        assert not device.connected
        _assert_not_called(spies, "while building the device (before connect())")

    def test_use_before_connect_raises_device_state_error(self, new_device, mocker):
        device = new_device()
        spies = _spy(mocker, device, _hook_names(device))
        for what, call in self.calls_needing_connection(device).items():
            exc = _raises(DeviceStateError, call, f"{what} before connect()")
            assert device.name in str(exc), f"{what}: the error names the device: {exc}"
        _assert_not_called(spies, "before connect()")
        assert not device.connected

    def test_safe_calls_before_connect(self, new_device, mocker):
        device = new_device()
        spies = _spy(mocker, device, _hook_names(device))
        for _what, call in self.calls_safe_without_connection(device).items():
            call()
            call()
        _assert_not_called(spies, "in calls that are safe before connect()")
        assert not device.connected

    def test_context_manager_connects_and_closes(self, new_device, mocker):
        device = new_device()
        close_spy = mocker.spy(device, "_do_close")
        with device as entered:
            assert entered is device
            assert device.connected
            description = device.describe()
            assert description["name"] == device.name
            assert description["driver"] == type(device).__name__
        assert not device.connected
        assert close_spy.call_count == 1

    def test_context_manager_closes_when_the_body_raises(self, new_device):
        device = new_device()

        class Boom(Exception):
            pass

        with pytest.raises(Boom):
            with device:
                raise Boom
        assert not device.connected

    def test_connect_twice_connects_once(self, new_device, mocker):
        device = new_device()
        connect_spy = mocker.spy(device, "_do_connect")
        try:
            device.connect()
            device.connect()
            assert device.connected
            assert connect_spy.call_count == 1
        finally:
            device.close()

    def test_close_twice_then_reconnect(self, new_device, mocker):
        device = new_device()
        close_spy = mocker.spy(device, "_do_close")
        device.connect()
        device.close()
        device.close()
        assert not device.connected
        assert close_spy.call_count == 1
        _raises(DeviceStateError, device.describe, "describe() after close()")
        device.connect()
        try:
            assert device.describe()["name"] == device.name
        finally:
            device.close()

    def test_failed_connect_leaves_device_disconnected_and_retry_works(self, new_device, mocker):
        device = new_device()
        step = self.connect_steps[0]
        original = getattr(device, step)
        calls = []

        def fails_once(*args, **kwargs):
            calls.append(args)
            if len(calls) == 1:
                raise CommunicationError("link dropped during connect (injected by the contract test)")
            return original(*args, **kwargs)

        mocker.patch.object(device, step, side_effect=fails_once)
        try:
            with pytest.raises(CommunicationError):
                device.connect()
            assert not device.connected, f"connect() raised (in {step}) but the device reports connected"
            device.connect()
            assert device.connected
            assert len(calls) == 2, f"the retried connect() did not run {step} again"
        finally:
            device.close()


# -- X-ray source ------------------------------------------------------------------------------------
def _modes_by_power(caps: SourceCapabilities) -> list[str]:
    return sorted(caps.spot_modes, key=lambda mode: caps.spot_modes[mode].power_limit_w)


def _allowed(caps: SourceCapabilities, voltage_kv: float, current_ua: float, spot_mode: str) -> bool:
    (v_low, v_high), (i_low, i_high) = caps.voltage_range_kv, caps.current_range_ua
    return (v_low <= voltage_kv <= v_high and i_low <= current_ua <= i_high
            and target_power_w(voltage_kv, current_ua) <= caps.spot_modes[spot_mode].power_limit_w * (1 + 1e-9))


class SourceContract(LifecycleContract):
    """The XRaySource contract.

    Needs the fixtures ``new_device`` and ``source``: a connected source,
    warmed up (state STANDBY), interlock closed.
    """

    kind = "source"
    interface = XRaySource
    connect_steps = ("_do_read_setpoints",)

    voltage_tolerance_kv: ClassVar[float] = 0.5
    """How close the kV read-back must come to the set-point."""
    current_tolerance_ua: ClassVar[float] = 1.0
    """How close the µA read-back must come to the set-point."""
    settle_timeout_s: ClassVar[float] = 120.0
    """Longest wait for the read-backs to reach the set-points after beam on."""
    poll_interval_s: ClassVar[float] = 0.5

    setter_hooks: ClassVar[tuple[str, ...]] = ("_do_set_voltage_kv", "_do_set_current_ua", "_do_set_spot_mode")

    def let_time_pass(self, source: XRaySource, seconds: float) -> None:
        source.clock.sleep(seconds)

    def calls_needing_connection(self, device):
        caps = device.capabilities
        return {**super().calls_needing_connection(device),
                "read_state()": device.read_state,
                "read_voltage_kv()": device.read_voltage_kv,
                "read_current_ua()": device.read_current_ua,
                "read_interlock_closed()": device.read_interlock_closed,
                "beam_on()": device.beam_on,
                "warm_up()": device.warm_up,
                "reset()": device.reset,
                "configure()": lambda: device.configure(voltage_kv=caps.voltage_range_kv[0],
                                                        current_ua=caps.current_range_ua[0])}

    def calls_safe_without_connection(self, device):
        return {**super().calls_safe_without_connection(device), "beam_off()": device.beam_off}

    def moderate_point(self, caps: SourceCapabilities) -> dict[str, Any]:
        """A set-point well inside every limit: mid-range kV, half the smallest spot mode's power."""
        mode = _modes_by_power(caps)[0]
        voltage = sum(caps.voltage_range_kv) / 2
        i_low, i_high = caps.current_range_ua
        current = min(i_high, max(i_low, 0.5 * caps.spot_modes[mode].power_limit_w * 1000.0 / voltage))
        if not _allowed(caps, voltage, current, mode):
            pytest.skip("no moderate operating point in the smallest spot mode for this tube")
        return {"voltage_kv": voltage, "current_ua": current, "spot_mode": mode}

    def _wait_until(self, source: XRaySource, predicate: Callable[[], bool], timeout_s: float) -> bool:
        start = source.clock.monotonic()
        while not predicate():
            if source.clock.monotonic() - start >= timeout_s:
                return False
            self.let_time_pass(source, self.poll_interval_s)
        return True

    def _setpoints(self, source: XRaySource) -> dict[str, Any]:
        return {"voltage_kv": source.voltage_kv, "current_ua": source.current_ua, "spot_mode": source.spot_mode}

    # -- limits --------------------------------------------------------------------------------------
    @pytest.mark.parametrize("where", ["below", "above", "nan", "inf"])
    @pytest.mark.parametrize("field", ["voltage_kv", "current_ua"])
    def test_setpoint_out_of_range_refused_before_any_hook(self, source, mocker, field, where):
        caps = source.capabilities
        low, high = caps.voltage_range_kv if field == "voltage_kv" else caps.current_range_ua
        value = {"below": low - max(1.0, 0.1 * (high - low)), "above": high + max(1.0, 0.1 * (high - low)),
                 "nan": math.nan, "inf": math.inf}[where]
        before = self._setpoints(source)
        spies = _spy(mocker, source, self.setter_hooks)
        with pytest.raises(LimitError) as info:
            getattr(source, f"set_{field}")(value)
        message = str(info.value)
        assert field in message, message
        assert f"{value:g}" in message, message
        assert _names_range(message, low, high), f"the allowed range {low:g}-{high:g} is not in: {message}"
        _assert_not_called(spies, f"for the refused {field}={value:g}")
        assert self._setpoints(source) == before

    @pytest.mark.parametrize("via", ["configure", "set_current_ua"])
    def test_power_above_spot_mode_limit_refused_before_any_hook(self, source, mocker, via):
        caps = source.capabilities
        mode = _modes_by_power(caps)[0]
        limit_w = caps.spot_modes[mode].power_limit_w
        voltage = caps.voltage_range_kv[1]
        i_low, i_high = caps.current_range_ua
        current = min(i_high, 2.0 * limit_w * 1000.0 / voltage)
        if current < i_low or target_power_w(voltage, current) <= limit_w * 1.001:
            pytest.skip(f"this tube cannot exceed the {mode!r} limit of {limit_w:g} W within its ranges")
        if via == "configure":
            call = lambda: source.configure(voltage_kv=voltage, current_ua=current, spot_mode=mode)  # noqa: E731
        else:
            if not _allowed(caps, voltage, i_low, mode):
                pytest.skip("no allowed starting point at full kV in the smallest mode")
            source.configure(voltage_kv=voltage, current_ua=i_low, spot_mode=mode)
            call = lambda: source.set_current_ua(current)  # noqa: E731
        before = self._setpoints(source)
        spies = _spy(mocker, source, self.setter_hooks)
        with pytest.raises(LimitError) as info:
            call()
        message = str(info.value)
        assert mode in message, message
        assert f"{limit_w:g}" in message, message
        _assert_not_called(spies, f"for a point above the {mode!r} power limit")
        assert self._setpoints(source) == before

    def test_unknown_spot_mode_refused_before_any_hook(self, source, mocker):
        before = self._setpoints(source)
        spies = _spy(mocker, source, self.setter_hooks)
        with pytest.raises(LimitError) as info:
            source.set_spot_mode("no-such-mode")
        message = str(info.value)
        assert "no-such-mode" in message
        for mode in source.capabilities.spot_modes:
            assert mode in message, f"the known mode {mode!r} is not listed in: {message}"
        _assert_not_called(spies, "for an unknown spot mode")
        assert self._setpoints(source) == before

    def test_every_spot_mode_can_be_selected(self, source):
        caps = source.capabilities
        low_point = {"voltage_kv": caps.voltage_range_kv[0], "current_ua": caps.current_range_ua[0]}
        selectable = [mode for mode in caps.spot_modes if _allowed(caps, spot_mode=mode, **low_point)]
        assert selectable, f"no spot mode allows the lowest set-point {low_point}"
        for mode in selectable:
            source.configure(spot_mode=mode, **low_point)
            assert source.spot_mode == mode
            assert source.describe()["spot_mode"] == mode

    @pytest.mark.parametrize("direction", ["into_smallest_mode", "out_of_smallest_mode"])
    def test_configure_never_sends_a_forbidden_intermediate(self, source, mocker, direction):
        caps = source.capabilities
        modes = _modes_by_power(caps)
        small, big = modes[0], modes[-1]
        (v_low, v_high), (i_low, i_high) = caps.voltage_range_kv, caps.current_range_ua
        v_start = v_low + 0.25 * (v_high - v_low)
        # low kV / high µA in the most powerful mode, and high kV / low µA in the smallest mode
        i_start = min(i_high, 0.9 * caps.spot_modes[big].power_limit_w * 1000.0 / v_start)
        i_end = max(i_low, min(i_high, 0.9 * caps.spot_modes[small].power_limit_w * 1000.0 / v_high))
        a = {"voltage_kv": v_start, "current_ua": i_start, "spot_mode": big}
        b = {"voltage_kv": v_high, "current_ua": i_end, "spot_mode": small}
        start, end = (a, b) if direction == "into_smallest_mode" else (b, a)
        if not (_allowed(caps, **a) and _allowed(caps, **b)):
            pytest.skip("this tube has no such pair of operating points")

        def hazardous(order: tuple[str, ...]) -> bool:
            point = dict(start)
            for key in order:
                point[key] = end[key]
                if not _allowed(caps, **point):
                    return True
            return False

        orders = list(itertools.permutations(["voltage_kv", "current_ua", "spot_mode"]))
        if not any(hazardous(order) for order in orders):
            pytest.skip("every order of changes is safe for this tube: nothing to check")

        source.configure(**start)
        assert self._setpoints(source) == start
        log: list[tuple[str, tuple]] = []
        _record_calls(mocker, source, self.setter_hooks, log)
        source.configure(**end)

        point = dict(start)
        field_of = {"_do_set_voltage_kv": "voltage_kv", "_do_set_current_ua": "current_ua",
                    "_do_set_spot_mode": "spot_mode"}
        for hook, args in log:
            point[field_of[hook]] = args[0]
            assert _allowed(caps, **point), (
                f"{hook}{args} sent the forbidden intermediate {point} "
                f"({target_power_w(point['voltage_kv'], point['current_ua']):.3g} W); calls: {log}")
        assert point == end, f"the device was left at {point}, not {end}; calls: {log}"
        assert self._setpoints(source) == end

    # -- beam ------------------------------------------------------------------------------------------
    def test_beam_on_reaches_setpoints(self, source):
        assert source.read_state() is SourceState.STANDBY, "the fixture must yield a warmed-up source"
        point = self.moderate_point(source.capabilities)
        source.configure(**point)
        assert self._setpoints(source) == point
        source.beam_on()
        assert source.read_state() is SourceState.BEAM_ON
        source.beam_on()  # already on: nothing happens
        assert source.read_state() is SourceState.BEAM_ON

        readings: list[tuple[float, float]] = []

        def reached() -> bool:
            readings.append((source.read_voltage_kv(), source.read_current_ua()))
            kv, ua = readings[-1]
            return (abs(kv - point["voltage_kv"]) <= self.voltage_tolerance_kv
                    and abs(ua - point["current_ua"]) <= self.current_tolerance_ua)

        assert self._wait_until(source, reached, self.settle_timeout_s), (
            f"read-backs (kV, µA) {readings[-1]} did not reach {point['voltage_kv']:g} kV, "
            f"{point['current_ua']:g} µA within {self.settle_timeout_s:g} s")
        assert source.read_state() is SourceState.BEAM_ON
        source.beam_off()
        assert source.read_state() is SourceState.STANDBY

    def test_beam_off_is_idempotent(self, source):
        source.beam_off()
        source.beam_off()
        assert source.read_state() is SourceState.STANDBY
        source.configure(**self.moderate_point(source.capabilities))
        source.beam_on()
        source.beam_off()
        source.beam_off()
        assert source.read_state() is SourceState.STANDBY

    def test_close_switches_beam_off_first_and_is_safe_twice(self, source, mocker):
        source.configure(**self.moderate_point(source.capabilities))
        source.beam_on()
        assert source.read_state() is SourceState.BEAM_ON
        log: list[tuple[str, tuple]] = []
        _record_calls(mocker, source, ["_do_beam_off", "_do_close"], log)
        source.close()
        source.close()
        assert not source.connected
        names = [name for name, _ in log]
        assert names.count("_do_close") == 1, log
        assert "_do_beam_off" in names and names.index("_do_beam_off") < names.index("_do_close"), (
            f"close() must switch the beam off before releasing the link: {names}")
        mocker.stopall()
        source.connect()
        assert source.read_state() is not SourceState.BEAM_ON

    def test_describe_reports_state_and_setpoints(self, source):
        description = source.describe()
        assert description["state"] == SourceState.STANDBY.value
        assert description["interlock_closed"] is True
        assert description["spot_mode"] == source.spot_mode
        assert isinstance(description["voltage_kv"], float)
        assert isinstance(description["current_ua"], float)
        source.configure(**self.moderate_point(source.capabilities))
        source.beam_on()
        assert source.describe()["state"] == SourceState.BEAM_ON.value


# -- axis ----------------------------------------------------------------------------------------------
class AxisContract(LifecycleContract):
    """The Axis contract.

    Needs the fixture ``new_device`` building an axis with finite soft limits
    (read from ``axis.capabilities``); ``axis`` connects one (override it to
    prepare the axis further).
    """

    kind = "axis"
    interface = Axis
    connect_steps = ("_do_set_velocity",)

    position_tolerance: ClassVar[float] = 0.01
    """How close the read-back must come to a target (in the axis unit)."""
    home_position: ClassVar[float | None] = None
    """Where ``home()`` ends, if the driver under test knows it; None: not checked."""
    tiny_timeout_s: ClassVar[float] = 1e-3

    @pytest.fixture
    def axis(self, new_device):
        axis = new_device()
        axis.connect()
        yield axis
        axis.close()

    def calls_needing_connection(self, device):
        caps = device.capabilities
        inside = 0.0 if None in (caps.low_limit, caps.high_limit) else (caps.low_limit + caps.high_limit) / 2
        return {**super().calls_needing_connection(device),
                "read_position()": device.read_position,
                "start_move_to()": lambda: device.start_move_to(inside),
                "move_to()": lambda: device.move_to(inside),
                "move_by()": lambda: device.move_by(0.0),
                "home()": device.home,
                "set_velocity()": lambda: device.set_velocity(caps.max_velocity)}

    def calls_safe_without_connection(self, device):
        return {**super().calls_safe_without_connection(device), "stop()": device.stop}

    def limits(self, axis: Axis) -> tuple[float, float]:
        low, high = axis.capabilities.low_limit, axis.capabilities.high_limit
        assert low is not None and high is not None, "the axis fixture must have finite soft limits"
        return low, high

    def at(self, axis: Axis, fraction: float) -> float:
        """The position ``fraction`` of the way from the low to the high soft limit."""
        low, high = self.limits(axis)
        return low + fraction * (high - low)

    def assert_at(self, axis: Axis, target: float) -> None:
        position = axis.read_position()
        assert abs(position - target) <= self.position_tolerance, (
            f"read-back {position:g} {axis.unit} is not within {self.position_tolerance:g} of {target:g}")

    def test_move_to_reaches_target(self, axis):
        for fraction in (0.75, 0.1, 0.5):
            target = self.at(axis, fraction)
            axis.move_to(target)
            self.assert_at(axis, target)

    def test_start_move_to_returns_status_that_wait_completes(self, axis):
        target = self.at(axis, 0.8)
        status = axis.start_move_to(target)
        assert isinstance(status, Status)
        status.wait()
        assert status.done
        self.assert_at(axis, target)

    @pytest.mark.parametrize("side", ["below", "above"])
    @pytest.mark.parametrize("how", ["start_move_to", "move_to"])
    def test_move_outside_soft_limits_refused_before_any_move(self, axis, mocker, how, side):
        low, high = self.limits(axis)
        axis.move_to(self.at(axis, 0.5))
        target = self.at(axis, -0.1 if side == "below" else 1.1)
        spy = mocker.spy(axis, "_do_start_move")
        with pytest.raises(LimitError) as info:
            getattr(axis, how)(target)
        message = str(info.value)
        assert f"{target:g}" in message, message
        assert _names_range(message, low, high), f"the soft limits {low:g}, {high:g} are not in: {message}"
        assert spy.call_count == 0
        self.assert_at(axis, self.at(axis, 0.5))

    def test_move_by_beyond_soft_limits_refused_before_any_move(self, axis, mocker):
        axis.move_to(self.at(axis, 0.5))
        spies = _spy(mocker, axis, ["_do_start_move", "_do_start_move_by"])
        with pytest.raises(LimitError):
            axis.move_by(self.at(axis, 0.7) - self.at(axis, 0.0))
        _assert_not_called(spies, "for a relative move beyond the soft limits")
        self.assert_at(axis, self.at(axis, 0.5))

    @pytest.mark.parametrize("position", [math.nan, math.inf, -math.inf])
    def test_non_finite_position_refused(self, axis, mocker, position):
        spy = mocker.spy(axis, "_do_start_move")
        with pytest.raises(LimitError) as info:
            axis.start_move_to(position)
        assert "position" in str(info.value)
        assert spy.call_count == 0

    def test_move_by_is_relative(self, axis):
        axis.move_to(self.at(axis, 0.3))
        step = self.at(axis, 0.2) - self.at(axis, 0.0)
        axis.move_by(step)
        self.assert_at(axis, self.at(axis, 0.5))
        axis.move_by(-2 * step)
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
        assert _names_range(message, 0, top), f"the allowed range (0, {top:g}] is not in: {message}"
        assert spy.call_count == 0
        assert axis.velocity == before

    def test_velocity_in_range_is_held_and_moves_still_arrive(self, axis):
        half = axis.capabilities.max_velocity / 2
        axis.set_velocity(half)
        assert axis.velocity == half
        assert axis.describe()["velocity"] == half
        target = self.at(axis, 0.6)
        axis.move_to(target)
        self.assert_at(axis, target)

    def test_stop_when_idle_is_harmless(self, axis):
        target = self.at(axis, 0.4)
        axis.move_to(target)
        axis.stop()
        axis.stop()
        self.assert_at(axis, target)
        axis.move_to(self.at(axis, 0.6))
        self.assert_at(axis, self.at(axis, 0.6))

    def test_home_completes_and_axis_moves_afterwards(self, axis):
        axis.move_to(self.at(axis, 0.9))
        axis.home()
        if self.home_position is not None:
            self.assert_at(axis, self.home_position)
        axis.move_to(self.at(axis, 0.2))
        self.assert_at(axis, self.at(axis, 0.2))

    def test_wait_with_tiny_timeout_raises_device_timeout_error(self, axis):
        axis.move_to(self.at(axis, 0.05))
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
        _record_calls(mocker, axis, ["_do_stop", "_do_close"], log)
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
        axis.move_to(target)
        description = axis.describe()
        assert description["unit"] == axis.unit
        assert abs(description["position"] - target) <= self.position_tolerance
        assert description["velocity"] == axis.velocity


# -- detector ------------------------------------------------------------------------------------------
class DetectorContract(LifecycleContract):
    """The Detector contract.

    Needs the fixture ``new_device``; ``detector`` connects one (override it to
    prepare the detector further).
    """

    kind = "detector"
    interface = Detector
    connect_steps = ("_do_set_binning", "_do_set_trigger_mode", "_do_set_exposure_s")

    bright_exposure_s: ClassVar[float | None] = None
    """Exposure for the saturation test; None: the longest allowed."""

    @pytest.fixture
    def detector(self, new_device):
        detector = new_device()
        detector.connect()
        yield detector
        detector.close()

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
            assert frame.data.shape == detector.shape
            assert frame.data.dtype == np.uint16
        numbers = [frame.frame_number for frame in frames]
        assert all(a < b for a, b in itertools.pairwise(numbers)), f"frame numbers not increasing: {numbers}"
        stamps = [frame.timestamp for frame in frames]
        assert all(a <= b for a, b in itertools.pairwise(stamps)), f"timestamps go backwards: {stamps}"

    def test_acquire_returns_n_frames_in_order(self, detector):
        first = detector.acquire(3)
        self.check_frames(detector, first, 3)
        second = detector.acquire(2)
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
        assert _names_range(message, low, high), f"the allowed range {low:g}-{high:g} is not in: {message}"
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
            (frame,) = detector.acquire(1)
            assert frame.data.shape == detector.shape

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
            assert detector.acquire(1)[0].data.shape == detector.shape

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
            detector.acquire(n)
        assert f"n={n}" in str(info.value)
        assert spy.call_count == 0

    def test_acquire_accepts_a_numpy_integer(self, detector):
        frames = detector.acquire(np.int64(2))
        self.check_frames(detector, frames, 2)

    def test_values_never_exceed_saturation(self, detector):
        exposure = self.bright_exposure_s or detector.capabilities.exposure_range_s[1]
        detector.set_exposure_s(exposure)
        saturation = detector.saturation_value
        assert saturation == 2 ** detector.capabilities.bit_depth - 1
        for frame in detector.acquire(2):
            assert frame.data.dtype == np.uint16
            assert int(frame.data.max()) <= saturation, (
                f"frame {frame.frame_number}: max {int(frame.data.max())} > saturation {saturation}")
