"""The wire simulator on its own: what the controller answers, line by line, as the manual describes it.
The stage runs on a simulated clock, so moves take no real time."""

from __future__ import annotations

import pytest

from microct.driverkit import ConfigurationError, SimulatedClock
from microct.testing.simulation import FaultSchedule
from microct_smc100.simulator import SIMULATOR, SMC100Responder

STAGE = {"max_velocity": 100.0, "acceleration": 1000.0, "low_limit": -180.0, "high_limit": 180.0}


@pytest.fixture
def clock():
    return SimulatedClock()


@pytest.fixture
def smc(clock):
    return SMC100Responder(clock=clock, overrides=STAGE, reset_s=1.0)


def ask(smc, line: str) -> str | None:
    """The reply to ``line`` (without CR LF), or None."""
    replies = smc.respond(line.encode())
    assert len(replies) <= 1
    return replies[0].decode().removesuffix("\r\n") if replies else None


def error(smc) -> str:
    return ask(smc, "1TE")


def referenced(smc, clock) -> None:
    assert ask(smc, "1OR") is None and error(smc) == "1TE@"
    clock.sleep(10)
    assert ask(smc, "1TS") == "1TS000032"


def test_power_up_identification_and_queries(smc):
    assert ask(smc, "1TS") == "1TS00000A"  # NOT REFERENCED from reset
    assert ask(smc, "1TS?") == "1TS00000A"  # as public clients ask
    assert ask(smc, "1ID?") == "1IDURS75BCC"
    assert ask(smc, "1VE").startswith("1VE SMC_CC")
    assert (ask(smc, "1SL?"), ask(smc, "1SR?"), ask(smc, "1VA?")) == ("1SL-180", "1SR180", "1VA100")
    assert ask(smc, "1TP") == "1TP0"
    assert ask(smc, "2TS") is None  # another controller's line
    assert error(smc) == "1TE@" and error(smc) == "1TE@"


def test_not_referenced_refuses_moves_and_velocity_until_the_home_search(smc, clock):
    for line in ("1PA10", "1PR10", "1VA10"):
        assert ask(smc, line) is None
        assert error(smc) == "1TEH", line
    assert error(smc) == "1TE@"  # read once
    referenced(smc, clock)
    assert ask(smc, "1OR") is None and error(smc) == "1TEK"  # OR only when NOT REFERENCED


def test_moves_report_moving_then_ready(smc, clock):
    referenced(smc, clock)
    ask(smc, "1PA90")
    assert error(smc) == "1TE@" and ask(smc, "1TS") == "1TS000028"
    ask(smc, "1PA0")
    assert error(smc) == "1TED"  # not while moving (an assumption: the PA error list names no MOVING code)
    clock.sleep(2)
    assert ask(smc, "1TS") == "1TS000033" and ask(smc, "1TP") == "1TP90"
    ask(smc, "1PR-30")
    clock.sleep(1)
    assert ask(smc, "1TP") == "1TP60"
    ask(smc, "1PA200")
    assert error(smc) == "1TEG"  # beyond SR
    ask(smc, "1PAx")
    assert error(smc) == "1TEC"
    ask(smc, "1VA1000")
    assert error(smc) == "1TEC"  # above the configured maximum


def test_an_end_of_run_aborts_the_move_and_loses_the_reference(smc, clock):
    referenced(smc, clock)
    ask(smc, "1PA100")
    clock.sleep(0.5)
    smc.axis.strike("limit_switch")
    here = ask(smc, "1TP")
    assert ask(smc, "1TS") == "1TS00020F"  # positive end of run; NOT REFERENCED from MOVING
    assert ask(smc, "1TS") == "1TS00000F"  # the read cleared the error bits
    clock.sleep(2)
    assert ask(smc, "1TP") == here
    ask(smc, "1PA0")
    assert error(smc) == "1TEH"


def test_a_stall_stays_moving_until_stop(smc, clock):
    referenced(smc, clock)
    ask(smc, "1PA-100")
    clock.sleep(0.5)
    smc.axis.strike("stage_stall")
    clock.sleep(10)
    assert ask(smc, "1TS") == "1TS000028"
    ask(smc, "1ST")
    assert error(smc) == "1TE@" and ask(smc, "1TS") == "1TS000033"


def test_refused_moves_are_the_disable_state(smc, clock):
    referenced(smc, clock)
    smc.axis.refuse_moves = True
    assert ask(smc, "1TS") == "1TS00003C"
    ask(smc, "1PA10")
    assert error(smc) == "1TEJ"
    smc.axis.refuse_moves = False
    assert ask(smc, "1TS") == "1TS000034"  # READY from DISABLE
    ask(smc, "1MM0")
    assert ask(smc, "1TS") == "1TS00003C"
    ask(smc, "1MM1")
    assert ask(smc, "1TS") == "1TS000034"


def test_reset_is_silent_then_not_referenced_with_the_configured_settings(smc, clock):
    referenced(smc, clock)
    ask(smc, "1VA10")
    ask(smc, "1SL-5")
    assert (ask(smc, "1VA?"), ask(smc, "1SL?")) == ("1VA10", "1SL-5")
    assert ask(smc, "1RS") is None
    assert ask(smc, "1TS") is None  # rebooting
    clock.sleep(1.0)
    assert ask(smc, "1TS") == "1TS00000A"
    assert (ask(smc, "1VA?"), ask(smc, "1SL?")) == ("1VA100", "1SL-180")


def test_errors_of_unknown_commands_and_missing_addresses(smc):
    assert ask(smc, "1ZZ") is None and error(smc) == "1TEA"
    assert ask(smc, "TS") is None and error(smc) == "1TEB"
    assert ask(smc, "1TBG") == "1TBG Displacement out of limits"
    assert ask(smc, "ST") is None and error(smc) == "1TEH"  # every controller; nothing to stop when not referenced


def test_faults_of_a_schedule_strike_the_stage_and_name_the_lines(clock):
    schedule = FaultSchedule([{"kind": "limit_switch", "device": "rotation", "at_projection": 0}])
    smc = SMC100Responder(clock=clock, faults=schedule, overrides=STAGE)
    assert schedule.attached() == ["rotation"]
    assert smc.fault_device(b"1TS") == "rotation" and smc.fault_device(b"ST") == "rotation"
    assert smc.fault_device(b"2TS") is None and smc.fault_device(b"\xff") is None


def test_sim_serve_options_are_checked():
    with pytest.raises(ConfigurationError, match="address"):
        SIMULATOR.serve({"address": 40}, None, 0)
    with pytest.raises(ConfigurationError, match="stage"):
        SIMULATOR.serve({"stage": "nope"}, None, 0)
    served = SIMULATOR.serve({}, None, 0)  # no options at all
    try:
        assert served.address.startswith("socket://127.0.0.1:")
    finally:
        served.stop()
