"""The VISA transport over real pyvisa-py TCPIP SOCKET sessions to a local server."""

from __future__ import annotations

import logging
import threading
import time
from importlib.resources import files

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


def test_every_exchange_is_logged_at_debug(server, caplog):
    resource, _ = server
    transport = VisaTransport(resource, LF, "pi")
    transport.open()
    with caplog.at_level(logging.DEBUG, logger="microct.transport"):
        transport.query(b"POS? 1")
    transport.close()
    assert caplog.messages == ["pi > b'POS? 1\\n'", "pi < [b'E POS? 1']"]


@pytest.mark.parametrize("resource", ["GPIB0::8::INSTR", "TCPIP0::localhost::inst0::INSTR"])
def test_gpib_and_vxi11_resources_of_another_installed_visa_library(resource):
    """pyvisa-sim ("@sim") and its built-in devices: a library whose GPIB and INSTR sessions cannot discard
    their read buffer (as pyvisa-py's own GPIB and VXI-11 sessions cannot)."""
    transport = VisaTransport(resource, VisaSettings(backend="@sim", timeout_s=0.2), "gen")
    transport.open()
    assert transport.query(b"?IDN") == [b"LSG Serial #1234"]
    assert transport.query(b"!FREQ 12.50") == [b"OK"]
    assert transport.query(b"?FREQ") == [b"12.50"]
    with pytest.raises(DeviceTimeoutError, match="gen: no complete reply to '\\*RST' within 0.2 s"):
        transport.query(b"*RST")  # a command without a reply
    assert transport.query(b"?IDN") == [b"LSG Serial #1234"]
    transport.close()


def test_one_session_per_visa_library_and_resource():
    defaults = f"{files('pyvisa_sim').joinpath('default.yaml')}@sim"  # the same devices, as another library
    first, same, other = (VisaTransport("GPIB0::8::INSTR", VisaSettings(backend=backend), name)
                          for backend, name in (("@sim", "a"), ("@sim", "b"), (defaults, "c")))
    for transport in (first, same, other):
        transport.open()
    assert first._session is same._session
    assert other._session is not first._session
    for transport in (first, same, other):
        transport.close()


def test_unreachable_resource_and_unknown_library():
    unreachable = VisaTransport("TCPIP::127.0.0.1::1::SOCKET", LF, "pi")
    unreachable.open()  # pyvisa-py connects at the first exchange
    with pytest.raises(CommunicationError, match="pi: writing b'ping' to TCPIP::127.0.0.1::1::SOCKET failed"):
        unreachable.query(b"ping")
    unreachable.close()
    with pytest.raises(CommunicationError, match="cannot load the VISA library '/no/such/libvisa.so'"):
        VisaTransport("TCPIP::127.0.0.1::1::SOCKET", VisaSettings(backend="/no/such/libvisa.so"), "pi").open()


def test_ivi_selects_the_vendor_visa_library():
    from pyvisa.ctwrapper.highlevel import IVIVisaLibrary

    if IVIVisaLibrary.get_library_paths():
        pytest.skip("a vendor VISA library is installed here: '@ivi' would load it")
    with pytest.raises(CommunicationError, match="pi: cannot open VISA resource GPIB0::5::INSTR: cannot load the "
                                                 "VISA library '@ivi'"):
        VisaTransport("GPIB0::5::INSTR", VisaSettings(backend="@ivi"), "pi").open()
