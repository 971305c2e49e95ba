"""HamamatsuSource talking to HamamatsuResponder through a WireServer, over a pty and over TCP:
the source contract and source fault contract, warm-up, interlock, overload, the device's coded
refusals (ERR <code> <word>) and power-on NOC, wire faults and `microct sim serve hamamatsu`."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import ClassVar

import pytest

from microct.cli import main
from microct.devices.base import DriverContext
from microct.devices.source import SourceState
from microct.drivers.hamamatsu.driver import HamamatsuOptions, HamamatsuSource
from microct.errors import (
    CommunicationError,
    DeviceStateError,
    DeviceTimeoutError,
    ErrorReply,
    InterlockError,
    MicroCTError,
    ProtocolError,
)
from microct.simulators.hamamatsu import HamamatsuResponder
from microct.simulators.wire import WireServer
from microct.testing.contracts import SourceContract, SourceFaultContract
from microct.testing.rigs import served, sim_serve, sim_served
from microct.testing.waiting import wait_until
from microct.transport import VisaSettings, VisaTransport

# A fast tube: ramps in a millisecond, a warm-up of 50 ms.
SIM = {"seed": 1, "warmed_up": True, "warmup_s": 0.05, "ramp_kv_per_s": 1e5, "ramp_ua_per_s": 1e5}
OPTIONS = HamamatsuOptions(model="L10711", timeout_s=0.2)
# The automatic X-ray stop shortened from the device's 3 s so that the tests stay short: 1 s where the beam
# must stay on (a 0.1 s keepalive leaves 0.9 s for a loaded machine to fall behind), 0.3 s where a test only
# waits for it to drop. Replies are given 1 s: nothing here times out on purpose but the muted link.
AUTO_STOP_S, SHORT_AUTO_STOP_S, KEEPALIVE_S = 1.0, 0.3, 0.1
KEEPALIVE = {"keepalive_s": KEEPALIVE_S, "timeout_s": 1.0}
RIG_REPLY, SHORT_REPLY = {"timeout_s": 1.0}, {"timeout_s": 0.2}
"""The rig's reply time-out (room for a loaded machine: OPTIONS' 0.2 s once timed out an XON), and the short
one of the tests that wait for a reply that never comes."""


def build(url: str, **options) -> HamamatsuSource:
    return HamamatsuSource.from_config("tube", OPTIONS.model_copy(update=options), url, DriverContext())


def past_readback_age(source: HamamatsuSource) -> None:
    """Let the shared SAR reply expire, so that the next read asks the device."""
    time.sleep(source.options.readback_max_age_s)


def wait_for(source: HamamatsuSource, state: SourceState, timeout_s: float = 2.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (now := source.read_state()) is not state:
        assert time.monotonic() < deadline, f"state {now.value!r}, not {state.value!r}, after {timeout_s} s"
        time.sleep(0.01)


# -- the contracts, over both links --------------------------------------------------------------------------
class _ContractOverTheWire(SourceContract, SourceFaultContract):
    link: ClassVar[str]
    poll_interval_s = 0.01
    settle_timeout_s = 5.0

    @pytest.fixture(scope="class")
    @classmethod
    def tube_link(cls):
        """One simulated tube per class: a server stops in up to 50 ms, per test that adds up."""
        responder = HamamatsuResponder(**SIM)
        with served(responder, cls.link, name="hamamatsu") as link:
            yield link, responder

    @pytest.fixture
    def new_device(self, tube_link):
        return lambda: build(tube_link[0].address)

    @pytest.fixture
    def hook(self, tube_link):
        """The fault contract's hook: the served link's mute, the simulated tube behind it. A muted tube
        hears nothing, so after its auto-stop time (3 s, the device's default) it switches X-rays off by
        itself, as the real device does when the cable is cut; the contract mutes it for a reply timeout
        or two (0.2 s each here), so "the silent tube did not hear beam_off(): its beam is still on" holds."""
        link, responder = tube_link
        return responder.source.fault_hook(mute=link.mute)

    @pytest.fixture
    def source(self, new_device, tube_link):
        link, responder = tube_link
        tube = responder.source  # whatever an earlier (failed) test left: answering, closed, no overload
        link.mute(False)
        tube.set_interlock(True)
        tube.beam_off()
        tube.reset()
        source = new_device()
        source.connect()
        source.beam_off()  # standby
        yield source
        source.close()


class TestContractOverPty(_ContractOverTheWire):
    link = "pty"


class TestContractOverTcp(_ContractOverTheWire):
    link = "tcp"


# -- a rig with fault injection ------------------------------------------------------------------------------
class Wire:
    """Wraps the responder: records every request line; ``fault`` spoils the replies that follow."""

    request_terminators = b"\r"

    def __init__(self, responder: HamamatsuResponder) -> None:
        self.responder = responder
        self.lines: list[bytes] = []
        self.fault: str | None = None

    def respond(self, line: bytes) -> list[bytes]:
        self.lines.append(line)
        replies = self.responder.respond(line)
        if self.fault == "silent":
            return []
        if self.fault == "partial":
            return [replies[0][:5]]  # no terminator
        if self.fault == "garbled":
            return [b"STS 2\r"]  # the reply to another command
        return replies


@dataclass
class Rig:
    server: WireServer
    wire: Wire
    source: HamamatsuSource

    @property
    def tube(self):
        return self.wire.responder.source


@pytest.fixture(params=["pty", "tcp"])
def rig(request):
    made: list[Rig] = []

    def make(options: dict | None = None, **simulation) -> Rig:
        wire = Wire(HamamatsuResponder(**{**SIM, **simulation}))
        server = WireServer(wire, "hamamatsu")
        made.append(Rig(server, wire, build(server.serve_serial(request.param), **{**RIG_REPLY, **(options or {})})))
        made[-1].source.connect()
        return made[-1]

    yield make
    for each in made:
        each.wire.fault = None
        with contextlib.suppress(MicroCTError):  # the server may be gone already
            each.source.close()
        each.server.stop()


def test_state_voltage_and_current_cost_one_command(rig):
    r = rig({"readback_max_age_s": 0.5})  # the three reads share one reply however slow this machine is
    r.source.configure(voltage_kv=90, current_ua=40, spot_mode="middle")
    r.source.beam_on()
    past_readback_age(r.source)
    r.wire.lines.clear()
    assert r.source.read_state() is SourceState.BEAM_ON  # what the simulated detector reads per frame
    assert (r.source.read_voltage_kv(), r.source.read_current_ua()) == (90.0, 40.0)
    assert r.wire.lines == [b"SAR"]


def test_warm_up_through_the_wire(rig):
    r = rig(warmed_up=False, warmup_s=0.15)
    assert r.source.read_state() is SourceState.WARMUP_NEEDED
    assert r.wire.responder.respond(b"XON") == [b"ERR 10 XON\r"]  # the device refuses X-rays before warm-up
    with pytest.raises(DeviceStateError, match="warm-up needed"):
        r.source.beam_on()
    r.source.warm_up()
    assert r.source.read_state() is SourceState.WARMING_UP
    assert r.wire.responder.respond(b"SWE") == [b"SWE 1\r"]
    wait_for(r.source, SourceState.STANDBY)
    assert r.wire.responder.respond(b"SWE") == [b"SWE 0\r"]
    r.source.beam_on()
    assert r.source.read_state() is SourceState.BEAM_ON


def test_open_interlock_is_not_ready_and_snr_names_it(rig, caplog):
    r = rig()
    r.source.configure(voltage_kv=60, current_ua=30)
    r.source.beam_on()
    r.tube.set_interlock(False)
    past_readback_age(r.source)
    with caplog.at_level(logging.WARNING, "microct.drivers.hamamatsu"):
        assert r.source.read_state() is SourceState.NOT_READY
    assert "source 'tube': not ready: interlock open" in caplog.text
    assert r.source.not_ready_reason() == "interlock open"
    assert r.source.describe()["not_ready_reason"] == "interlock open"
    with pytest.raises(InterlockError, match="source 'tube': interlock is open"):
        r.source.beam_on()
    r.tube.set_interlock(True)
    past_readback_age(r.source)
    assert r.source.read_state() is SourceState.STANDBY
    assert "not_ready_reason" not in r.source.describe()


def test_overload_is_a_fault_and_reset_clears_it(rig):
    r = rig()
    r.source.configure(voltage_kv=60, current_ua=30)
    r.source.beam_on()
    r.tube.trigger_overload()
    past_readback_age(r.source)
    assert r.source.read_state() is SourceState.FAULT
    assert r.source.read_current_ua() == 0.0
    with pytest.raises(DeviceStateError, match="fault / overload"):
        r.source.beam_on()
    r.source.reset()
    assert r.source.read_state() is SourceState.STANDBY
    r.source.beam_on()
    assert r.source.read_state() is SourceState.BEAM_ON


@pytest.mark.parametrize(("request_line", "reply", "why"), [
    (b"FOO", b"ERR 0 NOC", "unknown command"),
    (b"STS 1", b"ERR 0 NOC", "a query takes no argument"),
    (b"XON 1", b"ERR 0 NOC", "an action takes no argument"),
    (b"HIV 80", b"ERR 20 HIV", "not zero padded"),
    (b"HIV abc", b"ERR 20 HIV", "not a number"),
    (b"HIV", b"ERR 20 HIV", "a setter needs its argument"),
    (b"HIV 161", b"ERR 20 HIV", "above the L10711 range"),
    (b"CFS 7", b"ERR 20 CFS", "no such focus code"),
    (b"RST", b"ERR 10 RST", "no overload to clear (manual A11)"),
])
def test_the_simulator_answers_coded_err_like_the_device(request_line, reply, why):
    assert HamamatsuResponder(**SIM).respond(request_line) == [reply + b"\r"], why


def test_the_simulator_refuses_a_power_above_the_focus_mode_limit():
    responder = HamamatsuResponder(**SIM)
    assert responder.respond(b"CFS 0") == [b"CFS 0\r"]
    assert responder.respond(b"HIV 100") == [b"HIV 100\r"]
    assert responder.respond(b"CUR 050") == [b"ERR 40 CUR\r"]  # 5 W > the small focus's 4 W
    assert responder.respond(b"CUR 040") == [b"CUR 040\r"]
    assert responder.respond(b"CFS 2") == [b"CFS 2\r"]
    assert responder.respond(b"CUR 100") == [b"CUR 100\r"]    # 10 W in the large focus
    assert responder.respond(b"CFS 0") == [b"ERR 40 CFS\r"]   # the small focus would carry 10 W
    assert responder.respond(b"SVI") == [b"SVI 100 100\r"]
    assert responder.respond(b"SFC") == [b"SFC 2\r"]


def test_the_fault_hook_shows_in_the_protocol_s_own_terms():
    """What the fault contract's hook does reads back as the device reports it: an arc is the overload
    protection (STS 4, cleared by RST), an open interlock is NOT READY with SIN 1 and SNR naming it."""
    responder = HamamatsuResponder(**SIM)
    hook = responder.source.fault_hook()
    for line in (b"HIV 060", b"CUR 030", b"XON"):
        assert responder.respond(line) == [line + b"\r"]
    assert hook.beam_on() and responder.respond(b"STS") == [b"STS 3\r"]
    hook.arc()
    assert not hook.beam_on()
    assert responder.respond(b"STS") == [b"STS 4\r"]
    assert responder.respond(b"SAR") == [b"SAR 4 0 0 0 0 0 0\r"]
    assert responder.respond(b"XON") == [b"ERR 10 XON\r"]
    assert responder.respond(b"RST") == [b"RST\r"]
    assert responder.respond(b"STS") == [b"STS 2\r"]
    assert responder.respond(b"XON") == [b"XON\r"]
    hook.open_interlock()
    assert not hook.beam_on()
    assert [responder.respond(line) for line in (b"STS", b"SIN", b"SNR", b"XON")] == [
        [b"STS 5\r"], [b"SIN 1\r"], [b"SNR 0 1 0 5\r"], [b"ERR 10 XON\r"]]
    hook.open_interlock(False)
    assert [responder.respond(line) for line in (b"STS", b"SIN")] == [[b"STS 2\r"], [b"SIN 0\r"]]


def test_the_simulator_answers_sat_and_ast_as_the_manual_s_table():
    """SAT reports the auto-stop time, AST n sets it (0-60 s), refused with X-rays on or warming up (A11)."""
    responder = HamamatsuResponder(**SIM)
    assert responder.respond(b"SAT") == [b"SAT 3\r"]  # the device's initial setting (manual A5 note 3)
    assert responder.respond(b"AST 10") == [b"AST 10\r"]
    assert responder.respond(b"SAT") == [b"SAT 10\r"]
    assert responder.respond(b"AST 0") == [b"AST 0\r"] and responder.respond(b"SAT") == [b"SAT 0\r"]
    for line, reply in [(b"AST 61", b"ERR 20 AST"), (b"AST 100", b"ERR 20 AST"), (b"AST", b"ERR 20 AST"),
                        (b"SAT 1", b"ERR 0 NOC")]:
        assert responder.respond(line) == [reply + b"\r"], line
    for line in (b"HIV 060", b"CUR 030", b"XON"):
        assert responder.respond(line) == [line + b"\r"]
    assert responder.respond(b"AST 5") == [b"ERR 10 AST\r"]  # X-rays on
    responder.source.trigger_overload()
    assert responder.respond(b"AST 5") == [b"AST 5\r"]  # overload (STS 4) accepts it
    warming = HamamatsuResponder(**{**SIM, "warmed_up": False, "warmup_s": 60.0})
    assert warming.respond(b"WUP") == [b"WUP\r"]
    assert warming.respond(b"AST 5") == [b"ERR 10 AST\r"]
    assert HamamatsuResponder(**SIM, auto_stop_s=0.3).respond(b"SAT") == [b"SAT 1\r"]  # whole seconds, never 0


@pytest.mark.parametrize(("simulation", "before", "after"), [
    ({}, [b"HIV 060", b"CUR 030", b"XON"], b"STS 2"),                           # X-rays on → standby
    ({"warmed_up": False, "warmup_s": 60.0}, [b"WUP"], b"STS 0"),               # warm-up abandoned (A7)
], ids=["x-rays-on", "warming-up"])
def test_the_simulator_switches_x_rays_off_after_auto_stop_s_without_a_request(simulation, before, after):
    responder = HamamatsuResponder(**{**SIM, **simulation}, auto_stop_s=SHORT_AUTO_STOP_S)
    for line in before:
        assert responder.respond(line) == [line + b"\r"]  # the echo: X-rays on, or the warm-up started
    tube = responder.source  # read past the wire: a request would restart the auto-stop time
    wait_until(lambda: tube.read_state() not in (SourceState.BEAM_ON, SourceState.WARMING_UP), 10.0,
               "the automatic X-ray stop")
    assert not tube.fault_hook().beam_on()
    assert responder.respond(b"STS") == [after + b"\r"]


# -- the keepalive against the device's automatic X-ray stop ------------------------------------------------
def beam_on_at_a_moderate_point(r: Rig):
    """The beam on at 60 kV, 30 µA; the hook reading the tube's true high voltage."""
    r.source.configure(voltage_kv=60, current_ua=30)
    r.source.beam_on()
    return r.tube.fault_hook()


@pytest.mark.parametrize("rig", ["tcp"], indirect=True)  # the longest wire test: one link (both below)
def test_the_keepalive_holds_the_beam_through_five_auto_stop_times_without_a_request(rig):
    r = rig(KEEPALIVE, auto_stop_s=AUTO_STOP_S)
    hook = beam_on_at_a_moderate_point(r)
    heard = len(r.wire.lines)
    end = time.monotonic() + 5 * AUTO_STOP_S
    while time.monotonic() < end:  # the test sends nothing: only the keepalive speaks
        assert hook.beam_on(), f"X-rays went off with the keepalive running; requests: {r.wire.lines[heard:]}"
        time.sleep(0.01)
    assert r.wire.lines[heard:] and set(r.wire.lines[heard:]) == {b"SAR"}
    assert r.source.read_state() is SourceState.BEAM_ON


def test_without_the_keepalive_the_device_switches_x_rays_off_and_the_driver_reports_it(rig, caplog):
    with caplog.at_level(logging.WARNING, "microct.drivers.hamamatsu"):
        r = rig({**KEEPALIVE, "keepalive_s": 0}, auto_stop_s=SHORT_AUTO_STOP_S)
    assert "keepalive_s = 0: nothing is sent between requests" in caplog.text
    hook = beam_on_at_a_moderate_point(r)
    heard = len(r.wire.lines)
    wait_until(lambda: not hook.beam_on(), 10.0, "the automatic X-ray stop")
    assert r.wire.lines[heard:] == []
    r.source.refresh()
    assert r.source.read_state() is SourceState.STANDBY


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_silent_link_longer_than_the_auto_stop_drops_the_beam_and_the_driver_answers_after(rig, caplog):
    """As on the real device, a controller that hears nothing (a muted server: a cut cable) switches X-rays
    off; the keepalive's failures are one WARNING, nothing escapes its thread, and once the link is back the
    keepalive and the driver answer normally and report the drop."""
    r = rig(KEEPALIVE, auto_stop_s=AUTO_STOP_S)
    hook = beam_on_at_a_moderate_point(r)
    with caplog.at_level(logging.INFO, "microct.drivers.hamamatsu"):
        r.server.muted = True
        try:
            wait_until(lambda: not hook.beam_on() and "keepalive failed" in caplog.text, 10.0,
                       "the automatic X-ray stop and a failed keepalive")
        finally:
            r.server.muted = False
        wait_until(lambda: "the keepalive is answered again" in caplog.text, 10.0, "the keepalive answered again")
    failures = [record for record in caplog.records if "keepalive failed" in record.getMessage()]
    assert len(failures) == 1 and failures[0].levelno == logging.WARNING
    assert "DeviceTimeoutError: source 'tube': no complete reply to 'SAR' within 1 s" in failures[0].getMessage()
    r.source.refresh()
    assert r.source.read_state() is SourceState.STANDBY
    r.source.beam_on()
    assert hook.beam_on()


# -- the device's refusals through the driver ------------------------------------------------------------------
def test_a_setpoint_the_device_refuses_is_its_coded_error_naming_command_and_state(rig):
    # the driver believes in a wider tube than the simulated L10711 (0-160 kV, small focus 4 W)
    r = rig({"overrides": {"voltage_range_kv": [0, 200], "spot_modes": {"small": {"power_limit_w": 20.0}}}})
    r.source.configure(voltage_kv=60, current_ua=30, spot_mode="small")
    with pytest.raises(ErrorReply) as info:
        r.source.set_voltage_kv(180)
    assert (info.value.code, info.value.command) == (20, "HIV 180")
    assert str(info.value) == ("source 'tube': 'HIV 180' was answered 'ERR 20 HIV': error 20, parameter error: "
                               "beyond the settable range; the device is in state 'standby'")
    with pytest.raises(ErrorReply) as info:
        r.source.set_current_ua(100)  # 6 W in the small focus: the device's limit is 4 W
    assert (info.value.code, info.value.meaning) == (40, "wattage error: above the power limit")
    assert (r.source.voltage_kv, r.source.current_ua) == (60.0, 30.0)  # the held set-points are unchanged
    assert r.wire.responder.respond(b"SVI") == [b"SVI 60 30\r"]


def test_an_action_the_device_refuses_in_its_state_is_error_10_naming_the_state(rig):
    r = rig(warmed_up=False)
    with pytest.raises(ErrorReply) as info:
        r.source._do_beam_on()  # past XRaySource.beam_on's own state check: the device's refusal
    assert info.value.code == 10
    assert str(info.value) == ("source 'tube': 'XON' was answered 'ERR 10 XON': error 10, state error: not accepted "
                               "in the present state; the device is in state 'warm-up needed'")


def test_reset_with_no_overload_is_refused_by_the_device_and_harmless(rig):
    r = rig()
    r.wire.lines.clear()
    r.source.reset()  # RST is answered ERR 10 RST: nothing to clear
    assert r.wire.lines[0] == b"RST" and b"SAR" in r.wire.lines
    assert r.source.read_state() is SourceState.STANDBY


def test_connect_to_a_freshly_powered_controller_sends_its_first_command_again(rig, caplog):
    with caplog.at_level(logging.INFO, "microct.drivers.hamamatsu"):
        r = rig(fresh=True)
    assert r.wire.lines == [b"TYP", b"TYP", b"SVI", b"SFC", b"SAT"]  # the first TYP was answered ERR 0 NOC
    assert r.source.identity == "L10711"
    assert "TYP answered 'ERR 0 NOC' (a freshly powered controller)" in caplog.text
    assert r.source.read_state() is SourceState.STANDBY


# -- wire faults ---------------------------------------------------------------------------------------------
def test_no_reply_is_a_timeout_naming_device_and_command(rig):
    r = rig(SHORT_REPLY)
    r.wire.fault = "silent"
    past_readback_age(r.source)
    with pytest.raises(DeviceTimeoutError, match=r"source 'tube': no complete reply to 'SAR' within 0.2 s"):
        r.source.read_state()


def test_partial_reply_is_a_timeout_showing_it(rig):
    r = rig(SHORT_REPLY)
    r.wire.fault = "partial"
    with pytest.raises(DeviceTimeoutError, match=r"source 'tube': no complete reply to 'SIN'.*partial reply b'SIN 0'"):
        r.source.read_interlock_closed()


def test_garbled_reply_is_a_protocol_error_naming_command_and_reply(rig):
    r = rig()
    r.wire.fault = "garbled"
    past_readback_age(r.source)
    with pytest.raises(ProtocolError, match=r"source 'tube': 'SAR': garbled reply b'STS 2'"):
        r.source.read_voltage_kv()
    r.wire.fault = None
    assert r.source.read_state() is SourceState.STANDBY  # the next exchange is clean again


def test_server_gone_mid_session_is_a_clear_error_naming_device_and_command(rig):
    r = rig()
    r.server.stop()
    with pytest.raises(CommunicationError, match="source 'tube': (reading the reply to 'SIN' from|writing b'SIN' "
                                                 "to) .* failed"):
        r.source.read_interlock_closed()
    with pytest.raises(CommunicationError, match="source 'tube': cannot open serial port .* to send 'SIN'"):
        r.source.read_interlock_closed()  # the next exchange tries to re-open the port: still gone


def test_the_same_codec_runs_over_visa():
    """The driver is codec + transport: given a VISA transport (TCPIP SOCKET, CR both ways) in place of the
    serial one, it drives the same simulated tube."""
    with WireServer(HamamatsuResponder(**SIM), "hamamatsu") as server:
        visa = VisaTransport(f"TCPIP::127.0.0.1::{server.serve_tcp()}::SOCKET",
                             VisaSettings(read_terminator="\r", write_terminator="\r", timeout_s=0.5), "source 'tube'")
        with HamamatsuSource("tube", OPTIONS, transport=visa) as source:
            assert source.identity == "L10711"
            source.configure(voltage_kv=90, current_ua=40, spot_mode="middle")
            source.beam_on()
            time.sleep(0.01)  # the ramps end
            source.refresh()
            assert source.read_state() is SourceState.BEAM_ON
            assert (source.read_voltage_kv(), source.read_current_ua()) == (90.0, 40.0)
        assert server.responder.source.read_state() is SourceState.STANDBY  # close() switched the beam off


# -- the command line --------------------------------------------------------------------------------------------
def test_sim_serve_prints_a_tcp_url_a_driver_can_use():
    with sim_serve("hamamatsu", "model=L9181-02") as port:
        source = HamamatsuSource.from_config("tube", HamamatsuOptions(model="L9181-02", timeout_s=2.0),
                                             f"socket://127.0.0.1:{port}", DriverContext())
        with source:
            assert source.identity == "L9181-02"
            assert source.read_state() is SourceState.WARMUP_NEEDED


def test_sim_serve_on_a_pty_prints_the_device_path():
    with sim_served("hamamatsu", "warmed_up=true", extra=("--pty",)) as path:
        assert path.startswith("/dev/pts/")
        with build(path) as source:
            assert source.identity == "L10711"
            assert source.read_state() is SourceState.STANDBY


def test_sim_serve_with_a_fault_file_plays_the_faults_on_the_wire(tmp_path):
    faults = tmp_path / "faults.toml"
    faults.write_text('seed = 3\n[[faults]]\nkind = "reply_timeout"\ndevice = "source"\nprobability = 1.0\n')
    with sim_serve("hamamatsu", "model=L9181-02", extra=("--faults", str(faults))) as port:
        options = HamamatsuOptions(model="L9181-02", timeout_s=0.3)
        source = HamamatsuSource.from_config("tube", options, f"socket://127.0.0.1:{port}", DriverContext())
        with pytest.raises(DeviceTimeoutError):
            source.connect()  # the first request meets the fault: no reply
        with source:  # it fired once (repeat = 1): the link answers again
            assert source.identity == "L9181-02"


def test_sim_serve_names_a_bad_fault_file_key(tmp_path, capsys):
    faults = tmp_path / "faults.toml"
    faults.write_text('[[faults]]\nkind = "arc"\ndevice = "rotation"\nat_s = 1.0\n')
    assert main(["sim", "serve", "hamamatsu", "--tcp", "0", "--faults", str(faults)]) == 2
    assert "faults.0.device" in capsys.readouterr().err
