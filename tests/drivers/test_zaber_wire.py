"""ZaberAxis talking to the wire-level ZaberResponder (a two-device daisy chain) over a pty and over TCP.

Stages run at fast speeds (overrides given to both simulator and driver) so that moves take milliseconds.
"""

from __future__ import annotations

import threading
from typing import ClassVar

import pytest

from scan_helpers import sim_serve, sim_served
from microct.drivers.zaber import ZaberAxis, ZaberOptions
from microct.errors import CommunicationError, DeviceTimeoutError, LimitError, ProtocolError
from microct.simulators.wire import WireServer
from microct.simulators.zaber import ZaberResponder
from microct.testing.contracts import AxisContract

FAST = {1: {"max_speed": 36000.0}, 2: {"max_speed": 5000.0}}
"""Stage overrides by device address: 720 deg of rotation or 100 mm of travel in about 20 ms."""
STAGE = {1: "X-RSW60A", 2: "X-LSM100A"}


def zaber_axis(url: str, device: int, name: str = "", overrides=None, **options) -> ZaberAxis:
    """A ZaberAxis for ``device`` of the chain, with short time-outs and polls."""
    overrides = FAST[device] if overrides is None else overrides
    options = ZaberOptions(device=device, stage=STAGE[device], overrides=overrides, poll_interval_s=0.002,
                           serial={"timeout_s": 0.3}, **options)
    return ZaberAxis(name or f"zaber-{device}", options, connection=url)


@pytest.fixture
def server():
    with WireServer(ZaberResponder(overrides=FAST), "zaber") as server:
        yield server


# -- the axis contract, each stage over each link --------------------------------------------------------
class _Rotary(AxisContract):
    link: ClassVar[str]
    home_position = 0.0

    @pytest.fixture
    def new_device(self, server):
        url = server.serve_serial(self.link)
        return lambda: zaber_axis(url, 1, "rotation")


class _Linear(AxisContract):
    """With checksums on every command and reply."""

    link: ClassVar[str]
    home_position = 0.0
    position_tolerance = 0.001

    @pytest.fixture
    def new_device(self, server):
        url = server.serve_serial(self.link)
        return lambda: zaber_axis(url, 2, "sample_out", checksums=True)


class TestRotaryOverPty(_Rotary):
    link = "pty"


class TestRotaryOverTcp(_Rotary):
    link = "tcp"


class TestLinearOverPty(_Linear):
    link = "pty"


class TestLinearOverTcp(_Linear):
    link = "tcp"


# -- the daisy chain -------------------------------------------------------------------------------------
def test_two_axes_on_one_connection_work_from_two_threads(server):
    url = server.serve_serial("tcp")
    rotation, sample_out = zaber_axis(url, 1, "rotation"), zaber_axis(url, 2, "sample_out")
    errors: list[BaseException] = []

    def run(axis: ZaberAxis, targets: list[float], tolerance: float) -> None:
        try:
            for target in targets:
                axis.move_to(target, timeout_s=5.0)
                assert abs(axis.read_position() - target) <= tolerance, (axis.name, target, axis.read_position())
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    with rotation, sample_out:
        assert rotation._transport._port is sample_out._transport._port  # one port, one lock
        threads = [threading.Thread(target=run, args=(rotation, [10.0 * i for i in range(-20, 21)], 0.001)),
                   threading.Thread(target=run, args=(sample_out, [2.5 * i for i in range(40)], 0.0001))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    assert server.responder.axes[1].read_position() == pytest.approx(200.0, abs=0.001)
    assert server.responder.axes[2].read_position() == pytest.approx(97.5, abs=0.0001)


def test_the_simulator_reports_no_reference_until_homed_and_refuses_out_of_range_data(server):
    url = server.serve_serial("tcp")
    wide = zaber_axis(url, 1, "rotation", overrides={**FAST[1], "low_limit": -720.0, "high_limit": 720.0})
    with wide:
        assert wide.describe()["warning"] == "WR"
        wide.home(timeout_s=2.0)
        assert wide.describe()["warning"] == "--"
        with pytest.raises(LimitError, match=r"rejected '/1 1 move abs 2133333': BADDATA.*-720 to 720 deg"):
            wide.start_move_to(500.0)  # within this driver's limits, beyond the device's (±360 deg)


# -- faults ----------------------------------------------------------------------------------------------
def test_no_reply_is_a_timeout_naming_device_and_command(server):
    absent = ZaberAxis("ghost", ZaberOptions(device=3, serial={"timeout_s": 0.2}),
                       connection=server.serve_serial("tcp"))
    with pytest.raises(DeviceTimeoutError, match=r"axis 'ghost': Zaber device 3 axis 1: .*'/3 0 get system.serial'"):
        absent.connect()
    assert not absent.connected


class Garbling:
    """The Zaber chain, but every reply to ``get pos`` arrives garbled."""

    request_terminators = b"\r\n"

    def __init__(self) -> None:
        self.chain = ZaberResponder(overrides=FAST)

    def respond(self, line: bytes) -> list[bytes]:
        replies = self.chain.respond(line)
        return [b"@01 1 OK ID\x00LE\r\n"] if line.endswith(b"get pos") else replies


def test_a_garbled_reply_is_a_protocol_error_naming_device_and_command():
    with WireServer(Garbling()) as server:
        with zaber_axis(server.serve_serial("tcp"), 1, "rotation") as axis:
            with pytest.raises(ProtocolError, match=r"Zaber device 1 axis 1: garbled reply .*'/1 1 get pos'"):
                axis.read_position()
            axis.move_to(90.0, timeout_s=2.0)  # the link still works


def test_the_server_stopping_mid_move_fails_the_move_naming_the_device():
    server = WireServer(ZaberResponder(overrides={1: {"max_speed": 100.0}}))
    axis = zaber_axis(server.serve_serial("tcp"), 1, "rotation", overrides={"max_speed": 100.0})
    axis.connect()
    status = axis.start_move_to(300.0)  # 3 s at 100 deg/s
    server.stop()
    with pytest.raises((CommunicationError, DeviceTimeoutError),
                       match=r"move to 300 deg failed: axis 'rotation': Zaber device 1 axis 1"):
        status.wait(5.0)
    with pytest.raises((CommunicationError, DeviceTimeoutError), match="'/1 1 stop'"):
        axis.close()  # stopping first fails: the link is gone
    assert not axis.connected


# -- the command line ------------------------------------------------------------------------------------
def test_sim_serve_prints_a_tcp_url_that_a_driver_can_use():
    with sim_serve("zaber") as port:
        with ZaberAxis("rotation", ZaberOptions(), connection=f"socket://127.0.0.1:{port}") as axis:
            assert axis.read_position() == 0.0


def test_sim_serve_on_a_pty_prints_the_device_path():
    with sim_served("zaber", extra=("--pty",)) as path:
        assert path.startswith("/dev/pts/")
        with ZaberAxis("sample_out", ZaberOptions(device=2, stage="X-LSM100A"), connection=path) as axis:
            assert axis.describe()["serial_number"] == "10002"
