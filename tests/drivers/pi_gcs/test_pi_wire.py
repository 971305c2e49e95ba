"""PIAxis talking to the wire-level PIResponder (a two-axis controller) over real pyvisa-py TCPIP SOCKET
sessions: the axis contract and the axis fault contract for each stage, referencing, soft limits, error
codes, single-byte commands, wire faults and `microct sim serve pi`.

Stages run at fast speeds (overrides given to both simulator and driver) so that moves take milliseconds;
the fault contract's slow moves last ``slow_move_s`` = 1 s (at 576 deg/s or 82 mm/s, well within those
speeds), long enough to strike them mid-way on a loaded machine and short enough that its stall test
(which waits twice that for a move that never ends) costs 2 s per class. (The tests of other VISA
resources, tests/drivers/test_visa_resources.py, run PI over GPIB and VXI-11 only, on pyvisa-sim, which
has no fault hook; no test runs PI over ASRL.)
"""

from __future__ import annotations

import socket
import threading
import time
from typing import ClassVar

import pytest

from microct.drivers.pi_gcs.codec import is_last_line, parse_axis_values
from microct.drivers.pi_gcs.driver import PIAxis, PIOptions
from microct.errors import CommunicationError, DeviceStateError, DeviceTimeoutError, LimitError, ProtocolError
from microct.simulators.pi_gcs import PIResponder
from microct.simulators.wire import WireServer
from microct.testing.contracts import AxisContract, AxisFaultContract
from microct.testing.rigs import served, sim_serve
from microct.testing.waiting import wait_until
from microct.transport import VisaSettings, VisaTransport

FAST = {"1": {"max_velocity": 36000.0}, "2": {"max_velocity": 5000.0}}
"""Stage overrides by axis: 720 deg of rotation or 100 mm of travel in about 20 ms."""
STAGE = {"1": "U-651", "2": "L-509.40"}


def pi_axis(resource: str, axis: str, name: str = "", overrides=None, reply_timeout_s: float = 0.3,
            **options) -> PIAxis:
    """A PIAxis for ``axis`` of the controller, with short time-outs and polls."""
    overrides = FAST[axis] if overrides is None else overrides
    options = PIOptions(axis=axis, stage=STAGE.get(axis, "U-651"), overrides=overrides, poll_interval_s=0.002,
                        visa={"timeout_s": reply_timeout_s}, **options)
    return PIAxis(name or f"pi-{axis}", options, connection=resource)


def resource(server: WireServer) -> str:
    return f"TCPIP::127.0.0.1::{server.serve_tcp()}::SOCKET"


@pytest.fixture
def server():
    with WireServer(PIResponder(overrides=FAST), "pi") as server:
        yield server


# -- the axis contract and the axis fault contract, for each stage -----------------------------------------
class _Contracts(AxisContract, AxisFaultContract):
    """The controller served as a VISA TCPIP SOCKET resource; ``axis_id`` is the axis under test. The hook:
    the server's silence and the axis' SimulatedAxis (stall, limit switch, refusal: the servo is off)."""

    axis_id: ClassVar[str]
    home_position = 0.0
    slow_move_s = 1.0

    @pytest.fixture
    def served_link(self):
        with served(PIResponder(overrides=FAST), "visa", name="pi") as link:
            yield link

    @pytest.fixture
    def hook(self, served_link):
        return served_link.server.responder.axes[self.axis_id].fault_hook(mute=served_link.mute)

    @pytest.fixture
    def axis(self, new_device):
        axis = new_device()
        self.connect(axis)
        axis.home(timeout_s=self.move_timeout_s)  # connect moves nothing: the axis is referenced (FRF) first
        yield axis
        axis.close()


class TestRotary(_Contracts):
    axis_id = "1"

    @pytest.fixture
    def new_device(self, served_link):
        return lambda: pi_axis(served_link.address, "1", "rotation", reply_timeout_s=1.0)


class TestLinear(_Contracts):
    axis_id = "2"
    position_tolerance = 0.001

    @pytest.fixture
    def new_device(self, served_link):
        return lambda: pi_axis(served_link.address, "2", "sample_out", reply_timeout_s=1.0)


class TestRotaryOverAsrl(_Contracts):
    """The controller's RS-232 port: an ASRL resource through pyvisa-py on a pseudo-terminal (the same GCS
    commands and replies, LF terminated; docs/protocols/pi-gcs.md, "Transport")."""

    axis_id = "1"

    @pytest.fixture
    def served_link(self):
        with served(PIResponder(overrides=FAST), "pty", name="pi") as link:
            link.address = f"ASRL{link.address}::INSTR"
            yield link

    @pytest.fixture
    def new_device(self, served_link):
        return lambda: pi_axis(served_link.address, "1", "rotation", reply_timeout_s=1.0)


# -- one controller, two axes ----------------------------------------------------------------------------
def test_two_axes_on_one_resource_work_from_two_threads(server):
    where = resource(server)
    rotation, sample_out = pi_axis(where, "1", "rotation"), pi_axis(where, "2", "sample_out")
    errors: list[BaseException] = []

    def run(axis: PIAxis, targets: list[float], tolerance: float) -> None:
        try:
            for target in targets:
                axis.move_to(target, timeout_s=5.0)
                assert abs(axis.read_position() - target) <= tolerance, (axis.name, target, axis.read_position())
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    with rotation, sample_out:
        assert rotation._transport._session is sample_out._transport._session  # one session, one lock
        rotation.home(timeout_s=2.0)
        sample_out.home(timeout_s=2.0)
        threads = [threading.Thread(target=run, args=(rotation, [10.0 * i for i in range(-20, 21)], 1e-6)),
                   threading.Thread(target=run, args=(sample_out, [2.5 * i for i in range(40)], 1e-6))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    assert server.responder.axes["1"].read_position() == pytest.approx(200.0)
    assert server.responder.axes["2"].read_position() == pytest.approx(97.5)


def test_a_multi_axis_query_answers_one_line_per_axis(server):
    transport = VisaTransport(resource(server), VisaSettings(timeout_s=0.3), "pi")
    transport.open()
    try:
        lines = transport.query_until(b"TMX?", is_last_line)
    finally:
        transport.close()
    assert lines == [b"1=360.0 ", b"2=102.0"]
    assert parse_axis_values(lines) == {"1": "360.0", "2": "102.0"}


# -- referencing and soft limits -------------------------------------------------------------------------
def test_an_unreferenced_axis_refuses_moves_until_home(server):
    with pi_axis(resource(server), "1", "rotation") as axis:
        assert axis.describe()["referenced"] is False
        with pytest.raises(DeviceStateError, match=r"PI axis 1 is not referenced \(FRF\? 1 = 0\): home it"):
            axis.start_move_to(10.0)
        assert server.responder.axes["1"].read_position() == 0.0
        axis.home(timeout_s=2.0)
        assert axis.describe()["referenced"] is True
        axis.move_to(10.0, timeout_s=2.0)
        assert axis.read_position() == pytest.approx(10.0)


def test_connect_moves_nothing_and_the_controller_keeps_a_reference_across_connects(server):
    where = resource(server)
    state = server.responder.controller_axes["1"]
    with pi_axis(where, "1", "rotation") as axis:
        assert not state.referenced and not state.referencing  # no FRF at connect
        assert axis.read_referenced() is False
        axis.home(timeout_s=2.0)
        assert state.referenced and axis.read_referenced() is True
        axis.move_to(45.0, timeout_s=2.0)
    with pi_axis(where, "1", "rotation") as axis:  # still referenced: it moves, from 45
        assert axis.read_referenced() is True
        assert axis.read_position() == pytest.approx(45.0)


def test_the_controller_soft_limits_narrow_the_configured_ones_and_it_refuses_beyond_them(server):
    state = server.responder.controller_axes["1"]
    state.low_limit, state.high_limit = -90.0, 180.0
    with pi_axis(resource(server), "1", "rotation") as axis:
        axis.home(timeout_s=2.0)
        caps = axis.capabilities
        assert (caps.low_limit, caps.high_limit) == (-90.0, 180.0)
        with pytest.raises(LimitError, match="position=200 deg is outside the soft limits -90 to 180 deg"):
            axis.start_move_to(200.0)
        state.high_limit = 90.0  # the controller changes its limits after connect
        with pytest.raises(LimitError) as info:
            axis.start_move_to(120.0)
        message = str(info.value)
        for part in ("axis 'rotation'", "PI axis 1 reports error 7 (position out of limits)", "'MOV 1 120.0'",
                     "position 120 deg", "-90 to 180 deg"):
            assert part in message, message
        axis.move_to(80.0, timeout_s=2.0)  # the error register was read and cleared: the next move works


def test_the_controller_refuses_a_velocity_beyond_its_stage(server):
    axis = pi_axis(resource(server), "1", "rotation", overrides={"max_velocity": 72000.0})
    axis.connect()  # connect sends no set-point: the velocity goes out before the first motion
    try:
        with pytest.raises(LimitError, match=r"PI axis 1 reports error 17 \(parameter out of range\) after "
                                             r"'VEL 1 72000.0'; velocity 72000 deg/s; the stage model allows "
                                             r"\(0, 72000\] deg/s"):
            axis.home(timeout_s=5.0)  # the top speed of the driver's stage model, twice the simulator's
    finally:
        axis.close()


def test_an_unknown_axis_is_refused_at_connect(server):
    axis = pi_axis(resource(server), "9", "ghost", overrides={})
    with pytest.raises(ProtocolError, match=r"PI axis 9 reports error 15 \(invalid axis identifier\) after "
                                            r"'TMN\? 9' \(no reply\)"):
        axis.connect()
    assert not axis.connected


# -- the simulator, byte by byte ------------------------------------------------------------------------
class Raw:
    """A plain TCP client of the simulator: ``ask`` sends bytes and returns what comes back, up to the end
    of a reply (a line ending in LF without a space before it)."""

    def __init__(self, port: int) -> None:
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=1.0)

    def send(self, data: bytes) -> None:
        self.socket.sendall(data)

    def ask(self, data: bytes) -> bytes:
        self.send(data)
        reply = b""
        while not (reply.endswith(b"\n") and not reply.endswith(b" \n")):
            reply += self.socket.recv(64)
        return reply

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def raw(server):
    client = Raw(server.serve_tcp())
    yield client
    client.close()


def test_the_simulator_refuses_what_the_sheet_says_and_reports_it_once(raw):
    assert raw.ask(b"MOV 1 10\nERR?\n") == b"5\n"  # servo off
    assert raw.ask(b"SVO 1 1\nMOV 1 10\nERR?\n") == b"5\n"  # not referenced
    assert raw.ask(b"ERR?\n") == b"0\n"  # reading cleared it
    assert raw.ask(b"FRF 1\nERR?\n") == b"0\n"
    assert raw.ask(b"FRF? 1\n") == b"1=1\n"
    for command, code in [(b"XYZ 1", b"2"), (b"MOV 1", b"1"), (b"MOV 1 ten", b"1"), (b"MOV 3 1", b"15"),
                          (b"MOV 1 400", b"7"), (b"VEL 1 0", b"17"), (b"VEL 1 40000", b"17"), (b"STP 1", b"1"),
                          (b"SVO 1 2", b"1"), (b"POS? 3", b"15")]:
        assert raw.ask(command + b"\nERR?\n") == code + b"\n", command  # a refused query has no reply
    assert raw.ask(b"POS? 1\n") == b"1=0.0\n"  # nothing refused moved


def test_the_simulator_moves_relative_sets_velocities_and_stops(server, raw):
    assert raw.ask(b"SVO 1 1\nFRF 1\nVEL 1 1000\nVEL? 1\n") == b"1=1000.0\n"
    wait_until(lambda: raw.ask(b"ONT? 1\n") == b"1=1\n", what="the reference move, of no length, ending")
    assert raw.ask(b"MOV 1 10\nMVR 1 -2.5\nERR?\n") == b"0\n"
    wait_until(lambda: raw.ask(b"ONT? 1\n") == b"1=1\n", what="the moves ending")
    assert raw.ask(b"POS? 1\n") == b"1=7.5\n"
    assert raw.ask(b"VEL 1 10\nMOV 1 300\nONT? 1\n") == b"1=0\n"
    assert raw.ask(b"STP\nERR?\n") == b"10\n"
    assert raw.ask(b"ONT?\n") == b"1=1 \n2=1\n"
    assert 7.5 < server.responder.axes["1"].read_position() < 10.0


def test_the_simulator_plays_the_fault_hook_in_gcs_words(server, raw):
    """Refused moves: error 5 for MOV, MVR and FRF (the servo-off state), nothing moves; a stall: ONT? stays
    0 until HLT; a limit switch: the move ends short and ERR? reads 216 (PI_CNTR_ON_LIMIT_SWITCH), once."""
    stage = server.responder.axes["1"]
    assert raw.ask(b"SVO 1 1\nFRF 1\nVEL 1 100\nERR?\n") == b"0\n"
    wait_until(lambda: raw.ask(b"ONT? 1\n") == b"1=1\n", what="the reference move, of no length, ending")
    stage.refuse_moves = True
    for command in (b"MOV 1 10", b"MVR 1 10", b"FRF 1"):
        assert raw.ask(command + b"\nERR?\n") == b"5\n", command
    assert raw.ask(b"ONT? 1\nPOS? 1\n") == b"1=1\n1=0.0\n"
    stage.refuse_moves = False
    for kind, after in (("stage_stall", b"1=0\n0\n"), ("limit_switch", b"1=1\n216\n")):
        assert raw.ask(b"MOV 1 300\nERR?\n") == b"0\n"  # 3 s at 100 deg/s
        wait_until(lambda: stage.true_position() > 1.0, what="the stage leaving its start")
        stage.strike(kind)
        here = stage.true_position()
        assert raw.ask(b"ONT? 1\nERR?\n") == after, kind
        assert stage.true_position() == here < 300.0
        assert raw.ask(b"HLT 1\nERR?\n") == b"10\n" and raw.ask(b"ERR?\n") == b"0\n"
        assert raw.ask(b"MOV 1 0\nERR?\n") == b"0\n"
        wait_until(lambda: raw.ask(b"ONT? 1\n") == b"1=1\n", timeout_s=10.0, what="the move back ending")


def test_the_simulator_can_allow_moves_before_referencing():
    with WireServer(PIResponder(require_reference=False)) as server:
        raw = Raw(server.serve_tcp())
        try:
            assert raw.ask(b"SVO 1 1\nMOV 1 0.5\nERR?\nFRF? 1\n") == b"0\n1=0\n"
        finally:
            raw.close()


# -- single-byte commands --------------------------------------------------------------------------------
def test_single_byte_commands_answer_at_once(server, raw):
    assert raw.ask(b"\x05") == b"0\n"
    assert raw.ask(b"\x07") == b"\xb1\n"
    assert raw.ask(b"SVO 2 1\nFRF 2\nERR?\n") == b"0\n"
    wait_until(lambda: raw.ask(b"ONT? 2\n") == b"2=1\n", what="the reference move, of no length, ending")
    assert raw.ask(b"VEL 2 100\nMOV 2 50\nERR?\n") == b"0\n"  # 0.5 s
    assert raw.ask(b"\x05") == b"2\n"  # bit 1: axis 2 moves
    assert raw.ask(b"\x07") == b"\xb1\n"
    time.sleep(0.2)  # about 20 mm out
    assert raw.ask(b"FRF 2\nERR?\n") == b"0\n"  # back to the reference position
    assert raw.ask(b"\x07") == b"\xb0\n"  # busy while a reference move runs
    raw.send(b"\x18")  # stop all: no reply, error 10
    assert raw.ask(b"ERR?\n") == b"10\n"
    assert raw.ask(b"\x05") == b"0\n"
    assert raw.ask(b"\x07") == b"\xb1\n"
    assert raw.ask(b"FRF? 2\n") == b"2=0\n"  # the interrupted reference move leaves the axis unreferenced
    assert 0.0 < server.responder.axes["2"].read_position() < 50.0  # stopped on its way, at neither end


def test_stop_all_from_elsewhere_fails_the_running_move(server):
    where = resource(server)
    with pi_axis(where, "1", "rotation", overrides={"max_velocity": 100.0}) as axis:
        axis.home(timeout_s=2.0)
        status = axis.start_move_to(300.0)  # 3 s at 100 deg/s
        other = Raw(int(where.split("::")[2]))
        other.send(b"\x18")
        other.close()
        with pytest.raises(DeviceStateError, match=r"move to 300 deg failed: axis 'rotation': PI axis 1 "
                                                   r"reports error 10 \(controller was stopped"):
            status.wait(2.0)


# -- faults ----------------------------------------------------------------------------------------------
class Silent:
    """A controller that never answers."""

    request_terminators = b"\n"

    def respond(self, line: bytes) -> list[bytes]:
        return []


def test_no_reply_is_a_timeout_naming_device_and_command():
    with WireServer(Silent()) as server:
        axis = pi_axis(resource(server), "1", "rotation")
        with pytest.raises(DeviceTimeoutError, match=r"axis 'rotation': PI axis 1: '\*IDN\?' failed: .*"
                                                     r"no complete reply to '\*IDN\?' within 0.3 s"):
            axis.connect()
        assert not axis.connected


class Garbling(PIResponder):
    """The controller, but every reply to ``POS?`` arrives garbled."""

    def respond(self, line: bytes) -> list[bytes]:
        replies = super().respond(line)
        return [b"1=1O.5\n"] if line.startswith(b"POS?") else replies


def test_a_garbled_reply_is_a_protocol_error_naming_device_and_command():
    with WireServer(Garbling(overrides=FAST)) as server:
        with pi_axis(resource(server), "1", "rotation") as axis:
            axis.home(timeout_s=2.0)
            with pytest.raises(ProtocolError, match=r"PI axis 1: '1O.5' in the reply to 'POS\? 1' is not a number"):
                axis.read_position()
            axis.move_to(90.0, timeout_s=2.0)  # the link still works
            assert server.responder.axes["1"].read_position() == pytest.approx(90.0)


def test_the_server_stopping_mid_move_fails_the_move_naming_the_device():
    server = WireServer(PIResponder(overrides={"1": {"max_velocity": 100.0}}))
    axis = pi_axis(resource(server), "1", "rotation", overrides={"max_velocity": 100.0})
    axis.connect()
    axis.home(timeout_s=2.0)
    status = axis.start_move_to(300.0)  # 3 s at 100 deg/s
    server.stop()
    with pytest.raises((CommunicationError, DeviceTimeoutError),
                       match=r"move to 300 deg failed: axis 'rotation': PI axis 1: 'ONT\? 1' \+ 'ERR\?' failed"):
        status.wait(5.0)
    with pytest.raises((CommunicationError, DeviceTimeoutError), match=r"'HLT 1' \+ 'ERR\?' failed"):
        axis.close()  # stopping first fails: the link is gone
    assert not axis.connected


# -- the command line ------------------------------------------------------------------------------------
def test_sim_serve_prints_a_tcp_url_whose_port_a_driver_can_use():
    with sim_serve("pi", "require_reference=false") as port:
        options = PIOptions(visa={"timeout_s": 2.0})
        with PIAxis("rotation", options, connection=f"TCPIP::127.0.0.1::{port}::SOCKET") as axis:
            assert axis.read_position() == 0.0
            assert axis.describe()["identification"] == "microct, PI GCS 2 wire simulator, 0, 1.0"
