"""HamamatsuSource talking to HamamatsuResponder through a WireServer, over a pty and over TCP:
the source contract, warm-up, interlock, overload, wire faults and `microct sim serve hamamatsu`."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import ClassVar

import pytest

from scan_helpers import sim_serve, sim_served

from microct.cli import main
from microct.devices.source import SourceState
from microct.drivers.hamamatsu import HamamatsuOptions, HamamatsuSource
from microct.errors import (CommunicationError, DeviceStateError, DeviceTimeoutError, InterlockError, MicroCTError,
                            ProtocolError)
from microct.devices.base import DriverContext
from microct.simulators.hamamatsu import HamamatsuResponder
from microct.simulators.wire import WireServer
from microct.testing.contracts import SourceContract
from microct.transport import VisaSettings, VisaTransport

# A fast tube: ramps in a millisecond, a warm-up of 50 ms.
SIM = {"seed": 1, "warmed_up": True, "warmup_s": 0.05, "ramp_kv_per_s": 1e5, "ramp_ua_per_s": 1e5}
OPTIONS = HamamatsuOptions(model="L10711", timeout_s=0.2)


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


# -- the contract, over both links ---------------------------------------------------------------------------
class _ContractOverTheWire(SourceContract):
    link: ClassVar[str]
    poll_interval_s = 0.01
    settle_timeout_s = 5.0

    @pytest.fixture(scope="class")
    @classmethod
    def url(cls):
        """One simulated tube per class: a server stops in up to 50 ms, per test that adds up."""
        with WireServer(HamamatsuResponder(**SIM), "hamamatsu") as server:
            yield server.serve_serial(cls.link)

    @pytest.fixture
    def new_device(self, url):
        return lambda: build(url)

    @pytest.fixture
    def source(self, new_device):
        source = new_device()
        source.connect()
        source.beam_off()  # whatever the previous test left: standby
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
        made.append(Rig(server, wire, build(server.serve_serial(request.param), **(options or {}))))
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
    assert r.wire.responder.respond(b"XON") == [b"ERR\r"]  # the device refuses X-rays before warm-up
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


@pytest.mark.parametrize(("request_line", "why"), [
    (b"FOO", "unknown command"),
    (b"HIV 80", "not zero padded"),
    (b"HIV abc", "not a number"),
    (b"HIV 161", "above the L10711 range"),
    (b"CFS 7", "no such focus code"),
    (b"STS 1", "a query takes no argument"),
    (b"XON 1", "an action takes no argument"),
])
def test_the_simulator_answers_err_like_the_device(request_line, why):
    assert HamamatsuResponder(**SIM).respond(request_line) == [b"ERR\r"], why


def test_the_simulator_refuses_a_power_above_the_focus_mode_limit():
    responder = HamamatsuResponder(**SIM)
    assert responder.respond(b"CFS 0") == [b"CFS 0\r"]
    assert responder.respond(b"HIV 100") == [b"HIV 100\r"]
    assert responder.respond(b"CUR 050") == [b"ERR\r"]  # 5 W > the small focus's 4 W
    assert responder.respond(b"CUR 040") == [b"CUR 040\r"]
    assert responder.respond(b"SVI") == [b"SVI 100 40\r"]


# -- wire faults ---------------------------------------------------------------------------------------------
def test_no_reply_is_a_timeout_naming_device_and_command(rig):
    r = rig()
    r.wire.fault = "silent"
    past_readback_age(r.source)
    with pytest.raises(DeviceTimeoutError, match=r"source 'tube': no complete reply to 'SAR' within 0.2 s"):
        r.source.read_state()


def test_partial_reply_is_a_timeout_showing_it(rig):
    r = rig()
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
