"""The shared frame readers of microct.transport.frames: a folder of frame files polled on the device's
clock, and a TCP frame stream re-opened at the next request after a loss."""

from __future__ import annotations

import socket
import threading

import pytest

from microct.clock import SimulatedClock
from microct.driverkit import FolderReader, StreamReader
from microct.errors import CommunicationError, ConfigurationError, DeviceTimeoutError, ProtocolError

FRAME = bytes(range(32))


# -- the folder reader --------------------------------------------------------------------------------------
def test_a_frame_appearing_late_is_read_once_complete(tmp_path):
    clock = SimulatedClock()
    reader = FolderReader(tmp_path, clock=clock, poll_s=0.01)
    path = tmp_path / "frame_7.raw"
    clock.call_later(0.05, lambda: path.write_bytes(FRAME[:10]))  # the writer has begun ...
    clock.call_later(0.08, lambda: path.write_bytes(FRAME))        # ... and ends
    decoded = []

    def decode(file):
        decoded.append(file.read_bytes())
        return "frame 7"

    assert reader.read("frame_7.raw", decode, timeout_s=1.0, expected_bytes=len(FRAME)) == "frame 7"
    assert decoded == [FRAME]  # decoded once, complete
    assert 0.08 <= clock.monotonic() <= 0.08 + 0.01 + 1e-9  # the first look after it was complete


def test_without_a_size_a_frame_is_complete_once_it_exists(tmp_path):
    clock = SimulatedClock()
    reader = FolderReader(tmp_path, clock=clock, poll_s=0.01)
    clock.call_later(0.03, lambda: (tmp_path / "a.raw").write_bytes(b"xy"))
    assert reader.read("a.raw", lambda path: path.read_bytes(), timeout_s=1.0) == b"xy"


def test_a_frame_that_never_comes_times_out_naming_it_and_the_time_waited(tmp_path):
    clock = SimulatedClock()
    reader = FolderReader(tmp_path, clock=clock, poll_s=0.01)
    with pytest.raises(DeviceTimeoutError, match=r"^frame 7 did not appear within 0\.5\d* s$"):
        reader.read("frame_7.raw", bytes, timeout_s=0.5, what="frame 7")
    assert 0.5 <= clock.monotonic() < 0.52
    with pytest.raises(DeviceTimeoutError, match=rf"^frame file {tmp_path}/b\.raw did not appear"):
        reader.read("b.raw", bytes, timeout_s=0.1)  # named by its path by default


def test_a_frame_that_stays_short_times_out_saying_how_short(tmp_path):
    clock = SimulatedClock()
    reader = FolderReader(tmp_path, clock=clock, poll_s=0.01)
    (tmp_path / "c.raw").write_bytes(FRAME[:10])
    start = clock.monotonic()
    clock.sleep(0.2)  # the series started earlier: the time counts from there
    with pytest.raises(DeviceTimeoutError, match=r"^frame c stayed incomplete \(10 of 32 bytes\) within 0\.3\d* s$"):
        reader.read("c.raw", bytes, timeout_s=0.3, since=start, expected_bytes=32, what="frame c")
    assert clock.monotonic() == pytest.approx(0.3, abs=0.011)


def test_check_ends_the_wait_and_decode_errors_pass_through(tmp_path):
    reader = FolderReader(tmp_path, clock=SimulatedClock(), poll_s=0.01)

    def stopped():
        raise RuntimeError("stopped")

    with pytest.raises(RuntimeError, match="stopped"):
        reader.read("d.raw", bytes, timeout_s=1.0, check=stopped)
    (tmp_path / "d.raw").write_bytes(b"x")

    def bad(path):
        raise ProtocolError(f"{path.name}: not a frame")

    with pytest.raises(ProtocolError, match="d.raw: not a frame"):
        reader.read("d.raw", bad, timeout_s=1.0)

    def unreadable(path):
        raise PermissionError("denied")

    with pytest.raises(CommunicationError, match=rf"^frame folder {tmp_path}: reading d\.raw failed: denied"):
        reader.read("d.raw", unreadable, timeout_s=1.0)


def test_names_and_remove(tmp_path):
    reader = FolderReader(tmp_path, description="image folder X")
    (tmp_path / "e.raw").write_bytes(b"")
    assert reader.names() == ["e.raw"]
    reader.remove("e.raw", "never-there.raw")
    assert reader.names() == []
    with pytest.raises(CommunicationError, match="^image folder X cannot be read"):
        FolderReader(tmp_path / "absent", description="image folder X").names()


def test_real_time_polling_waits_for_a_file_written_by_another_thread(tmp_path):
    reader = FolderReader(tmp_path, poll_s=0.002)  # the real clock
    timer = threading.Timer(0.05, (tmp_path / "f.raw").write_bytes, args=(FRAME,))
    timer.start()
    try:
        assert reader.read("f.raw", lambda path: path.read_bytes(), timeout_s=5.0, expected_bytes=32) == FRAME
    finally:
        timer.join()


# -- the stream reader --------------------------------------------------------------------------------------
@pytest.fixture
def sender():
    """A listening socket on 127.0.0.1 standing in for the frame sender."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(5.0)
        yield server


def reader_to(sender: socket.socket) -> StreamReader:
    return StreamReader(f"127.0.0.1:{sender.getsockname()[1]}", connect_timeout_s=1.0)


def test_a_lost_connection_is_reopened_at_the_next_request(sender):
    reader = reader_to(sender)
    reader.open()
    first, _ = sender.accept()
    reader.send(b"T1\r", "frame 1")
    assert first.recv(16) == b"T1\r"
    first.sendall(FRAME[:5])
    first.close()  # the sender goes away mid-frame
    with pytest.raises(CommunicationError, match=r"^frame stream 127\.0\.0\.1:\d+: the sender closed the connection "
                                                 r"while frame 1 was awaited$"):
        reader.peek(32, "frame 1", 1.0)
    assert not reader.is_open
    reader.send(b"T2\r", "frame 2")  # a new connection, and nothing left of the old one
    second, _ = sender.accept()
    with second:
        assert second.recv(16) == b"T2\r"
        second.sendall(FRAME)
        assert reader.peek(32, "frame 2", 1.0) == FRAME
        assert reader.take(32) == FRAME
    reader.close()


def test_a_request_while_the_sender_is_away_says_so_and_a_later_one_connects(sender):
    port = sender.getsockname()[1]
    reader = reader_to(sender)
    reader.open()
    connection, _ = sender.accept()
    connection.close()
    with pytest.raises(CommunicationError, match="closed the connection"):
        reader.peek(1, "frame 1", 1.0)
    sender.close()  # the sender is gone for now
    with pytest.raises(CommunicationError, match=r"cannot connect: .* \(re-opening it for frame 2\)$"):
        reader.send(b"T2\r", "frame 2")
    with socket.create_server(("127.0.0.1", port)) as back:  # it comes back on the same port
        back.settimeout(5.0)
        reader.send(b"T3\r", "frame 3")
        connection, _ = back.accept()
        with connection:
            assert connection.recv(16) == b"T3\r"
    reader.close()


def test_a_time_out_keeps_the_connection_and_the_bytes_received(sender):
    reader = reader_to(sender)
    reader.open()
    connection, _ = sender.accept()
    with connection:
        connection.sendall(FRAME[:20])
        with pytest.raises(DeviceTimeoutError, match=r"^frame 4 did not come on the frame stream 127\.0\.0\.1:\d+ "
                                                      r"within 0\.05 s$"):
            reader.peek(32, "frame 4", 0.05)
        assert reader.is_open
        connection.sendall(FRAME[20:])
        assert reader.peek(16, "frame 4", 1.0) == FRAME[:16]  # a header, inspected first
        assert reader.peek(32, "frame 4", 1.0, deadline=reader.deadline(1.0)) == FRAME
        assert reader.take(32) == FRAME
    reader.close()


def test_drop_closes_so_that_the_next_request_starts_afresh(sender):
    reader = reader_to(sender)
    reader.open()
    first, _ = sender.accept()
    first.sendall(b"garbage")
    reader.peek(7, "frame 1", 1.0)
    error = reader.drop(ProtocolError("out of step"))
    assert isinstance(error, ProtocolError) and not reader.is_open
    reader.send(b"T2\r", "frame 2")
    second, _ = sender.accept()
    with first, second:
        assert second.recv(16) == b"T2\r"
        second.sendall(FRAME[:4])
        assert reader.peek(4, "frame 2", 1.0) == FRAME[:4]  # the old garbage is gone
    reader.close()


def test_a_closed_reader_is_not_reopened_by_a_request():
    reader = StreamReader("127.0.0.1:9", description="frame stream X")
    with pytest.raises(CommunicationError, match="^frame stream X is not open$"):
        reader.send(b"T1\r", "frame 1")
    with pytest.raises(ConfigurationError, match="expected 'host:port'"):
        StreamReader("127.0.0.1")
