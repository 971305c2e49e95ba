"""The simulated motor-record IOC driven by clients no one here wrote: pyepics' ``epics.Motor`` and
ophyd's ``EpicsMotor`` (pyepics control layer). Each test asserts what those clients do against a
real motor record (docs/protocols/epics-motor-record.md), so it fails if the IOC gets the record's
semantics wrong: DMOV not pulsing, RBV or VAL posted late, LVIO / HLS not set before the put
completes, VAL/RBV control limits not following HLM/LLM, STOP ignored, VELO/ACCL not honoured.

Each client has a record of its own (pyepics keeps one channel per PV name for the session, and
ophyd would otherwise be handed pyepics' plain channels): both are served by one IOC on the
``fidelity`` port. Once set up (here, or by an earlier test module), ophyd makes pyepics' ``get_pv``
build ophyd's PV subclass for the rest of the session; ``epics.Motor`` works with either.
"""

from __future__ import annotations

import os
import time

import epics
import pytest

from microct.simulators.axis import SimulatedAxisOptions
from microct.simulators.epics_motor_ioc import start_motor_iocs
from microct.testing.waiting import wait_until

# the IOC port that conftest.py put into the CA address list before pyepics started
PORT = int(dict(item.split("=") for item in os.environ["MICROCT_TEST_IOC_PORTS"].split())["fidelity"])

PYEPICS_RECORD, OPHYD_RECORD = "FID:PYEPICS:m1", "FID:OPHYD:m1"
HLM, LLM = 50.0, -50.0
SIM = SimulatedAxisOptions(unit="deg", max_velocity=100.0, acceleration=1000.0)
VELO, ACCL = SIM.max_velocity, SIM.max_velocity / SIM.acceleration  # the record's values at start-up
TIMEOUT_S = 5.0


def assert_still(read, hold_s: float = 0.1) -> float:
    """The value ``read()`` returns does not change over ``hold_s`` (the stage has stopped)."""
    first = read()
    time.sleep(hold_s)
    assert read() == pytest.approx(first, abs=1e-9)
    return first


def finish(motor, status) -> float:
    """``status.wait``, then wait for ``motor`` to drop the status; return when (monotonic s) the status
    ended. ophyd (1.11) wakes the waiter in ``_done_moving`` (``_run_subs``) before it clears the
    positioner's done-subscriptions (``_reset_sub``, in the CA thread): a move started in between loses
    its own status with them, and that status never completes (seen once in CI: a 5 s time-out on the
    move after a failed one)."""
    try:
        status.wait(TIMEOUT_S)
        return time.monotonic()
    finally:
        wait_until(lambda: not motor._callbacks[motor._SUB_REQ_DONE], what="ophyd dropping the ended status")


@pytest.fixture(scope="module")
def iocs():
    handle, iocs = start_motor_iocs([PYEPICS_RECORD, OPHYD_RECORD], PORT, SIM, high_limit=HLM, low_limit=LLM)
    yield iocs
    handle.stop()


# -- pyepics epics.Motor --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pyepics_motor(iocs):
    return epics.Motor(PYEPICS_RECORD, timeout=TIMEOUT_S)


@pytest.fixture
def motor(pyepics_motor, iocs):
    """The epics.Motor at 0, with the record's start-up limits and no limit switch afterwards."""
    ioc = iocs[PYEPICS_RECORD]
    assert pyepics_motor.move(0.0, wait=True, timeout=TIMEOUT_S) == 0
    yield pyepics_motor
    ioc.hls_position = None
    pyepics_motor.put("HLM", HLM, wait=True)
    pyepics_motor.put("LLM", LLM, wait=True)
    pyepics_motor.move(0.0, wait=True, timeout=TIMEOUT_S)


def test_epics_motor_recognises_the_record_and_reads_it(motor):
    assert motor.get("RTYP") == "motor"  # epics.Motor refuses anything else
    assert motor.units == "deg"
    assert (motor.low_limit, motor.high_limit) == (LLM, HLM)
    assert motor.get_position(readback=True) == pytest.approx(0.0)
    assert motor.done_moving == 1


def test_epics_motor_move_with_wait_arrives(motor, iocs):
    moves = iocs[PYEPICS_RECORD].moves
    assert motor.move(12.5, wait=True, timeout=TIMEOUT_S) == 0  # 0: move-with-wait finished OK
    # both read from pyepics' monitors: VAL and RBV must have been posted before the put completed
    assert motor.get_position(readback=True) == pytest.approx(12.5)
    assert motor.get_position() == pytest.approx(12.5)
    assert motor.done_moving == 1 and motor.moving == 0
    assert iocs[PYEPICS_RECORD].moves == moves + 1
    assert motor.move(-2.5, relative=True, wait=True, timeout=TIMEOUT_S) == 0
    assert motor.get_position(readback=True) == pytest.approx(10.0)


def test_epics_motor_refuses_a_move_outside_the_soft_limits(motor, iocs):
    ioc = iocs[PYEPICS_RECORD]
    motor.move(5.0, wait=True, timeout=TIMEOUT_S)
    moves = ioc.moves
    # pyepics checks HLM/LLM itself: -12 "target value outside soft limits, move not attempted"
    assert motor.move(HLM + 10.0, wait=True, timeout=TIMEOUT_S) == -12
    # past its own check the record refuses the set-point: LVIO, seen as the put completes (-4)
    assert motor.move(HLM + 10.0, wait=True, timeout=TIMEOUT_S, ignore_limits=True) == -4
    assert ioc.moves == moves, "the record must not start a refused move"
    assert motor.get_position(readback=True) == pytest.approx(5.0)
    assert motor.get_position() == pytest.approx(5.0), "VAL keeps the last accepted set-point"
    with pytest.raises(epics.motor.MotorLimitException, match="Soft limit violation"):
        motor.check_limits()
    assert motor.move(LLM, wait=True, timeout=TIMEOUT_S) == 0  # a valid set-point clears LVIO
    assert motor.check_limits() is None
    assert motor.get_position(readback=True) == pytest.approx(LLM)


def test_epics_motor_within_limits_follows_hlm_and_llm(motor):
    assert motor.within_limits(HLM) and motor.within_limits(LLM) and motor.within_limits(0.0)
    assert not motor.within_limits(HLM + 0.1) and not motor.within_limits(LLM - 0.1)
    motor.put("HLM", 20.0, wait=True)
    assert not motor.within_limits(30.0)
    assert motor.move(30.0, wait=True, timeout=TIMEOUT_S, ignore_limits=True) == -4  # the record agrees
    assert motor.get_position(readback=True) == pytest.approx(0.0)


def test_epics_motor_stop_mid_move(motor):
    assert motor.move(40.0, confirm_move=True) == 1  # 1: move begun and confirmed (MOVN seen)
    time.sleep(0.15)
    assert motor.moving == 1 and motor.done_moving == 0
    motor.stop()
    wait_until(lambda: motor.done_moving == 1, what="DMOV = 1 after STOP")
    here = assert_still(lambda: motor.get_position(readback=True))
    assert 0.0 < here < 40.0
    assert motor.moving == 0
    assert motor.get_position() == pytest.approx(here, abs=1e-6), "STOP resets VAL to RBV"


def test_epics_motor_reports_a_hardware_limit_switch(motor, iocs):
    iocs[PYEPICS_RECORD].hls_position = 20.0
    assert motor.move(40.0, wait=True, timeout=TIMEOUT_S) == -3  # -3: finished, hard limit violation seen
    assert 20.0 <= motor.get_position(readback=True) < 40.0
    with pytest.raises(epics.motor.MotorLimitException, match="High hard limit violation"):
        motor.check_limits()
    assert motor.move(0.0, wait=True, timeout=TIMEOUT_S) == 0  # moving off the switch clears HLS
    assert motor.check_limits() is None


# -- ophyd EpicsMotor -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ophyd_motor(iocs):
    import ophyd

    ophyd.set_cl("pyepics")
    from ophyd import EpicsMotor

    device = EpicsMotor(OPHYD_RECORD, name="rot")
    device.wait_for_connection(timeout=TIMEOUT_S)
    yield device
    device.destroy()


@pytest.fixture
def rot(ophyd_motor, iocs):
    """The EpicsMotor at 0, with the record's start-up VELO, ACCL, limits and no limit switch afterwards."""
    finish(ophyd_motor, ophyd_motor.set(0.0))
    yield ophyd_motor
    iocs[OPHYD_RECORD].hls_position = None
    for signal, value in ((ophyd_motor.velocity, VELO), (ophyd_motor.acceleration, ACCL),
                          (ophyd_motor.high_limit_travel, HLM), (ophyd_motor.low_limit_travel, LLM)):
        signal.put(value, wait=True)
    finish(ophyd_motor, ophyd_motor.set(0.0))


def assert_dmov_pulsed(seen: list[int]) -> None:
    """DMOV went 1 → 0 → 1 and no more. The last 1 reaches the ``dmov_seen`` callback in the CA thread,
    which may run it just after it has ended the move's status."""
    wait_until(lambda: len(seen) >= 3, what="the DMOV pulse's end")
    assert seen == [1, 0, 1]


@pytest.fixture
def dmov_seen(rot):
    """DMOV values as ophyd's monitor delivers them, the current one first."""
    seen: list[int] = []
    cid = rot.motor_done_move.subscribe(lambda value=None, **_: seen.append(int(value)))
    yield seen
    rot.motor_done_move.unsubscribe(cid)


def test_ophyd_connects_and_reads(rot):
    assert rot.connected
    assert rot.position == pytest.approx(0.0)
    assert rot.read()["rot"]["value"] == pytest.approx(0.0)
    assert rot.limits == (LLM, HLM)  # from VAL's control limits, which the record sets to LLM/HLM
    assert rot.egu == "deg"
    assert rot.velocity.get() == pytest.approx(VELO) and rot.acceleration.get() == pytest.approx(ACCL)
    assert not rot.moving


def test_ophyd_set_completes_at_the_end_of_the_move_with_the_readback_there(rot, dmov_seen):
    start = time.monotonic()
    status = rot.set(30.0)  # 0.3 s at 100 deg/s plus ACCL 0.1 s
    assert not status.done
    elapsed = finish(rot, status) - start
    # read at once: RBV must have reached ophyd before DMOV went back to 1
    assert rot.position == pytest.approx(30.0) and rot.user_readback.get() == pytest.approx(30.0)
    assert status.success
    assert 30.0 / VELO + ACCL - 0.1 <= elapsed <= 30.0 / VELO + ACCL + 0.2  # late: allowed a loaded machine
    assert_dmov_pulsed(dmov_seen)
    assert not rot.moving


def test_ophyd_sees_dmov_pulse_even_for_a_zero_length_move(rot, dmov_seen):
    status = rot.set(0.0)  # already there
    finish(rot, status)  # ophyd ends the move on DMOV 0 -> 1: without the pulse this times out
    assert status.success
    assert_dmov_pulsed(dmov_seen)


def test_ophyd_refuses_a_move_outside_the_limits_the_record_reports(rot, iocs):
    from ophyd.utils.errors import LimitError

    ioc = iocs[OPHYD_RECORD]
    moves = ioc.moves
    with pytest.raises(LimitError):
        rot.set(HLM + 10.0)
    rot.high_limit_travel.put(20.0, wait=True)
    wait_until(lambda: rot.limits == (LLM, 20.0), what="ophyd's limits following HLM")
    with pytest.raises(LimitError):
        rot.set(30.0)
    assert ioc.moves == moves, "nothing was sent to the record"
    assert rot.position == pytest.approx(0.0)
    finish(rot, rot.set(15.0))  # inside the new limits
    assert rot.position == pytest.approx(15.0)


def test_ophyd_move_the_record_refuses_still_ends(rot, iocs, dmov_seen):
    """A client whose limits are stale (or unchecked) is answered by the record: LVIO, and a DMOV
    pulse that ends ophyd's status (without it the status would never complete)."""
    from ophyd import Component, EpicsMotor, EpicsSignal

    class UncheckedMotor(EpicsMotor):
        user_setpoint = Component(EpicsSignal, ".VAL", limits=False, auto_monitor=True)

    unchecked = UncheckedMotor(OPHYD_RECORD, name="unchecked")
    lvio = EpicsSignal(OPHYD_RECORD + ".LVIO", name="lvio")
    moves = iocs[OPHYD_RECORD].moves
    try:
        unchecked.wait_for_connection(timeout=TIMEOUT_S)
        status = unchecked.set(HLM + 10.0)
        status.wait(1.0)
        assert_dmov_pulsed(dmov_seen)
        assert iocs[OPHYD_RECORD].moves == moves
        assert unchecked.position == pytest.approx(0.0)
        assert unchecked.user_setpoint.get(use_monitor=False) == pytest.approx(0.0), "VAL keeps its old value"
        assert lvio.get(use_monitor=False) == 1
    finally:
        unchecked.destroy()
        lvio.destroy()


def test_ophyd_stop_mid_move_ends_it(rot):
    status = rot.set(40.0)  # 0.5 s
    wait_until(lambda: rot.moving, what="MOVN = 1")
    time.sleep(0.1)
    stopped_at = time.monotonic()
    rot.stop()
    # ophyd ends the status when the record's DMOV returns to 1: a stopped move off the limit
    # switches, without alarm, counts as a success there
    finish(rot, status)
    assert time.monotonic() - stopped_at < 0.2, "the move must end at the stop, not at the target"
    assert status.success
    here = assert_still(lambda: rot.user_readback.get(use_monitor=False))
    assert 0.0 < here < 40.0
    assert rot.position == pytest.approx(here)
    assert not rot.moving and rot.motor_done_move.get() == 1
    assert rot.user_setpoint.get(use_monitor=False) == pytest.approx(here, abs=1e-6), "STOP resets VAL to RBV"


@pytest.mark.parametrize("velocity, distance", [(25.0, 10.0), (100.0, 20.0)])
def test_ophyd_velocity_and_acceleration_set_the_move_time(rot, velocity, distance):
    accl_s = 0.2
    rot.acceleration.put(accl_s, wait=True)
    rot.velocity.put(velocity, wait=True)
    assert rot.acceleration.get(use_monitor=False) == pytest.approx(accl_s), "a VELO put must keep ACCL"
    assert distance >= velocity * accl_s  # long enough to reach VELO: the record's move time is d/VELO + ACCL
    start = time.monotonic()
    elapsed = finish(rot, rot.set(distance)) - start
    expected = distance / velocity + accl_s
    assert expected - 0.08 <= elapsed <= expected + 0.15, (elapsed, expected)  # late: allowed a loaded machine
    assert rot.position == pytest.approx(distance)


def test_ophyd_move_into_a_limit_switch_fails(rot, iocs):
    iocs[OPHYD_RECORD].hls_position = 20.0
    from ophyd.utils import UnknownStatusFailure

    status = rot.set(40.0)
    with pytest.raises(UnknownStatusFailure):
        finish(rot, status)
    assert status.done and not status.success  # ophyd checks HLS, chosen by TDIR, when DMOV returns to 1
    assert rot.high_limit_switch.get(use_monitor=False) == 1
    assert 20.0 <= rot.position < 40.0
    finish(rot, rot.set(0.0))
    assert rot.high_limit_switch.get(use_monitor=False) == 0
