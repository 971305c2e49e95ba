"""What the contract suites share: spies on driver hooks, bounded calls, bounded waits."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import pytest

from microct.devices.base import Device, Status

T = TypeVar("T")


def hook_names(device: Device) -> list[str]:
    """Every driver hook (``_do_*`` method) of ``device``."""
    return sorted(name for name in dir(type(device)) if name.startswith("_do_") and callable(getattr(device, name)))


def spy_on(mocker: Any, target: Any, names: Iterable[str]) -> dict[str, Any]:
    return {name: mocker.spy(target, name) for name in names}


def assert_not_called(spies: dict[str, Any], when: str) -> None:
    called = {name: s.call_args_list for name, s in spies.items() if s.call_count}
    assert not called, f"driver hooks ran {when}: {called}"


def record_calls(mocker: Any, device: Device, names: Iterable[str], log: list[tuple[str, tuple]]) -> None:
    """Wrap hooks so that each call is appended to ``log`` (name, args) and then runs as usual."""
    for name in names:
        original = getattr(device, name)

        def call_through(*args, _name=name, _original=original, **kwargs):
            log.append((_name, args))
            return _original(*args, **kwargs)

        mocker.patch.object(device, name, side_effect=call_through)


def names_range(message: str, low: float, high: float) -> bool:
    """True if ``message`` shows the range low..high (as "20-150", "20 to 150", "(0, 90]" ...)."""
    pattern = rf"(?<![\d.]){re.escape(f'{low:g}')}\D{{1,6}}{re.escape(f'{high:g}')}(?![\d.])"
    return re.search(pattern, message) is not None


def raises(exc_type: type[BaseException], call: Callable[[], object], what: str) -> BaseException:
    """Call and return the exception of ``exc_type`` it raised; fail naming ``what`` if it did not."""
    try:
        call()
    except exc_type as exc:
        return exc
    pytest.fail(f"{what}: did not raise {exc_type.__name__}")


def within(seconds: float, call: Callable[[], T], what: str) -> T:
    """``call()``'s result (or its exception), failing the test if it has not returned after ``seconds`` of
    real time: a driver that hangs fails its contract instead of hanging the suite. The call runs in a
    daemon thread; a hung one is left behind."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as error:  # handed to the caller's thread
            outcome["error"] = error

    worker = threading.Thread(target=run, name=f"contract: {what}", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        pytest.fail(f"{what} did not return within {seconds:g} s: the driver hangs")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def settle(status: Status, timeout_s: float, what: str) -> Status:
    """Wait (through the status's clock) up to ``timeout_s`` for ``status`` to end, successfully or not;
    fail the test if it has not ended (a Status that never completes). Returns ``status``."""
    try:
        status.wait(timeout_s)
    except Exception:  # noqa: BLE001 - the operation's own error, or the wait timing out: told apart below
        pass
    if not status.done:
        pytest.fail(f"{what}: its Status did not end within {timeout_s:g} s")
    return status


def eventually(predicate: Callable[[], bool], timeout_s: float, what: str, sleep: Callable[[float], None],
               now: Callable[[], float] = time.monotonic, poll_s: float = 0.05) -> None:
    """Return once ``predicate()`` is true; fail naming ``what`` after ``timeout_s`` (of ``now``'s time,
    passing with ``sleep``: the device's clock)."""
    deadline = now() + timeout_s
    while not predicate():
        if now() >= deadline:
            pytest.fail(f"{what}: not so within {timeout_s:g} s")
        sleep(poll_s)
