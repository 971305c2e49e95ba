"""The lifecycle contract every device passes: no I/O in ``__init__``, connect/close, context-manager use,
what needs a connection and what does not."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import pydantic
import pytest

from microct.devices.base import Device, Finding
from microct.errors import CommunicationError, DeviceStateError
from microct.registry import driver_problems
from microct.testing.contracts._support import assert_not_called, hook_names, raises, record_calls, spy_on, within


class LifecycleContract:
    """What every device does: no I/O in ``__init__``, connect/close, context-manager use.

    Needs the fixture ``new_device``: a callable returning a new, never-connected instance.
    """

    kind: ClassVar[str]
    interface: ClassVar[type[Device]]
    connect_steps: ClassVar[tuple[str, ...]] = ()
    """Hooks that ``connect()`` runs after ``_do_connect`` (reading or sending the held settings)."""
    connect_timeout_s: ClassVar[float] = 60.0
    """Longest a ``connect()`` may take (real time) before the driver is deemed hung."""
    write_hooks: ClassVar[tuple[str, ...]] = ()
    """The interface's hooks that set, switch or move something; connect, check and release call none."""

    def connect(self, device: Device) -> None:
        """``device.connect()``, failing the test if it hangs."""
        within(self.connect_timeout_s, device.connect, f"{device.who}: connect()")

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
        assert driver_problems(cls) == [], "what the registry would refuse"

    def test_init_does_no_io(self, new_device, mocker):
        cls = type(new_device())
        spies = spy_on(mocker, cls, [name for name in dir(cls) if name.startswith("_do_")])
        device = new_device()
        assert not device.connected
        assert_not_called(spies, "while building the device (before connect())")

    def test_use_before_connect_raises_device_state_error(self, new_device, mocker):
        device = new_device()
        spies = spy_on(mocker, device, hook_names(device))
        for what, call in self.calls_needing_connection(device).items():
            exc = raises(DeviceStateError, call, f"{what} before connect()")
            assert device.name in str(exc), f"{what}: the error names the device: {exc}"
        assert_not_called(spies, "before connect()")
        assert not device.connected

    def test_safe_calls_before_connect(self, new_device, mocker):
        device = new_device()
        spies = spy_on(mocker, device, hook_names(device))
        for _what, call in self.calls_safe_without_connection(device).items():
            call()
            call()
        assert_not_called(spies, "in calls that are safe before connect()")
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

    def test_context_manager_closes_when_the_bodyraises(self, new_device):
        device = new_device()

        class Boom(Exception):
            pass

        with pytest.raises(Boom):
            with device:
                raise Boom
        assert not device.connected

    def test_connect_check_and_release_write_nothing(self, new_device, mocker):
        """What ``microct check`` does: connect, the report, release. No hook that sets, switches or moves
        anything runs (the wire tests record the bytes themselves)."""
        device = new_device()
        log: list[tuple[str, tuple]] = []
        record_calls(mocker, device, self.write_hooks, log)
        self.connect(device)
        try:
            findings = device.check()
        finally:
            device.release()
        assert not device.connected
        assert log == [], f"connect(), check() or release() called {[name for name, _ in log]}"
        assert all(isinstance(finding, Finding) for finding in findings)
        assert [finding.item for finding in findings[:2]] == ["name", "driver"]
        raises(DeviceStateError, device.check, "check() after release()")

    def test_connect_twice_connects_once(self, new_device, mocker):
        device = new_device()
        connect_spy = mocker.spy(device, "_do_connect")
        try:
            self.connect(device)
            self.connect(device)
            assert device.connected
            assert connect_spy.call_count == 1
        finally:
            device.close()

    def test_close_twice_then_reconnect(self, new_device, mocker):
        device = new_device()
        close_spy = mocker.spy(device, "_do_close")
        self.connect(device)
        device.close()
        device.close()
        assert not device.connected
        assert close_spy.call_count == 1
        raises(DeviceStateError, device.describe, "describe() after close()")
        self.connect(device)
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
                self.connect(device)
            assert not device.connected, f"connect() raised (in {step}) but the device reports connected"
            self.connect(device)
            assert device.connected
            assert len(calls) == 2, f"the retried connect() did not run {step} again"
        finally:
            device.close()
