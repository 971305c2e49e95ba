"""Homing a motor record over Channel Access: ``read_referenced`` is MSTA bit 14 (HOMED), which the
simulated IOC clears at its start and while a homing runs and sets when a homing ends well; a controller
that never sets it (``reports_homed = false``) cannot tell; ``microct home`` on sim-epics.toml homes both
records (HOMF) and nothing else connects."""

from __future__ import annotations

import os
import threading
from importlib.resources import files

import pytest

from microct.cli import main
from microct.devices.base import DriverContext
from microct.drivers.epics_motor.codec import Msta
from microct.drivers.epics_motor.driver import EpicsMotorAxis, EpicsMotorOptions
from microct.errors import DeviceStateError
from microct.simulators.axis import SimulatedAxisOptions
from microct.simulators.epics_motor_ioc import start_motor_iocs
from microct.testing.waiting import wait_until

# the spare motor port that conftest.py put into the CA address list (a module of its own at a time)
PORT = int(dict(item.split("=") for item in os.environ["MICROCT_TEST_IOC_PORTS"].split())["motor_spare"])
ROTATION, SAMPLE_OUT = "HOME:ROT:m1", "HOME:SMP:m2"
SIM = SimulatedAxisOptions(unit="deg", max_velocity=2000.0, acceleration=1e5, initial_position=30.0)


@pytest.fixture(scope="module")
def iocs():
    handle, records = start_motor_iocs([ROTATION, SAMPLE_OUT], PORT, SIM)
    yield records
    handle.stop()


def axis_on(record: str, **options) -> EpicsMotorAxis:
    settings = {"unit": "deg", "max_velocity": 2000.0, "connect_timeout_s": 1.0, "put_timeout_s": 2.0,
                "move_timeout_s": 5.0, **options}
    return EpicsMotorAxis.from_config("rot", EpicsMotorOptions(**settings), record, DriverContext())


def test_homed_is_msta_bit_14_clear_at_power_up_and_set_by_a_homing(iocs):
    with axis_on(ROTATION) as axis:
        assert axis.read_referenced() is False
        assert not int(axis.describe()["msta"]) & Msta.HOMED
        axis.home(timeout_s=5.0)
        assert axis.read_referenced() is True
        assert axis.read_position() == pytest.approx(SIM.home_position)


def test_a_homing_stopped_half_way_leaves_no_reference(iocs):
    record = iocs[ROTATION]
    with axis_on(ROTATION) as axis:
        axis.home(timeout_s=5.0)
        axis.move_to(300.0, timeout_s=5.0)
        axis.set_velocity(100.0)  # a homing of 3 s
        failures: list[BaseException] = []
        homing = threading.Thread(target=lambda: _catch(axis.home, failures))
        homing.start()
        wait_until(lambda: abs(record.axis.true_position() - 300.0) > 1.0, 5.0, "the homing under way")
        assert axis.read_referenced() is False  # cleared as the homing started
        axis.stop()
        homing.join(5.0)
        assert len(failures) == 1 and isinstance(failures[0], DeviceStateError), failures
        assert axis.read_referenced() is False


def _catch(call, failures: list[BaseException]) -> None:
    try:
        call(5.0)
    except BaseException as error:  # reported by the test's thread
        failures.append(error)


def test_a_controller_that_never_sets_homed_cannot_tell(iocs):
    with axis_on(SAMPLE_OUT, unit="mm", reports_homed=False) as axis:
        assert axis.read_referenced() is None


def test_microct_home_homes_both_records_of_sim_epics(iocs, tmp_path, capsys):
    text = files("microct.configs").joinpath("sim-epics.toml").read_text()
    path = tmp_path / "epics.toml"
    path.write_text(text.replace('"CT:ROT:m1"', f'"{ROTATION}"').replace('"CT:SMP:m2"', f'"{SAMPLE_OUT}"'))
    moves = {record: ioc.moves for record, ioc in iocs.items()}
    assert main(["home", str(path)]) == 0  # the tube and the detector records do not exist: never connected
    assert {record: ioc.moves - moves[record] for record, ioc in iocs.items()} == {ROTATION: 1, SAMPLE_OUT: 1}
    assert all(ioc._homed for ioc in iocs.values())
    rows = [line for line in capsys.readouterr().out.splitlines() if "epics-motor" in line]
    assert len(rows) == 2 and all("yes" in row for row in rows), rows
