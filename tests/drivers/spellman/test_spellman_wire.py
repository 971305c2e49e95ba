"""SpellmanSource talking to SpellmanResponder through a WireServer over real pyvisa-py TCPIP SOCKET
sessions: the source contract and source fault contract (XRV and uX), interlock, overload, the serial
framing with checksums, wire faults and `microct sim serve spellman`. The contracts over the serial
(ASRL) link: test_spellman_contracts.py."""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from dataclasses import dataclass
from typing import ClassVar

import pytest

from microct.devices.base import DriverContext
from microct.devices.source import SourceState
from microct.driverkit import ErrorReply
from microct.drivers.spellman.codec import FAULT_FLAGS
from microct.drivers.spellman.driver import SpellmanOptions, SpellmanSource
from microct.errors import (
    CommunicationError,
    DeviceStateError,
    DeviceTimeoutError,
    InterlockError,
    MicroCTError,
    ProtocolError,
)
from microct.simulators.spellman import SpellmanResponder
from microct.simulators.wire import WireServer
from microct.testing.contracts import SourceContract, SourceFaultContract
from microct.testing.rigs import served, sim_serve

# A fast tube: kV and µA ramp in well under a millisecond.
SIM = {"seed": 1, "ramp_kv_per_s": 1e6, "ramp_ua_per_s": 1e8}
TIMEOUT_S = 0.2


def resource(server: WireServer) -> str:
    return f"TCPIP::127.0.0.1::{server.serve_tcp()}::SOCKET"


def build(connection: str, **options) -> SpellmanSource:
    return SpellmanSource.from_config("tube", SpellmanOptions(**{"timeout_s": TIMEOUT_S, **options}), connection,
                                      DriverContext())


def past_readback_age(source: SpellmanSource) -> None:
    """Let the shared status and monitor replies expire, so that the next read asks the generator."""
    time.sleep(source.options.readback_max_age_s)


def readback_tolerance(full_scale: float, over_range: float) -> float:
    """Set-points go out rounded down to a DAC count and come back as the nearest ADC count."""
    return full_scale / 4095 + 0.5 * over_range * full_scale / 4095 + 0.5


# -- the contracts, for both families --------------------------------------------------------------------------
class _ContractOverVisa(SourceContract, SourceFaultContract):
    """The contracts over a TCPIP SOCKET resource (no checksum); ``serial`` and ``link`` are what
    test_spellman_contracts.py changes for the ASRL link."""

    model: ClassVar[str]
    serial: ClassVar[bool] = False
    link: ClassVar[str] = "visa"
    poll_interval_s = 0.01
    settle_timeout_s = 5.0

    @pytest.fixture(scope="class")
    @classmethod
    def generator_link(cls):
        """One simulated generator per class: a server stops in up to 50 ms, per test that adds up."""
        responder = SpellmanResponder(model=cls.model, serial=cls.serial, **SIM)
        with served(responder, cls.link, name="spellman") as link:
            yield link, responder

    @classmethod
    def resource(cls, address: str) -> str:
        return address

    @pytest.fixture
    def new_device(self, generator_link):
        return lambda: build(self.resource(generator_link[0].address), model=self.model)

    @pytest.fixture
    def hook(self, generator_link):
        """The fault contract's hook: the served link's mute, the simulated tube behind the generator."""
        link, responder = generator_link
        return responder.source.fault_hook(mute=link.mute)

    @pytest.fixture
    def source(self, new_device, generator_link):
        link, responder = generator_link
        tube = responder.source  # whatever an earlier (failed) test left: answering, closed, no fault
        link.mute(False)
        tube.set_interlock(True)
        tube.beam_off()
        tube.reset()
        source = new_device()
        source.connect()
        source.beam_off()  # standby
        yield source
        source.close()


class TestContractXRV(_ContractOverVisa):
    model = "XRV160"
    current_tolerance_ua = readback_tolerance(30000, 1.2)  # 12 µA: one count is 7.3 µA out, 8.8 µA back


class TestContractUX(_ContractOverVisa):
    model = "uX50"
    current_tolerance_ua = readback_tolerance(2000, 1.0)

    clears_faults_remotely = False
    """The uX's fault is cleared by a 'Clear Faults' command whose number microct does not know
    (docs/protocols/spellman-xrv.md, uX manual 6.13): reset() raises DeviceStateError."""


def test_the_ux_fault_stays_until_cleared_at_the_generator(rig):
    """What the uX does instead of the contract's reset (see TestContractUX.clears_faults_remotely): the fault
    latches, beam on is refused, reset() names the missing command and sends nothing."""
    r = rig({"model": "uX50"}, model="uX50")
    on_and_settled(r, voltage_kv=30, current_ua=1000)
    r.tube.trigger_overload()
    past_readback_age(r.source)
    assert r.source.read_state() is SourceState.FAULT
    r.wire.lines.clear()
    with pytest.raises(DeviceStateError, match="source 'tube': the uX family has no reset-faults command"):
        r.source.reset()
    assert r.wire.lines == []
    past_readback_age(r.source)
    assert r.source.read_state() is SourceState.FAULT


# -- a rig with fault injection ----------------------------------------------------------------------------------
class Wire:
    """Wraps the responder: records every request frame; ``fault`` spoils the replies that follow."""

    request_terminators = b"\x03"

    def __init__(self, responder: SpellmanResponder) -> None:
        self.responder = responder
        self.lines: list[bytes] = []
        self.fault: str | None = None

    def respond(self, line: bytes) -> list[bytes]:
        self.lines.append(line)
        replies = self.responder.respond(line)
        if self.fault == "silent":
            return []
        if self.fault == "garbled":
            return [b"\x0214,0,\x03"]  # the reply to another command
        if self.fault == "refusing" and line.count(b",") > 1:  # commands with an argument: error code 1
            command = line[1:3]
            return [b"\x02" + command + b",1,\x03"]
        return replies


@dataclass
class Rig:
    server: WireServer
    wire: Wire
    source: SpellmanSource

    @property
    def tube(self):
        return self.wire.responder.source


@pytest.fixture
def rig():
    made: list[Rig] = []

    def make(options: dict | None = None, **simulation) -> Rig:
        wire = Wire(SpellmanResponder(**{**SIM, **simulation}))
        server = WireServer(wire, "spellman")
        made.append(Rig(server, wire, build(resource(server), **(options or {}))))
        made[-1].source.connect()
        return made[-1]

    yield make
    for each in made:
        each.wire.fault = None
        with contextlib.suppress(MicroCTError):  # the server may be gone already
            each.source.close()
        each.server.stop()


def on_and_settled(r: Rig, voltage_kv: float = 60, current_ua: float = 3000) -> None:
    r.source.configure(voltage_kv=voltage_kv, current_ua=current_ua)
    r.source.beam_on()
    time.sleep(0.01)  # the ramps end
    past_readback_age(r.source)


def test_connect_asks_full_scale_setpoints_and_status(rig):
    r = rig()
    assert r.wire.lines == [b"\x0228,", b"\x0214,", b"\x0215,", b"\x0222,"]


def test_a_frame_costs_two_commands_and_a_projection_one(rig):
    r = rig({"readback_max_age_s": 0.5})  # the reads share their replies however slow this machine is
    on_and_settled(r)
    r.wire.lines.clear()
    assert r.source.read_state() is SourceState.BEAM_ON      # the simulated detector, per frame
    kv, ua = r.source.read_voltage_kv(), r.source.read_current_ua()
    assert kv == pytest.approx(60, abs=0.1) and ua == pytest.approx(3000, abs=12)
    assert r.wire.lines == [b"\x0222,", b"\x0219,"]
    past_readback_age(r.source)
    r.wire.lines.clear()
    r.source.read_voltage_kv(), r.source.read_current_ua()    # the sequencer, per projection
    assert r.wire.lines == [b"\x0219,"]


def test_beam_on_enables_the_filament_first(rig):
    r = rig()
    r.wire.lines.clear()
    r.source.beam_on()
    assert r.wire.lines == [b"\x0222,", b"\x0270,1,", b"\x0298,1,"]
    assert r.wire.responder.filament_enabled


def test_without_the_filament_the_current_reads_zero():
    responder = SpellmanResponder(**SIM)
    for request in (b"\x0210,2047,", b"\x0211,682,", b"\x0298,1,"):
        assert responder.respond(request) == [request[:3] + b",$,\x03"]
    time.sleep(0.01)
    kv, ma = responder.respond(b"\x0219,")[0].split(b",")[1:3]
    assert int(kv) > 1500 and ma == b"0"


def test_open_interlock_is_not_ready_and_refuses_hv(rig, caplog):
    r = rig()
    on_and_settled(r)
    r.tube.set_interlock(False)
    with caplog.at_level(logging.WARNING, "microct.drivers.spellman"):
        assert r.source.read_state() is SourceState.NOT_READY
    assert "source 'tube': not ready: interlock 1 open" in caplog.text
    assert r.source.read_interlock_closed() is False
    assert r.source.describe()["reason"] == "not ready: interlock 1 open"
    with pytest.raises(InterlockError, match="source 'tube': interlock is open"):
        r.source.beam_on()
    assert r.wire.responder.respond(b"\x0298,1,") == [b"\x0298,2,\x03"]  # the generator refuses it too
    r.tube.set_interlock(True)
    past_readback_age(r.source)
    assert r.source.read_state() is SourceState.STANDBY
    assert "reason" not in r.source.describe()


def test_overload_is_an_arc_fault_and_reset_clears_it(rig):
    r = rig()
    on_and_settled(r)
    r.tube.trigger_overload()
    past_readback_age(r.source)
    assert r.source.read_state() is SourceState.FAULT
    assert r.source.fault_flags() == ("anode arc",)
    assert r.source.describe()["reason"] == "fault: anode arc"
    assert r.source.read_current_ua() == 0.0
    with pytest.raises(DeviceStateError, match="fault / overload"):
        r.source.beam_on()
    r.source.reset()
    assert r.source.read_state() is SourceState.STANDBY
    assert r.source.fault_flags() == ()
    r.source.beam_on()
    assert r.source.read_state() is SourceState.BEAM_ON


def test_reset_with_hv_on_is_refused_by_the_generator(rig):
    r = rig()
    on_and_settled(r)
    with pytest.raises(ErrorReply, match=r"source 'tube': '31' \(reset faults\) was answered with error code 2 "
                                         r"\(refused .*\); the generator is in state 'beam on'"):
        r.source.reset()


@pytest.mark.parametrize(("request_frame", "reply", "why"), [
    (b"\x0299,1,", b"\x0299,3,\x03", "99 (local/remote) is not simulated on the XRV"),
    (b"\x0210,4096,", b"\x0210,1,\x03", "above 4095 counts"),
    (b"\x0210,abc,", b"\x0210,1,\x03", "not a number"),
    (b"\x0210,", b"\x0210,1,\x03", "a setter needs its argument"),
    (b"\x0298,2,", b"\x0298,1,\x03", "a switch takes 0 or 1"),
    (b"\x0222,1,", b"\x0222,1,\x03", "a query takes no argument"),
    (b"\x0211,4095,", b"\x0211,1,\x03", "30 mA at 160 kV: 4.8 kW, above the small filament's 800 W"),
])
def test_the_simulator_answers_error_codes(request_frame, reply, why):
    responder = SpellmanResponder(**SIM)
    if request_frame.startswith(b"\x0211"):
        assert responder.respond(b"\x0210,4095,") == [b"\x0210,$,\x03"]  # 160 kV, small filament (800 W)
    assert responder.respond(request_frame) == [reply], why


@pytest.mark.parametrize("request_frame", [b"22,", b"\x0222", b"\x02xx,"])
def test_the_simulator_ignores_what_is_not_a_frame(request_frame):
    assert SpellmanResponder(**SIM).respond(request_frame) == []


@pytest.mark.parametrize("model", ["XRV160", "uX50"])
def test_the_fault_hook_shows_in_the_protocol_s_own_terms(model):
    """What the fault contract's hook does reads back as the generator reports it: an arc sets the fault
    flag of 22 (XRV: the anode-arc flag of 68 too), an open interlock its interlock flag; HV on is refused
    (error code 2) while either lasts."""
    responder = SpellmanResponder(model=model, **SIM)
    commands = responder.generator.commands
    hook = responder.source.fault_hook()

    def ask(command: int, *arguments: int) -> list[bytes]:
        reply = responder.respond(b"\x02%02d," % command + b"".join(b"%d," % a for a in arguments))
        return reply[0][1:-2].split(b",")[1:]  # the values between the command number and the last comma

    def status() -> dict[str, bool]:
        return dict(zip(commands.status_fields, (value == b"1" for value in ask(commands.status)), strict=True))

    hv_key = "hv_enabled" if model == "XRV160" else "hv_on"
    assert ask(commands.set_kv, 1000) == [b"$"] and ask(commands.hv, 1) == [b"$"]
    assert hook.beam_on() and status()[hv_key]
    hook.arc()
    assert not hook.beam_on()
    assert status()["fault"] and not status()[hv_key]
    if commands.faults is not None:
        faults = ask(commands.faults)
        assert [name for name, flag in zip(FAULT_FLAGS, faults, strict=True) if flag == b"1"] == ["anode arc"]
    assert ask(commands.hv, 1) == [b"2"]
    responder.source.reset()  # the XRV's 31, or the uX's panel
    assert ask(commands.hv, 1) == [b"$"]
    hook.open_interlock()
    assert not hook.beam_on()
    closed = status()["interlock_1_closed"] if model == "XRV160" else not status()["interlock_open"]
    assert not closed and not status()["fault"]
    assert ask(commands.hv, 1) == [b"2"]
    hook.open_interlock(False)
    assert ask(commands.hv, 1) == [b"$"]


# -- the serial framing: checksums both ways ---------------------------------------------------------------------
def test_checksummed_framing_end_to_end(rig):
    r = rig(options={"checksum": True}, serial=True)
    assert r.wire.lines[0] == b"\x0228,j"
    on_and_settled(r)
    assert r.source.read_state() is SourceState.BEAM_ON
    assert r.source.read_voltage_kv() == pytest.approx(60, abs=0.1)


def test_a_serial_generator_ignores_frames_without_the_checksum():
    with WireServer(SpellmanResponder(serial=True, **SIM), "spellman") as server:
        source = build(resource(server))  # a TCPIP SOCKET resource: no checksum by default
        with pytest.raises(DeviceTimeoutError, match=r"source 'tube': no complete reply to '\\x0228,' within 0.2 s"):
            source.connect()
        assert not source.connected


# -- wire faults -------------------------------------------------------------------------------------------------
def test_no_reply_is_a_timeout_naming_device_and_command(rig):
    r = rig()
    r.wire.fault = "silent"
    past_readback_age(r.source)
    with pytest.raises(DeviceTimeoutError, match=r"source 'tube': no complete reply to '\\x0222,' within 0.2 s"):
        r.source.read_state()
    r.wire.fault = None
    assert r.source.read_state() is SourceState.STANDBY  # the late-reply drain keeps the next exchange clean


def test_an_error_reply_names_device_command_and_value(rig):
    r = rig()
    r.wire.fault = "refusing"
    with pytest.raises(ErrorReply, match=r"source 'tube': '10,1535' \(set kV\) was answered with error code 1 "
                                         r"\(out of range\); voltage_kv=60 kV was sent as 1535 counts"):
        r.source.set_voltage_kv(60)
    assert r.source.voltage_kv != 60


def test_garbled_reply_is_a_protocol_error_naming_command_and_reply(rig):
    r = rig()
    r.wire.fault = "garbled"
    past_readback_age(r.source)
    with pytest.raises(ProtocolError, match=r"source 'tube': '19' \(monitors\): garbled reply .*answers command 14"):
        r.source.read_voltage_kv()
    r.wire.fault = None
    assert r.source.read_state() is SourceState.STANDBY  # the next exchange is clean again


def test_server_gone_mid_session_is_a_clear_error_naming_device_and_command(rig):
    r = rig()
    r.server.stop()
    past_readback_age(r.source)
    with pytest.raises(CommunicationError, match=r"source 'tube': (reading the reply to '\\x0222,' from|writing "
                                                 r"b'\\x0222,' to) TCPIP::127.0.0.1::\d+::SOCKET failed"):
        r.source.read_interlock_closed()


def test_nothing_listening_shows_at_the_first_exchange():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    source = build(f"TCPIP::127.0.0.1::{port}::SOCKET")
    with pytest.raises(CommunicationError, match="source 'tube'"):
        source.connect()
    assert not source.connected


# -- the command line --------------------------------------------------------------------------------------------
def test_sim_serve_prints_a_url_whose_port_a_visa_resource_can_use():
    with sim_serve("spellman") as port:
        with build(f"TCPIP::127.0.0.1::{port}::SOCKET", timeout_s=2.0) as source:
            assert source.describe()["model"] == "XRV160"
            assert source.read_state() is SourceState.STANDBY
