"""The VISA transport over real pyvisa-py TCPIP SOCKET sessions to a local server."""

from __future__ import annotations

import threading
import time

import pytest

from microct.errors import CommunicationError, DeviceTimeoutError
from microct.simulators.wire import WireServer
from microct.transport import VisaSettings, VisaTransport

LF = VisaSettings(timeout_s=0.3)


class Device:
    """LF-terminated lines; 'MULTI' answers in PI's style (continuation lines end in ' \\n');
    'SILENT' gets no answer; STX…ETX frames are echoed as frames."""

    request_terminators = b"\n\x03"

    def respond(self, line: bytes) -> list[bytes]:
        if line.startswith(b"\x02"):
            return [line + b"\x03"]
        if line == b"MULTI":
            return [b"1=1 \n", b"2=0 \n", b"3=1\n"]
        if line == b"SILENT":
            return []
        return [b"E " + line + b"\n"]


@pytest.fixture
def server():
    with WireServer(Device(), "visa-device") as server:
        yield f"TCPIP::127.0.0.1::{server.serve_tcp()}::SOCKET", server


def test_query_and_multi_line_replies(server):
    resource, _ = server
    transport = VisaTransport(resource, LF, "pi")
    transport.open()
    assert transport.query(b"POS? 1") == [b"E POS? 1"]
    assert transport.query_until(b"MULTI", lambda line: not line.endswith(b" ")) == [b"1=1 ", b"2=0 ", b"3=1"]
    transport.close()
    transport.close()


def test_binary_framing_passes_unchanged(server):
    resource, _ = server
    transport = VisaTransport(resource, VisaSettings(timeout_s=0.3, write_terminator="\x03",
                                                     read_terminator="\x03"), "spellman")
    transport.open()
    assert transport.query(b"\x0222,\xc3") == [b"\x0222,\xc3"]  # STX and a byte above 0x7F survive
    transport.close()


class Late(Device):
    """Answers 'SLOW' after 0.4 s: too late for a 0.3 s time-out."""

    def respond(self, line: bytes) -> list[bytes]:
        if line == b"SLOW":
            time.sleep(0.4)
        return super().respond(line)


def test_timeout_names_the_command_and_a_late_reply_is_not_taken_for_the_next(server):
    resource, _ = server
    transport = VisaTransport(resource, LF, "pi")
    transport.open()
    with pytest.raises(DeviceTimeoutError, match="pi: no complete reply to 'SILENT' within 0.3 s"):
        transport.query(b"SILENT")
    transport.close()
    with WireServer(Late()) as slow:
        transport = VisaTransport(f"TCPIP::127.0.0.1::{slow.serve_tcp()}::SOCKET", LF, "pi")
        transport.open()
        with pytest.raises(DeviceTimeoutError):
            transport.query(b"SLOW")
        time.sleep(0.2)  # the late reply arrives
        assert transport.query(b"next") == [b"E next"]
        transport.close()


def test_shared_session_and_threads(server):
    resource, _ = server
    first, second = VisaTransport(resource, LF, "a"), VisaTransport(resource, LF, "b")
    first.open()
    second.open()
    assert first._session is second._session
    errors = []

    def hammer(transport, tag):
        for i in range(50):
            if transport.query(f"{tag}{i}".encode()) != [f"E {tag}{i}".encode()]:
                errors.append(tag)

    threads = [threading.Thread(target=hammer, args=(t, tag)) for t, tag in ((first, "x"), (second, "y"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    first.close()
    second.close()


def test_server_gone_and_reconnect(server):
    resource, wire = server
    port = int(resource.split("::")[2])
    transport = VisaTransport(resource, LF, "pi")
    transport.open()
    wire.stop()
    with pytest.raises((CommunicationError, DeviceTimeoutError), match="pi"):
        transport.query(b"ping")
    with WireServer(Device()) as again:
        again.serve_tcp(port)
        transport.reconnect()
        assert transport.query(b"ping") == [b"E ping"]
    transport.close()


def test_unreachable_resource_and_unknown_library():
    unreachable = VisaTransport("TCPIP::127.0.0.1::1::SOCKET", LF, "pi")
    unreachable.open()  # pyvisa-py connects at the first exchange
    with pytest.raises(CommunicationError, match="pi: writing b'ping' to TCPIP::127.0.0.1::1::SOCKET failed"):
        unreachable.query(b"ping")
    unreachable.close()
    with pytest.raises(CommunicationError, match="cannot load the VISA library"):
        VisaTransport("TCPIP::127.0.0.1::1::SOCKET", VisaSettings(backend="/no/such/libvisa.so"), "pi").open()
