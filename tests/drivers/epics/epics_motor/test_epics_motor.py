"""EpicsMotorAxis over real Channel Access (pyepics) to the caproto motor-record IOC driving a
SimulatedAxis: the axis contract and its fault contract (a silent record, stall, limit switch, refused
set-point), a set-point refused by the record (LVIO), the soft-limit rule (off only with both dial limits
0, an inverted pair refuses every move), a hardware limit switch, stop mid-move, and the IOC going away
mid-move."""

from __future__ import annotations

import os
import threading
import time

import pytest

from microct.devices.base import DriverContext
from microct.drivers.epics_motor.driver import EpicsMotorAxis, EpicsMotorOptions
from microct.errors import CommunicationError, ConfigurationError, DeviceFaultError, DeviceStateError, LimitError
from microct.simulators.axis import SimulatedAxisOptions
from microct.simulators.detector import SimulatedDetectorOptions
from microct.simulators.epics_beamline import DEFAULT_ROTATION, ROTATION, start_beamline
from microct.simulators.epics_motor_ioc import start_motor_ioc
from microct.testing.contracts import AxisContract, AxisFaultContract

# the IOC ports that conftest.py put into the CA address list before pyepics started
MAIN_PORT, SPARE_PORT = (int(dict(item.split("=") for item in os.environ["MICROCT_TEST_IOC_PORTS"].split())[role])
                         for role in ("motor", "motor_spare"))

RECORD = "CT:ROT:m1"
HLM, LLM = 100.0, -100.0
SIM = SimulatedAxisOptions(unit="deg", max_velocity=2000.0, acceleration=1e5)
OPTIONS = {"unit": "deg", "max_velocity": SIM.max_velocity, "connect_timeout_s": 1.0, "put_timeout_s": 2.0,
           "move_timeout_s": 5.0}
FAULT_MOVE_TIMEOUT_S = 3.0
"""The driver's move_timeout_s in the contract class: what fails a move whose record went silent (its put-
callback never completes); longer than any move there (the slow ones last AxisFaultContract.slow_move_s)."""


def build(record: str = RECORD, **changes) -> EpicsMotorAxis:
    return EpicsMotorAxis.from_config("rot", EpicsMotorOptions(**{**OPTIONS, **changes}), record, DriverContext())


@pytest.fixture(scope="module")
def ioc():
    handle, stage = start_motor_ioc(RECORD, MAIN_PORT, SIM, high_limit=HLM, low_limit=LLM)
    yield handle, stage
    handle.stop()


def limits(handle, low: float, high: float) -> None:
    """Put ``LLM``/``HLM`` (and so ``DLLM``/``DHLM``: user = dial) in the IOC, past Channel Access."""
    record = handle.ioc
    record.call(record.LLM.write(low))
    record.call(record.HLM.write(high))


class TestContract(AxisContract, AxisFaultContract):
    home_position = SIM.home_position
    slow_move_s = 0.8  # 160 deg at 200 deg/s: long enough to strike, well inside FAULT_MOVE_TIMEOUT_S
    silent_move_bound_s = 10.0  # the Status fails FAULT_MOVE_TIMEOUT_S after the move started

    @pytest.fixture
    def new_device(self, ioc):
        return lambda: build(move_timeout_s=FAULT_MOVE_TIMEOUT_S)

    @pytest.fixture
    def hook(self, ioc):
        hook = ioc[0].ioc.fault_hook()
        yield hook
        hook.mute(False)
        hook.refuse_moves(False)


@pytest.fixture
def axis(ioc):
    axis = build()
    axis.connect()
    yield axis
    axis.close()


def test_record_limits_narrow_the_configured_ones(ioc):
    axis = build(low_limit=-50.0, high_limit=500.0)
    with axis:
        assert (axis.capabilities.low_limit, axis.capabilities.high_limit) == (-50.0, HLM)
        with pytest.raises(LimitError, match="150"):
            axis.start_move_to(150.0)


def test_set_point_refused_by_the_record_is_a_limit_error_naming_lvio(ioc):
    handle, _stage = ioc
    axis = build(use_record_limits=False, low_limit=-200.0, high_limit=200.0)
    with axis:
        axis.move_to(10.0)
        moves = handle.ioc.moves
        with pytest.raises(LimitError, match=rf"{RECORD}\.LVIO"):
            axis.move_to(150.0, timeout_s=2.0)
        assert handle.ioc.moves == moves, "the record must not start a refused move"
        assert axis.read_position() == pytest.approx(10.0, abs=1e-6)
        assert float(axis._ca.get("val", fresh=True)) == pytest.approx(10.0)
        axis.move_to(20.0)  # a valid set-point clears LVIO
        assert int(axis._ca.get("lvio")) == 0


def test_hardware_limit_switch_is_a_device_fault(ioc):
    handle, _stage = ioc
    axis = build()
    with axis:
        axis.move_to(0.0)
        handle.ioc.hls_position = 40.0
        try:
            with pytest.raises(DeviceFaultError, match=rf"{RECORD}\.HLS"):
                axis.move_to(80.0, timeout_s=2.0)
            assert 40.0 <= axis.read_position() < 80.0
        finally:
            handle.ioc.hls_position = None
        axis.move_to(0.0)
        assert int(axis._ca.get("hls")) == 0


def test_stop_mid_move_ends_the_status_and_resets_val(axis):
    axis.move_to(-90.0)
    axis.set_velocity(200.0)  # 180 deg: about 0.9 s
    status = axis.start_move_to(90.0)
    time.sleep(0.15)
    assert int(axis._ca.get("movn")) == 1 and int(axis._ca.get("dmov")) == 0
    start = time.monotonic()
    axis.stop()
    with pytest.raises(DeviceStateError, match=r"move to 90 deg did not complete: stop\(\) was called"):
        status.wait(1.0)
    assert time.monotonic() - start < 0.3
    here = axis.read_position()
    assert -90.0 < here < 90.0
    assert int(axis._ca.get("dmov")) == 1 and int(axis._ca.get("movn")) == 0
    assert float(axis._ca.get("val", fresh=True)) == pytest.approx(here, abs=1e-6)


def test_dmov_pulses_even_for_a_zero_length_move(axis):
    axis.move_to(5.0)
    seen: list[int] = []
    back_to_1 = threading.Event()

    def on_dmov(value=None, **_):
        seen.append(int(value))
        if seen[-2:] == [0, 1]:
            back_to_1.set()

    pv = axis._ca._pvs["dmov"]
    index = pv.add_callback(on_dmov)
    try:
        start = time.monotonic()
        axis.move_to(5.0)
        took = time.monotonic() - start
        assert back_to_1.wait(1.0), seen
    finally:
        pv.remove_callback(index)
    assert 0.004 < took < 0.3, took  # the pulse's length, not a time-out (the upper bound allows a loaded machine)


def test_ioc_stopped_mid_move_fails_the_status_naming_the_pv():
    record = "CT:DOOMED:m1"
    handle, _ = start_motor_ioc(record, SPARE_PORT, SIM, high_limit=HLM, low_limit=LLM)
    axis = build(record)
    try:
        axis.connect()
        axis.set_velocity(50.0)  # 100 deg: 2 s
        status = axis.start_move_to(100.0)
        time.sleep(0.1)
        handle.stop()
        start = time.monotonic()
        with pytest.raises(CommunicationError) as info:
            status.wait(3.0)
        assert time.monotonic() - start < 1.0
        assert f"{record}." in str(info.value) and "rot" in str(info.value)
    finally:
        handle.stop()
        try:
            axis.close()
        except CommunicationError:
            pass


@pytest.mark.parametrize("low, high", [(10.0, -10.0), (0.0, -5.0)])
def test_inverted_record_limits_refused_at_connect_naming_the_fields(ioc, low, high):
    """The record turns its soft limits off only when both dial limits are 0 (motorRecord.cc); with DLLM >
    DHLM otherwise it refuses every move, so the driver refuses such a record at once."""
    handle, _stage = ioc
    limits(handle, low, high)
    try:
        for use_record_limits in (True, False):
            axis = build(use_record_limits=use_record_limits, low_limit=-50.0, high_limit=50.0)
            with pytest.raises(ConfigurationError) as info:
                axis.connect()
            message = str(info.value)
            assert "refuses every move" in message and "rot" in message, message
            for field, value in (("DLLM", low), ("DHLM", high), ("LLM", low), ("HLM", high)):
                assert f"{RECORD}.{field} = {value:g}" in message, message
            assert not axis.connected
    finally:
        limits(handle, LLM, HLM)


def test_equal_nonzero_record_limits_refused_at_connect(ioc):
    handle, _stage = ioc
    limits(handle, 5.0, 5.0)
    try:
        with pytest.raises(ConfigurationError, match=rf"every move but one to 5 deg .*{RECORD}\.DLLM = 5"):
            build().connect()
    finally:
        limits(handle, LLM, HLM)


def test_both_dial_limits_zero_is_a_record_without_soft_limits(ioc):
    handle, _stage = ioc
    limits(handle, 0.0, 0.0)
    try:
        with build() as axis:
            assert (axis.capabilities.low_limit, axis.capabilities.high_limit) == (None, None)
            moves = handle.ioc.moves
            axis.move_to(400.0, timeout_s=2.0)  # beyond ±360: nothing refuses it
            assert handle.ioc.moves == moves + 1 and int(axis._ca.get("lvio", fresh=True)) == 0
            assert axis.read_position() == pytest.approx(400.0, abs=1e-6)
            axis.move_to(0.0, timeout_s=2.0)
    finally:
        limits(handle, LLM, HLM)


def test_the_simulated_record_refuses_every_set_point_while_its_limits_are_inverted(ioc):
    handle, _stage = ioc
    with build() as axis:
        axis.move_to(10.0)
        moves = handle.ioc.moves
        limits(handle, 1.0, -1.0)  # after connect: the driver's own limits still allow the move
        try:
            for target in (0.0, 20.0):
                with pytest.raises(LimitError, match=rf"{RECORD}\.LVIO = 1"):
                    axis.move_to(target, timeout_s=2.0)
            assert handle.ioc.moves == moves and axis.read_position() == pytest.approx(10.0, abs=1e-6)
        finally:
            limits(handle, LLM, HLM)
        axis.move_to(20.0)  # limits in order again: the move goes, LVIO clears
        assert int(axis._ca.get("lvio", fresh=True)) == 0


def test_the_beamlines_rotation_record_has_no_soft_limits():
    """epics_beamline serves its rotation with HLM = LLM = 0 (both dial limits 0): unbounded, as the
    driver sees it, and the record moves past a turn."""
    beamline = start_beamline("UNB:", SPARE_PORT, panel=SimulatedDetectorOptions(rows=8, columns=8))
    try:
        with build("UNB:" + ROTATION, max_velocity=DEFAULT_ROTATION.max_velocity) as rotation:
            assert (rotation.capabilities.low_limit, rotation.capabilities.high_limit) == (None, None)
            assert [float(rotation._ca.get(key, fresh=True)) for key in ("dllm", "dhlm")] == [0.0, 0.0]
            rotation.move_to(370.0, timeout_s=3.0)
            assert int(rotation._ca.get("lvio", fresh=True)) == 0
            assert beamline.rotation.true_position() == pytest.approx(370.0, abs=1e-6)
    finally:
        beamline.stop()
