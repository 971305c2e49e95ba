"""ZaberAxis talking to the wire-level ZaberResponder (a two-device daisy chain) over a pty and over TCP:
the axis contract and the axis fault contract for each stage over each link, the daisy chain, flags and
rejections, wire faults and `microct sim serve zaber`.

Stages run at fast speeds (overrides given to both simulator and driver) so that moves take milliseconds;
the fault contract's slow moves last ``slow_move_s`` = 1 s (at 576 deg/s or 81 mm/s, well within those
speeds), long enough to strike them mid-way on a loaded machine and short enough that its stall test
(which waits twice that for a move that never ends) costs 2 s per class.
"""

from __future__ import annotations

import threading
from typing import ClassVar

import pytest

from microct.devices.base import Status
from microct.drivers.zaber.codec import parse_reply, parse_warnings
from microct.drivers.zaber.driver import ZaberAxis, ZaberOptions
from microct.errors import (
    CommunicationError,
    DeviceFaultError,
    DeviceStateError,
    DeviceTimeoutError,
    LimitError,
    ProtocolError,
)
from microct.simulators.wire import WireServer
from microct.simulators.zaber import ZaberResponder
from microct.testing.contracts import AxisContract, AxisFaultContract
from microct.testing.rigs import served, sim_serve, sim_served
from microct.testing.waiting import wait_until
from microct.transport import SerialTransport

FAST = {1: {"max_speed": 36000.0}, 2: {"max_speed": 5000.0}}
"""Stage overrides by device address: 720 deg of rotation or 100 mm of travel in about 20 ms."""
STAGE = {1: "X-RSW60A", 2: "X-LSM100A"}


def zaber_axis(url: str, device: int, name: str = "", overrides=None, reply_timeout_s: float = 0.3,
               **options) -> ZaberAxis:
    """A ZaberAxis for ``device`` of the chain, with short time-outs and polls."""
    overrides = FAST[device] if overrides is None else overrides
    options = ZaberOptions(device=device, stage=STAGE[device], overrides=overrides, poll_interval_s=0.002,
                           serial={"timeout_s": reply_timeout_s}, **options)
    return ZaberAxis(name or f"zaber-{device}", options, connection=url)


@pytest.fixture
def server():
    with WireServer(ZaberResponder(overrides=FAST), "zaber") as server:
        yield server


# -- the axis contract and the axis fault contract, each stage over each link ------------------------------
class _Contracts(AxisContract, AxisFaultContract):
    """The chain served on ``link``; ``device`` is the address of the stage under test. The hook: the
    server's silence and the device's SimulatedAxis (stall, limit switch, refusal: the device is parked)."""

    link: ClassVar[str]
    device: ClassVar[int]
    home_position = 0.0
    slow_move_s = 1.0
    move_timeout_s = 10.0  # the longest move here takes about 1 s: 9 s of room; a hung Status fails in 10 s
    reply_timeout_s = 1.0  # room for a loaded machine: the contracts' silent-controller tests wait this long

    @pytest.fixture
    def served_link(self):
        with served(ZaberResponder(overrides=FAST), self.link, name="zaber") as link:
            yield link

    @pytest.fixture
    def hook(self, served_link):
        return served_link.server.responder.axes[self.device].fault_hook(mute=served_link.mute)


class _Rotary(_Contracts):
    device = 1

    @pytest.fixture
    def new_device(self, served_link):
        return lambda: zaber_axis(served_link.address, 1, "rotation", reply_timeout_s=self.reply_timeout_s)


class _Linear(_Contracts):
    """With checksums on every command and reply."""

    device = 2
    position_tolerance = 0.001

    @pytest.fixture
    def new_device(self, served_link):
        return lambda: zaber_axis(served_link.address, 2, "sample_out", checksums=True,
                                  reply_timeout_s=self.reply_timeout_s)


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


def test_a_parked_device_rejects_every_movement_command_and_nothing_moves(server):
    """Refusing moves plays a parked device: "RJ ... PARKED" (manual, "Reply Flag") to move abs, move rel and
    home alike; stop, status and reads still answer."""
    url = server.serve_serial("tcp")
    stage = server.responder.axes[1]
    with zaber_axis(url, 1, "rotation") as axis:
        axis.move_to(10.0, timeout_s=2.0)
        stage.refuse_moves = True
        for name, call in [("move abs 85333", lambda: axis.start_move_to(20.0)),
                           ("move rel 42667", lambda: axis.start_move_by(10.0)),
                           ("home", axis.home)]:
            with pytest.raises(DeviceStateError, match=f"rejected '/1 1 {name}': PARKED \\(device is parked\\)"):
                call()
        axis.stop()
        assert axis.read_position() == pytest.approx(10.0, abs=0.001) == stage.true_position()
        stage.refuse_moves = False
        axis.move_to(20.0, timeout_s=2.0)
        assert stage.true_position() == pytest.approx(20.0, abs=0.001)


def slow_move_struck_by(kind: str, server, axis: ZaberAxis) -> Status:
    """Start a 2 s move of ``axis`` (device 1), strike it with ``kind`` once under way; the move's Status."""
    stage = server.responder.axes[1]
    axis.set_velocity(180.0)
    status = axis.start_move_to(360.0)
    wait_until(lambda: stage.true_position() > 1.0, what="the stage leaving its start")
    stage.strike(kind)
    return status


def raw_line(url: str, request: bytes) -> bytes:
    """One request through a transport of its own (no driver), and its reply line."""
    transport = SerialTransport(url, ZaberOptions(serial={"timeout_s": 1.0}).serial_settings(), "raw")
    transport.open()
    try:
        return transport.query(request)[0]
    finally:
        transport.close()


def test_a_limit_switch_sets_wl_until_warnings_clear_and_the_driver_clears_it_after_reporting_it(server):
    url = server.serve_serial("tcp")
    with zaber_axis(url, 1, "rotation") as axis:
        axis.home(timeout_s=2.0)  # WR gone: WL is the only flag left
        status = slow_move_struck_by("limit_switch", server, axis)
        fault = r"move to 360 deg failed: .*reports WL \(unexpected limit trigger\)$"
        with pytest.raises(DeviceFaultError, match=fault):
            status.wait(5.0)
        assert raw_line(url, b"/1 1 warnings") == b"@01 1 OK IDLE -- 00"  # the driver cleared it at once
        axis.move_to(0.0, timeout_s=10.0)  # and the next move works (2 s at most)
    device = server.responder.devices[1]
    device.latched.add("WL")  # set again, as a device left with the flag by another client
    assert parse_reply(raw_line(url, b"/1 1 move abs 4267")).warning == "WL"  # 1 deg
    wait_until(lambda: not parse_reply(raw_line(url, b"/1 1")).busy, timeout_s=10.0, what="the move ending")
    assert raw_line(url, b"/1 1") == b"@01 1 OK IDLE WL 0"  # a movement command does not clear it
    assert raw_line(url, b"/1 1 warnings") == b"@01 1 OK IDLE WL 01 WL"
    assert raw_line(url, b"/1 1 warnings clear") == b"@01 1 OK IDLE -- 01 WL"  # answers what it cleared
    assert raw_line(url, b"/1 1 warnings") == b"@01 1 OK IDLE -- 00"


def test_without_the_clear_a_limit_switch_would_fail_every_later_move(server):
    """What the driver's ``warnings clear`` prevents: the flag persists, so the next move fails too."""
    url = server.serve_serial("tcp")
    with zaber_axis(url, 1, "rotation") as axis:
        axis._clear_warnings = lambda: ""  # the driver as it was
        status = slow_move_struck_by("limit_switch", server, axis)
        with pytest.raises(DeviceFaultError):
            status.wait(5.0)
        with pytest.raises(DeviceFaultError, match=r"move to 0 deg failed: .*reports WL"):
            axis.move_to(0.0, timeout_s=10.0)
        assert parse_warnings(parse_reply(raw_line(url, b"/1 1 warnings")).data) == ["WL", "WR"]


def test_a_stall_keeps_the_device_busy_until_stop(server):
    url = server.serve_serial("tcp")
    with zaber_axis(url, 1, "rotation") as axis:
        status = slow_move_struck_by("stage_stall", server, axis)
        here = server.responder.axes[1].true_position()
        assert raw_line(url, b"/1 1") == b"@01 1 OK BUSY WR 0"
        assert not status.done and server.responder.axes[1].true_position() == here
        axis.stop()
        assert raw_line(url, b"/1 1") == b"@01 1 OK IDLE WR 0"  # stopped; no fault flag
        with pytest.raises(DeviceStateError, match="did not complete: stop"):
            status.wait(1.0)


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
