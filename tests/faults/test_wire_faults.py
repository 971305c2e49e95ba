"""Request faults played by a WireServer (the same for every protocol), the transports re-opening a
dropped link on the next request, and how the wire simulators route faults to the devices they serve."""

from __future__ import annotations

import re
import time

import pytest
from matrix_helpers import no_pause_after_closing_a_socket  # noqa: F401  (an autouse fixture)

from microct.drivers.pi_gcs.driver import PIAxis, PIOptions
from microct.drivers.zaber.driver import ZaberAxis, ZaberOptions
from microct.errors import CommunicationError, ConfigurationError, DeviceFaultError, DeviceTimeoutError, ProtocolError
from microct.simulators.epics_beamline import start_beamline
from microct.simulators.faults import FaultSchedule
from microct.simulators.pi_gcs import PIResponder
from microct.simulators.wire import NOISE, WireServer
from microct.simulators.zaber import ZaberResponder
from microct.testing.exchange import EchoResponder
from microct.transport import SerialSettings, SerialTransport, VisaSettings, VisaTransport

TIMEOUT_S = 0.2




def echo_server(*faults: dict, garble: str = "corrupt") -> tuple[WireServer, EchoResponder, FaultSchedule]:
    schedule = FaultSchedule(faults)
    echo = EchoResponder()
    return WireServer(echo, "echo", schedule.device("source"), garble), echo, schedule


def serial_link(server: WireServer, name: str = "tube") -> SerialTransport:
    transport = SerialTransport(server.serve_serial("tcp"), SerialSettings(timeout_s=TIMEOUT_S), name)
    transport.open()
    return transport


def visa_link(server: WireServer, name: str = "tube") -> VisaTransport:
    transport = VisaTransport(f"TCPIP::127.0.0.1::{server.serve_tcp()}::SOCKET",
                              VisaSettings(timeout_s=TIMEOUT_S, read_terminator="\r", write_terminator="\r\n"), name)
    transport.open()
    return transport


@pytest.mark.parametrize("kind, garble, error, match", [
    ("reply_timeout", "corrupt", DeviceTimeoutError, r"no complete reply to 'b' within 0.2 s$"),
    ("garbled_reply", "partial", DeviceTimeoutError, r"no complete reply to 'b' within 0.2 s \(partial reply b'ECH'\)"),
    ("disconnect", "corrupt", CommunicationError, r"reading the reply to 'b' .* socket disconnected"),
])
def test_a_request_fault_hits_its_request_only_and_the_link_works_after(kind, garble, error, match):
    server, echo, schedule = echo_server({"kind": kind, "device": "source", "at_s": 0.0, "count": 1}, garble=garble)
    with server:
        transport = serial_link(server)
        with pytest.raises(error, match=match):
            transport.query(b"b")
        assert transport.query(b"c") == [b"ECHO c"]  # a dropped link is re-opened by this request
        transport.close()
    assert [(hit.what, hit.fault.kind) for hit in schedule.hits] == [("request", kind)]
    assert echo.clients == (2 if kind == "disconnect" else 1)


def test_a_garbled_reply_starts_with_line_noise_and_keeps_its_terminator():
    server, _, _ = echo_server({"kind": "garbled_reply", "device": "source", "at_s": 0.0})
    with server:
        transport = serial_link(server)
        assert transport.query(b"abc") == [NOISE + b"CHO abc"]
        transport.close()


def test_on_a_pty_a_disconnect_is_silence_for_its_duration():
    down_s = 1.0  # two 0.2 s time-outs fit in it with room for a loaded machine
    server, _, schedule = echo_server({"kind": "disconnect", "device": "source", "at_s": 0.0, "duration_s": down_s})
    with server:
        transport = SerialTransport(server.serve_pty(), SerialSettings(timeout_s=TIMEOUT_S), "tube")
        transport.open()
        with pytest.raises(DeviceTimeoutError):
            transport.query(b"a")
        with pytest.raises(DeviceTimeoutError):
            transport.query(b"b")  # still within the second the link is down
        assert [hit.what for hit in schedule.hits] == ["request", "request"]
        went_down_s = schedule.hits[0].time_s  # when the server read "a" (its clock: time.monotonic())
        time.sleep(max(0.0, went_down_s + down_s + 0.05 - time.monotonic()))  # until the link is back
        assert transport.query(b"c") == [b"ECHO c"]
        transport.close()


def test_a_whole_schedule_needs_a_responder_that_names_each_lines_device():
    with pytest.raises(TypeError, match="EchoResponder does not tell which device a line is for"):
        WireServer(EchoResponder(), faults=FaultSchedule())
    with pytest.raises(ValueError, match="garble='noise'"):
        WireServer(EchoResponder(), faults=FaultSchedule().device("source"), garble="noise")


# -- the transports: a dropped link comes back at the next request -------------------------------------------
def test_a_serial_port_dropped_once_is_reopened_for_every_transport_sharing_it():
    server, echo, _ = echo_server({"kind": "disconnect", "device": "source", "at_s": 0.0})
    with server:
        url = server.serve_serial("tcp")
        rotation, sample_out = (SerialTransport(url, SerialSettings(timeout_s=TIMEOUT_S), name)
                                for name in ("rotation", "sample_out"))
        rotation.open()
        sample_out.open()
        with pytest.raises(CommunicationError, match="rotation: reading the reply"):
            rotation.query(b"a")
        assert sample_out.query(b"b") == [b"ECHO b"]  # the shared port, re-opened by this request
        assert rotation.query(b"c") == [b"ECHO c"]
        rotation.close()
        sample_out.close()
    assert echo.clients == 2


def test_a_visa_socket_closed_by_the_device_is_a_lost_link_not_a_timeout_and_is_reopened():
    server, echo, _ = echo_server({"kind": "disconnect", "device": "source", "at_s": 0.0})
    with server:
        transport = visa_link(server)
        with pytest.raises(CommunicationError,
                           match="tube: reading the reply to 'a' .* the device closed the connection"):
            transport.query(b"a")
        assert transport.query(b"b") == [b"ECHO b"]
        transport.close()
    assert echo.clients == 2


@pytest.mark.parametrize("link", [serial_link, visa_link], ids=["serial", "VISA"])
def test_while_the_device_is_away_each_request_tries_once_and_the_link_comes_back_with_it(link):
    server, _, _ = echo_server({"kind": "disconnect", "device": "source", "at_s": 0.0})
    transport = link(server)
    port = int(re.search(r":(\d+)(::SOCKET)?$", getattr(transport, "url", None) or transport.resource_name)[1])
    with pytest.raises(CommunicationError):
        transport.query(b"a")
    server.stop()
    for _ in range(2):  # one attempt to re-open per request, each failing: the device is away
        with pytest.raises(CommunicationError, match="tube: .*(re-opening it after: tube: reading|failed)"):
            transport.query(b"b")
    with WireServer(EchoResponder(), "echo again") as again:
        again.serve_tcp(port)
        assert transport.query(b"c") == [b"ECHO c"]
    transport.close()


# -- the wire simulators route faults to the device each line is for ----------------------------------------
def test_zaber_request_faults_hit_the_addressed_device_and_a_limit_switch_shows_as_wl():
    schedule = FaultSchedule([{"kind": "reply_timeout", "device": "sample_out", "at_s": 0.0},
                              {"kind": "limit_switch", "device": "rotation", "at_s": 0.0}])
    with WireServer(ZaberResponder(faults=schedule), "zaber", schedule) as server:
        url = server.serve_serial("tcp")
        serial = {"timeout_s": TIMEOUT_S}
        rotation = ZaberAxis("rotation", ZaberOptions(device=1, serial=serial), url)
        sample_out = ZaberAxis("sample_out", ZaberOptions(device=2, stage="X-LSM100A", serial=serial), url)
        rotation.connect()  # device 1's lines pass
        with pytest.raises(DeviceTimeoutError, match="Zaber device 2"):
            sample_out.connect()
        sample_out.connect()
        with pytest.raises(DeviceFaultError, match=r"reports WL \(unexpected limit trigger\)"):
            rotation.move_to(10.0, timeout_s=2.0)
        assert 0.0 < rotation.read_position() < 10.0  # stopped on the way
        rotation.move_to(1.0, timeout_s=2.0)  # the next move clears the flag
        rotation.close()
        sample_out.close()


def test_pi_err_after_a_command_counts_for_its_axis_and_a_limit_switch_is_error_216():
    schedule = FaultSchedule([{"kind": "garbled_reply", "device": "rotation", "at_s": 0.0},
                              {"kind": "limit_switch", "device": "rotation", "at_s": 0.3}])
    start = time.monotonic()
    with WireServer(PIResponder(faults=schedule), "pi", schedule) as server:
        axis = PIAxis("rotation", PIOptions(axis="1", visa={"timeout_s": TIMEOUT_S}),
                      f"TCPIP::127.0.0.1::{server.serve_tcp()}::SOCKET")
        # *IDN? names no axis: it passes; the first request for axis 1 is TMN? 1 (connect sets nothing)
        with pytest.raises(ProtocolError, match="to 'TMN\\? 1'"):
            axis.connect()
        axis.connect()
        axis.home(timeout_s=2.0)  # before 0.3 s: the limit switch waits for the next move
        time.sleep(max(0.0, start + 0.35 - time.monotonic()))
        with pytest.raises(DeviceFaultError, match="error 216"):
            axis.move_to(90.0, timeout_s=2.0)
        assert 0.0 < axis.read_position() < 90.0
        axis.move_to(1.0, timeout_s=2.0)
        axis.close()


def test_the_beamline_refuses_request_faults_it_cannot_play_over_channel_access():
    with pytest.raises(ConfigurationError, match=r"request faults .*\(disconnect on detector\)"):
        start_beamline("NOPE:", faults=FaultSchedule([{"kind": "disconnect", "device": "detector", "at_s": 1.0}]))
