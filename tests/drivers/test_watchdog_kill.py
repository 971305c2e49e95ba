"""Beam off when the PC dies: a client in its own process (the real driver) switches the beam on with the
communication watchdog armed and fed, and is killed with SIGKILL (no handler, no clean-up: a crash, the OOM
killer, a power switch). The simulated source, served by this test (so that it can be watched without a
request, which would feed its watchdog), switches the beam off by itself within the watchdog time."""

from __future__ import annotations

import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from microct.simulators.hamamatsu import HamamatsuResponder
from microct.simulators.spellman import SpellmanResponder
from microct.testing.rigs import served
from microct.testing.waiting import wait_until

WATCHDOG_S = 1.0
ROOM_S = 5.0
"""For a loaded machine: the beam must be off within WATCHDOG_S + ROOM_S of the kill."""

CLIENT = textwrap.dedent("""
    import sys
    from microct.devices.base import DriverContext
    from {module} import {name} as Source

    source = Source.from_config("tube", Source.Options(**{options!r}), {address!r}, DriverContext())
    source.connect()
    source.configure(voltage_kv={voltage_kv!r}, current_ua={current_ua!r})
    source.beam_on()
    print("beam on", flush=True)
    sys.stdin.read()  # until killed
""")


@dataclass(frozen=True)
class Case:
    responder: Callable[[], Any]
    link: str
    module: str
    name: str
    options: dict[str, Any]
    point: tuple[float, float]
    armed: Callable[[Any], bool]
    """True once the simulated device's watchdog is armed as the driver left it."""


CASES = {
    # the controller's automatic X-ray stop starts disabled: only the driver's AST 1 arms it
    "hamamatsu": Case(lambda: HamamatsuResponder(seed=1, warmed_up=True, auto_stop_s=0.0), "tcp",
                      "microct.drivers.hamamatsu.driver", "HamamatsuSource",
                      {"watchdog_s": int(WATCHDOG_S), "keepalive_s": 0.3, "timeout_s": 1.0}, (60.0, 30.0),
                      lambda responder: responder.auto_stop_s == WATCHDOG_S),
    # the watchdog set in the generator's configuration; the driver feeds it
    "spellman": Case(lambda: SpellmanResponder(seed=1, watchdog_s=WATCHDOG_S), "visa",
                     "microct.drivers.spellman.driver", "SpellmanSource",
                     {"watchdog_s": WATCHDOG_S, "timeout_s": 1.0}, (60.0, 3000.0),
                     lambda responder: responder.watchdog_s == WATCHDOG_S),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_client_killed_with_the_beam_on_leaves_the_beam_to_the_watchdog(case, tmp_path):
    responder = case.responder()
    with served(responder, case.link, name="source") as link:
        code = CLIENT.format(module=case.module, name=case.name, options=case.options, address=link.address,
                             voltage_kv=case.point[0], current_ua=case.point[1])
        errors = tmp_path / "client.err"
        with errors.open("w") as stderr:
            client = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=stderr, text=True)
        try:
            assert client.stdout is not None
            ready, _, _ = select.select([client.stdout], [], [], 30.0)
            assert ready and client.stdout.readline().strip() == "beam on", errors.read_text()
            hook = responder.source.fault_hook()
            assert hook.beam_on() and case.armed(responder)
            client.send_signal(signal.SIGKILL)
            assert client.wait(timeout=10) == -signal.SIGKILL
            killed = time.monotonic()
            wait_until(lambda: not hook.beam_on(), WATCHDOG_S + ROOM_S, "the beam off by the watchdog")
            print(f"beam off {time.monotonic() - killed:.2f} s after the kill")  # shown with -s
        finally:
            if client.poll() is None:
                client.kill()
                client.wait()
