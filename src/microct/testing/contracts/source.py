"""The X-ray source contracts: ``SourceContract`` (set-points, limits, beam, close) and ``SourceFaultContract``
(what the tube really does, read through a simulator's ``SourceHook``: beam really off, a silent
controller, an arc, the interlock)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from microct.devices.source import SourceCapabilities, SourceState, XRaySource, target_power_w
from microct.errors import DeviceStateError, DeviceTimeoutError, InterlockError, LimitError, MicroCTError
from microct.testing.contracts._support import assert_not_called, eventually, names_range, record_calls, spy_on, within
from microct.testing.contracts.hooks import SourceHook
from microct.testing.contracts.lifecycle import LifecycleContract


def _modes_by_power(caps: SourceCapabilities) -> list[str]:
    return sorted(caps.spot_modes, key=lambda mode: caps.spot_modes[mode].power_limit_w)


def _allowed(caps: SourceCapabilities, voltage_kv: float, current_ua: float, spot_mode: str) -> bool:
    (v_low, v_high), (i_low, i_high) = caps.voltage_range_kv, caps.current_range_ua
    return (v_low <= voltage_kv <= v_high and i_low <= current_ua <= i_high
            and target_power_w(voltage_kv, current_ua) <= caps.spot_modes[spot_mode].power_limit_w * (1 + 1e-9))


def moderate_point(caps: SourceCapabilities) -> dict[str, Any]:
    """A set-point well inside every limit: mid-range kV, half the smallest spot mode's power (the test is
    skipped for a tube that has none)."""
    mode = _modes_by_power(caps)[0]
    voltage = sum(caps.voltage_range_kv) / 2
    i_low, i_high = caps.current_range_ua
    current = min(i_high, max(i_low, 0.5 * caps.spot_modes[mode].power_limit_w * 1000.0 / voltage))
    if not _allowed(caps, voltage, current, mode):
        pytest.skip("no moderate operating point in the smallest spot mode for this tube")
    return {"voltage_kv": voltage, "current_ua": current, "spot_mode": mode}


class SourceContract(LifecycleContract):
    """The XRaySource contract.

    Needs the fixtures ``new_device`` and ``source``: a connected source,
    warmed up (state STANDBY), interlock closed.
    """

    kind = "source"
    interface = XRaySource
    connect_steps = ("_do_read_setpoints",)
    write_hooks = ("_do_set_voltage_kv", "_do_set_current_ua", "_do_set_spot_mode", "_do_beam_on", "_do_beam_off",
                   "_do_warm_up", "_do_reset")

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
        return moderate_point(caps)

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
        spies = spy_on(mocker, source, self.setter_hooks)
        with pytest.raises(LimitError) as info:
            getattr(source, f"set_{field}")(value)
        message = str(info.value)
        assert field in message, message
        assert f"{value:g}" in message, message
        assert names_range(message, low, high), f"the allowed range {low:g}-{high:g} is not in: {message}"
        assert_not_called(spies, f"for the refused {field}={value:g}")
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
        spies = spy_on(mocker, source, self.setter_hooks)
        with pytest.raises(LimitError) as info:
            call()
        message = str(info.value)
        assert mode in message, message
        assert f"{limit_w:g}" in message, message
        assert_not_called(spies, f"for a point above the {mode!r} power limit")
        assert self._setpoints(source) == before

    def test_unknown_spot_mode_refused_before_any_hook(self, source, mocker):
        before = self._setpoints(source)
        spies = spy_on(mocker, source, self.setter_hooks)
        with pytest.raises(LimitError) as info:
            source.set_spot_mode("no-such-mode")
        message = str(info.value)
        assert "no-such-mode" in message
        for mode in source.capabilities.spot_modes:
            assert mode in message, f"the known mode {mode!r} is not listed in: {message}"
        assert_not_called(spies, "for an unknown spot mode")
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
        record_calls(mocker, source, self.setter_hooks, log)
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
        record_calls(mocker, source, ["_do_beam_off", "_do_close"], log)
        source.close()
        source.close()
        assert not source.connected
        names = [name for name, _ in log]
        assert names.count("_do_close") == 1, log
        assert "_do_beam_off" in names and names.index("_do_beam_off") < names.index("_do_close"), (
            f"close() must switch the beam off before releasing the link: {names}")
        mocker.stopall()
        self.connect(source)
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


class SourceFaultContract:
    """What the tube really does when things go wrong, checked past the driver through a ``SourceHook``.

    Needs the fixtures ``source`` (connected, warmed up, interlock closed, state STANDBY, as for
    ``SourceContract``) and ``hook`` (the simulator's SourceHook for that tube). Every wait is bounded.
    """

    reply_timeout_bound_s: ClassVar[float] = 15.0
    """Longest (real time) a request to a silent controller may take to raise DeviceTimeoutError."""
    state_change_timeout_s: ClassVar[float] = 30.0
    """Longest (device clock) for a state change (fault, interlock, reset) to show in ``read_state``."""
    poll_interval_s: ClassVar[float] = 0.1
    clears_faults_remotely: ClassVar[bool] = True
    """False for a source whose latched fault only the operator can clear at the generator: ``reset()`` must
    then raise DeviceStateError and the fault stay latched."""

    def moderate_point(self, caps: SourceCapabilities) -> dict[str, Any]:
        return moderate_point(caps)

    def _beam_on(self, source: XRaySource, hook: SourceHook) -> None:
        source.configure(**self.moderate_point(source.capabilities))
        source.beam_on()
        assert hook.beam_on(), "beam_on() returned but the tube's high voltage is not on"

    def _state_becomes(self, source: XRaySource, wanted: set[SourceState], what: str) -> SourceState:
        seen: list[SourceState] = []

        def reached() -> bool:
            source.refresh()
            seen.append(source.read_state())
            return seen[-1] in wanted

        eventually(reached, self.state_change_timeout_s, f"{what} (states read: {seen[-3:]})", source.clock.sleep,
                   source.clock.monotonic, self.poll_interval_s)
        return seen[-1]

    def test_beam_off_really_switches_the_tube_off(self, source, hook):
        self._beam_on(source, hook)
        source.beam_off()
        assert not hook.beam_on(), "beam_off() returned but the tube's high voltage is still on"
        self._beam_on(source, hook)
        source.close()
        assert not hook.beam_on(), "close() returned but the tube's high voltage is still on"

    def test_a_silent_controller_is_a_timeout_and_the_link_recovers(self, source, hook):
        hook.mute()
        try:
            reads: dict[str, Callable[[], object]] = {"read_state()": source.read_state,
                                                      "read_voltage_kv()": source.read_voltage_kv,
                                                      "read_interlock_closed()": source.read_interlock_closed}
            for what, read in reads.items():
                def fresh_read(read: Callable[[], object] = read) -> object:
                    source.refresh()
                    return read()

                with pytest.raises(DeviceTimeoutError) as info:
                    within(self.reply_timeout_bound_s, fresh_read, f"{source.who}: {what} with no reply")
                assert source.name in str(info.value), f"the time-out names the source: {info.value}"
        finally:
            hook.mute(False)
        source.refresh()
        assert source.read_state() is SourceState.STANDBY

    def test_beam_off_to_a_silent_controller_raises_and_never_claims_success(self, source, hook):
        self._beam_on(source, hook)
        hook.mute()
        try:
            with pytest.raises(MicroCTError):
                within(self.reply_timeout_bound_s, source.beam_off, f"{source.who}: beam_off() with no reply")
        finally:
            hook.mute(False)
        assert hook.beam_on(), "the silent tube did not hear beam_off(): its beam is still on"
        source.beam_off()
        assert not hook.beam_on()

    def test_an_arc_during_exposure_latches_a_fault_until_reset(self, source, hook):
        self._beam_on(source, hook)
        hook.arc()
        self._state_becomes(source, {SourceState.FAULT}, "state FAULT after an arc")
        assert not hook.beam_on(), "the arc protection dropped the beam"
        with pytest.raises(DeviceStateError):
            source.beam_on()
        assert not hook.beam_on(), "beam_on() in state FAULT switched the tube on"
        if not self.clears_faults_remotely:
            with pytest.raises(DeviceStateError):
                source.reset()
            self._state_becomes(source, {SourceState.FAULT}, "the fault still latched after a refused reset()")
            return
        source.reset()
        self._state_becomes(source, {SourceState.STANDBY}, "state STANDBY after reset()")
        self._beam_on(source, hook)
        source.beam_off()

    def test_an_open_interlock_drops_the_beam_and_refuses_it(self, source, hook):
        self._beam_on(source, hook)
        hook.open_interlock()
        try:
            self._state_becomes(source, {SourceState.NOT_READY, SourceState.FAULT}, "state NOT_READY with the "
                                                                                    "interlock open")
            assert not hook.beam_on(), "the beam stayed on with the interlock open"
            assert source.read_interlock_closed() is False
            with pytest.raises(InterlockError):
                source.beam_on()
            assert not hook.beam_on()
        finally:
            hook.open_interlock(False)
        if self._state_becomes(source, {SourceState.STANDBY, SourceState.FAULT},
                               "the interlock closed again") is SourceState.FAULT:
            source.reset()
            self._state_becomes(source, {SourceState.STANDBY}, "state STANDBY after reset()")
        self._beam_on(source, hook)
        source.beam_off()
