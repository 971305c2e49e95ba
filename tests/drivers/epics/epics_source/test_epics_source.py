"""EpicsSource over real Channel Access (pyepics) to the caproto IOC driving a SimulatedSource:
the source contract and its fault contract (a silent IOC, an arc, the interlock, the beam really off),
interlock, overload, warm-up, a missing PV, and the IOC going away."""

from __future__ import annotations

import os
import time

import pytest

from microct.devices.base import DriverContext
from microct.devices.source import SourceState
from microct.drivers.epics_source.driver import EpicsSource, EpicsSourceOptions
from microct.errors import CommunicationError, DeviceStateError, DeviceTimeoutError, InterlockError
from microct.simulators.epics_ioc import start_ioc
from microct.simulators.faults import FaultSchedule
from microct.simulators.source import SimulatedSourceOptions
from microct.testing.contracts import SourceContract, SourceFaultContract
from microct.testing.waiting import wait_until

# the IOC ports that conftest.py put into the CA address list before pyepics started
MAIN_PORT, SPARE_PORT = (int(dict(item.split("=") for item in os.environ["MICROCT_TEST_IOC_PORTS"].split())[role])
                         for role in ("source", "source_spare"))

PREFIX = "CT:XRAY:"
SIM = SimulatedSourceOptions(warmed_up=True, warmup_s=0.3, ramp_kv_per_s=1e5, ramp_ua_per_s=1e5)
OPTIONS = {"voltage_range_kv": SIM.voltage_range_kv, "current_range_ua": SIM.current_range_ua,
           "spot_modes": {name: mode.model_dump() for name, mode in SIM.spot_modes.items()},
           "connect_timeout_s": 1.0, "put_timeout_s": 2.0}


def build(prefix: str = PREFIX, **changes) -> EpicsSource:
    return EpicsSource.from_config("tube", EpicsSourceOptions(**{**OPTIONS, **changes}), prefix, DriverContext())


def wait_for(source: EpicsSource, state: SourceState, timeout_s: float = 2.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (now := source.read_state()) is not state:
        assert time.monotonic() < deadline, f"state {now.value!r}, not {state.value!r}, after {timeout_s} s"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def ioc():
    handle, tube = start_ioc(PREFIX, MAIN_PORT, SIM)
    yield handle, tube
    handle.stop()


@pytest.fixture
def tube(ioc):
    tube = ioc[1]
    yield tube
    tube.set_interlock(True)
    tube.beam_off()
    tube._fault = False
    tube._warmed_up = True


class TestContract(SourceContract, SourceFaultContract):
    poll_interval_s = 0.02
    settle_timeout_s = 3.0

    @pytest.fixture
    def hook(self, ioc):
        hook = ioc[0].ioc.fault_hook()
        yield hook
        hook.mute(False)

    @pytest.fixture
    def new_device(self, ioc):
        return build

    @pytest.fixture
    def source(self, new_device, tube):
        source = new_device()
        source.connect()
        source.beam_off()
        yield source
        source.close()


@pytest.fixture
def source(tube):
    source = build()
    source.connect()
    source.beam_off()
    yield source
    source.close()


def test_interlock_open_is_not_ready_and_refuses_beam(source, tube):
    source.configure(voltage_kv=50, current_ua=50, spot_mode="middle")
    source.beam_on()
    tube.set_interlock(False)
    wait_for(source, SourceState.NOT_READY)
    assert not source.read_interlock_closed()
    assert source.read_voltage_kv() < 1.0
    with pytest.raises(InterlockError, match="tube"):
        source.beam_on()
    tube.set_interlock(True)
    wait_for(source, SourceState.STANDBY)
    source.beam_on()
    assert source.read_state() is SourceState.BEAM_ON


def test_overload_is_fault_until_reset(source, tube):
    source.configure(voltage_kv=50, current_ua=50, spot_mode="middle")
    source.beam_on()
    tube.trigger_overload()
    wait_for(source, SourceState.FAULT)
    # read fresh, the state can come before the fault text's monitor update
    wait_until(lambda: "overload" in source.describe().get("fault", ""), 1.0, "the overload in describe()")
    with pytest.raises(DeviceStateError):
        source.beam_on()
    source.reset()
    assert source.read_state() is SourceState.STANDBY
    source.beam_on()
    assert source.read_state() is SourceState.BEAM_ON


def test_warm_up_returns_at_once_and_reports_warming_up(source, tube):
    tube._warmed_up = False
    wait_for(source, SourceState.WARMUP_NEEDED)
    start = time.monotonic()
    source.warm_up()
    assert time.monotonic() - start < SIM.warmup_s
    assert source.read_state() is SourceState.WARMING_UP
    wait_for(source, SourceState.STANDBY)


def test_missing_pv_named_at_connect(ioc):
    source = build(pvs={"power": "NoSuchPower_RBV", "fault": "NoSuchFault_RBV"})
    start = time.monotonic()
    with pytest.raises(CommunicationError) as info:
        source.connect()
    assert time.monotonic() - start < 3
    assert f"{PREFIX}NoSuchPower_RBV" in str(info.value) and f"{PREFIX}NoSuchFault_RBV" in str(info.value)
    assert f"{PREFIX}HV_RBV" not in str(info.value)
    assert not source.connected


def test_ioc_stopped_mid_session_names_the_pv():
    handle, _ = start_ioc("CT:DOOMED:", SPARE_PORT, SIM)
    source = build("CT:DOOMED:")
    try:
        source.connect()
        assert source.read_state() is SourceState.STANDBY
        handle.stop()
        deadline = time.monotonic() + 3
        with pytest.raises(CommunicationError) as info:
            while time.monotonic() < deadline:  # the client notices the closed circuit within ms
                source.read_state()
                time.sleep(0.01)
        assert "CT:DOOMED:State_RBV" in str(info.value)
        with pytest.raises(CommunicationError, match="CT:DOOMED:HV"):
            source.set_voltage_kv(40)
        with pytest.raises(CommunicationError, match="CT:DOOMED:XrayOn"):
            source.close()  # beam off cannot be confirmed over a dead link: said so, and released anyway
        assert not source.connected
    finally:
        handle.stop()
        try:
            source.close()
        except CommunicationError:
            pass


def test_a_read_whose_circuit_drops_under_it_is_a_communication_error(source, monkeypatch):
    """A circuit that drops between the driver's ``connected`` check and the read: libca's
    ``ca_array_get_callback`` returns ECA_DISCONN and pyepics raises CASeverityException ("get returned
    'Virtual circuit disconnect'"). Seen in the fault matrix when the tube's link drops: an Exception that
    is no MicroCTError is no transient error to the recovery policy, so the scan aborted at once, with the
    link still down, and could not switch the beam off."""
    import epics.ca

    def circuit_dropped(*args, **kwargs):
        raise epics.ca.CASeverityException("get", "Virtual circuit disconnect")

    monkeypatch.setattr(epics.ca, "get_with_metadata", circuit_dropped)
    with pytest.raises(CommunicationError, match=f"{PREFIX}State_RBV"):
        source.read_state()


def test_a_read_the_ioc_answers_late_is_a_timeout_naming_the_pv_and_the_next_read_is_answered():
    schedule = FaultSchedule([{"kind": "reply_timeout", "device": "source", "at_s": 0.0}])
    handle, _ = start_ioc("LATE:XRAY:", SPARE_PORT, SIM, faults=schedule, reply_late_s=0.6)
    try:
        with build("LATE:XRAY:", connect_timeout_s=0.3) as source:
            with pytest.raises(DeviceTimeoutError, match=r"reading PV LATE:XRAY:State_RBV: no reply within 0.3 s"):
                source.read_state()
            time.sleep(0.4)  # the late answer has come (and gone)
            assert source.read_state() is SourceState.STANDBY
    finally:
        handle.stop()
    assert [hit.what for hit in schedule.hits] == ["read of LATE:XRAY:State_RBV"]
