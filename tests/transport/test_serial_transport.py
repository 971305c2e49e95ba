"""The serial transport over scripted ports, pseudo-terminals and TCP."""

from __future__ import annotations

import socket
import threading

import pytest

from microct.errors import CommunicationError, DeviceTimeoutError
from microct.simulators.wire import WireServer
from microct.testing.exchange import EchoResponder, Raw, ScriptedPort, assert_stale_replies_dropped, scripted_transport
from microct.transport import SerialSettings, SerialTransport

FAST = SerialSettings(timeout_s=0.2)




def test_query_writes_terminated_bytes_and_strips_the_reply_terminator():
    transport, port = scripted_transport([(b"STS", b"STS 2")], FAST)
    assert transport.query(b"STS") == [b"STS 2"]
    port.assert_done()


def test_stale_input_is_discarded_before_a_query():
    transport, port = scripted_transport([(b"A", (b"late", b"A 1")), (b"B", b"B 2")], FAST)
    transport.write(b"A")  # the reply is never read: it is stale by the next query
    assert transport.query(b"B") == [b"B 2"]


@pytest.fixture
def echo():
    return EchoResponder()


@pytest.fixture(params=["pty", "tcp"])
def echo_transport(request, echo):
    """A SerialTransport open to ``echo`` over a pseudo-terminal or TCP."""
    with WireServer(echo) as server:
        transport = SerialTransport(server.serve_serial(request.param), FAST, request.param)
        transport.open()
        yield transport
        transport.close()


def test_everything_waiting_is_discarded_before_a_query_on_real_ports(echo_transport, echo):
    assert_stale_replies_dropped(echo_transport, echo)


def test_line_settings_reach_pyserial():
    opened = {}

    def factory(url, **settings):
        opened.update(settings, url=url)
        return ScriptedPort([])

    settings = SerialSettings(baudrate=38400, bytesize=7, parity="E", stopbits=2, xonxoff=True, rtscts=True,
                              timeout_s=0.3)
    transport = SerialTransport("/dev/ttyUSB7", settings, "tube", port_factory=factory)
    transport.open()
    transport.close()
    assert opened == {"url": "/dev/ttyUSB7", "baudrate": 38400, "bytesize": 7, "parity": "E", "stopbits": 2,
                      "xonxoff": True, "rtscts": True, "dsrdtr": False, "timeout": 0.3, "write_timeout": 0.3}


def test_partial_reply_is_reported_in_the_timeout():
    transport, port = scripted_transport([(b"GET", (b"#1", b"#2", Raw(b"@0")))], FAST)
    with pytest.raises(DeviceTimeoutError, match=r"partial reply b'@0'"):
        transport.query(b"GET", replies=3)


def test_no_reply_is_a_timeout_naming_the_command():
    transport, _ = scripted_transport([(b"XON", None)], FAST)
    with pytest.raises(DeviceTimeoutError, match="no complete reply to 'XON' within 0.2 s"):
        transport.query(b"XON")


def test_a_missing_port_is_a_communication_error():
    with pytest.raises(CommunicationError, match="cannot open serial port /dev/does-not-exist"):
        SerialTransport("/dev/does-not-exist", FAST, "tube").open()


def test_transports_on_one_url_share_the_port_and_close_it_with_the_last(tmp_path):
    with WireServer(EchoResponder()) as server:
        url = f"socket://127.0.0.1:{server.serve_tcp()}"
        first, second = SerialTransport(url, FAST, "a"), SerialTransport(url, FAST, "b")
        first.open()
        second.open()
        assert first._port is second._port
        first.close()
        first.close()  # twice is harmless
        assert second.query(b"hi") == [b"ECHO hi"]
        second.close()
        with pytest.raises(CommunicationError, match="not open"):
            second.query(b"hi")


def test_wire_server_round_trips_and_serialises_threads(echo_transport):
    assert echo_transport.query(b"SPLIT", replies=2) == [b"#one", b"#two"]
    errors = []

    def hammer(tag: str) -> None:
        for i in range(50):
            reply = echo_transport.query(f"{tag}{i}".encode())
            if reply != [f"ECHO {tag}{i}".encode()]:
                errors.append(reply)

    threads = [threading.Thread(target=hammer, args=(tag,)) for tag in "xyz"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_server_gone_mid_session_gives_a_clear_error():
    server = WireServer(EchoResponder())
    url = server.serve_serial("tcp")
    transport = SerialTransport(url, FAST, "tube")
    transport.open()
    assert transport.query(b"ping") == [b"ECHO ping"]
    server.stop()
    with pytest.raises(CommunicationError, match="tube: reading the reply to 'ping' from socket://.* failed"):
        transport.query(b"ping")
    with pytest.raises(CommunicationError, match=r"tube: cannot open serial port socket://\S+ to send 'pong': .*"
                                                 r"\(re-opening it after: tube: reading the reply to 'ping'"):
        transport.query(b"pong")  # each exchange tries to re-open the lost link once
    transport.close()


def test_reconnect_after_the_device_came_back(caplog):
    server = WireServer(EchoResponder())
    port = server.serve_tcp()
    transport = SerialTransport(f"socket://127.0.0.1:{port}", FAST, "tube")
    transport.open()
    server.stop()
    with pytest.raises((CommunicationError, DeviceTimeoutError)):
        transport.query(b"ping")
    with WireServer(EchoResponder()) as again:
        again.serve_tcp(port)
        transport.reconnect()
        with caplog.at_level("DEBUG", logger="microct.transport"):
            assert transport.query(b"ping") == [b"ECHO ping"]
    assert any("tube > b'ping\\r'" in m for m in caplog.messages)  # every exchange is logged at DEBUG
    transport.close()


def test_the_wire_server_listens_on_loopback_only():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # sends nothing: the kernel picks the interface it would use
        except OSError:
            pytest.skip("no network interface besides loopback")
        address = probe.getsockname()[0]
    if address.startswith("127."):
        pytest.skip("no network interface besides loopback")
    with WireServer(EchoResponder()) as server:
        port = server.serve_tcp()
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((address, port), timeout=1.0)
