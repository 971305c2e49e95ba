"""The axis contracts (AxisContract, AxisFaultContract) for SMC100Axis talking to the wire simulator, over
both serial links a driver is tested over: a pseudo-terminal and pyserial's socket:// URL.

The faults are struck on the simulator's stage past the driver (its ``fault_hook``); a silent controller
is the server muted. The stage is made fast (the same overrides for simulator and driver), so that moves
take tens of milliseconds and the fault contract's slow moves about ``slow_move_s``.
"""

from __future__ import annotations

from typing import ClassVar

import pytest

from microct.testing.contracts import AxisContract, AxisFaultContract
from microct.testing.rigs import SERIAL_LINKS, fast_socket_close, served
from microct_smc100.driver import SMC100Axis, SMC100Options
from microct_smc100.simulator import SMC100Responder

FAST = {"max_velocity": 1800.0, "acceleration": 18000.0, "low_limit": -180.0, "high_limit": 180.0}
"""360 deg of travel at up to 1800 deg/s: a move across takes 0.3 s; a fault contract slow move, 2 s."""
RESET_S = 0.2
"""The simulated reboot after RS (home() from READY)."""


@pytest.fixture(autouse=True)
def _fast_socket_close(monkeypatch):
    fast_socket_close(monkeypatch)


@pytest.fixture(params=SERIAL_LINKS)
def served_link(request):
    responder = SMC100Responder(overrides=FAST, reset_s=RESET_S)
    with served(responder, request.param, name="smc100") as link:
        yield link


class TestSMC100(AxisContract, AxisFaultContract):
    home_position = 0.0
    slow_move_s: ClassVar[float] = 2.0

    @pytest.fixture
    def new_device(self, served_link):
        options = SMC100Options(overrides=FAST, poll_interval_s=0.01, serial={"timeout_s": 0.5})
        return lambda: SMC100Axis("rotation", options, served_link.address)

    @pytest.fixture
    def hook(self, served_link):
        return served_link.server.responder.axis.fault_hook(mute=served_link.mute)
