"""Serial transport on pyserial's ``serial_for_url``: a device (``/dev/ttyUSB0``, ``COM3``) or a URL
(``socket://127.0.0.1:7001``, ``loop://``, ``rfc2217://host:port``).

Replies are read in chunks of what has arrived (not byte by byte, as pyserial's
``readline`` does), up to the read terminator, within ``timeout_s`` for the
whole reply. On POSIX, where the port has a file descriptor (a device, ``socket://``),
the transport waits on it with ``select`` and reads and writes it directly (pyserial
opens it non-blocking): one system call per step, where pyserial's ``read`` and ``write``
add a ``select`` each. Other ports (``loop://``, ``rfc2217://``, Windows) go through
pyserial with its own timeout. Before a query everything waiting on the port is
discarded. Drivers on the same port share one pyserial object and one lock. Every
exchange is logged at DEBUG on the ``microct.transport`` logger.
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable
from typing import Any, Literal

import serial
from pydantic import Field, field_validator

from microct.errors import CommunicationError, DeviceTimeoutError
from microct.transport.base import LinkSettings, Transport, log
from microct.transport.links import LINKS, SharedLink

READ_CHUNK = 4096  # bytes asked for per read; a read returns what has arrived
MAX_STALE = 1 << 20  # bytes discarded before a query at most: a device that never stops talking is not waited out


class SerialSettings(LinkSettings):
    """Line settings of a serial link (driver options carry one of these; the driver fills in its
    device's defaults with ``with_defaults``). Everything but the terminators and the time-out is
    passed to pyserial as it is named there."""

    baudrate: int = Field(default=9600, gt=0, description="line speed (baud); a driver sets its device's default")
    bytesize: Literal[5, 6, 7, 8] = Field(default=8, description="data bits")
    parity: Literal["N", "E", "O", "M", "S"] = Field(default="N", description="none, even, odd, mark or space")
    stopbits: float = Field(default=1, description="1, 1.5 or 2")
    xonxoff: bool = Field(default=False, description="software flow control (XON/XOFF)")
    rtscts: bool = Field(default=False, description="hardware flow control (RTS/CTS)")
    dsrdtr: bool = Field(default=False, description="hardware flow control (DSR/DTR)")
    timeout_s: float = Field(default=1.0, gt=0, description="for a whole reply (s)")
    write_terminator: str = Field(default="\r", description="appended to every message sent; a driver sets its "
                                                             "device's")
    read_terminator: str = Field(default="\r", description="ends every reply; a driver sets its device's")

    @field_validator("stopbits")
    @classmethod
    def _stopbits(cls, value: float) -> float:
        if value not in (1, 1.5, 2):
            raise ValueError("allowed 1, 1.5 or 2")
        return value

    def pyserial_options(self) -> dict[str, Any]:
        """The keyword arguments of ``serial.serial_for_url`` (line settings, flow control, time-outs)."""
        return {"baudrate": self.baudrate, "bytesize": self.bytesize, "parity": self.parity,
                "stopbits": self.stopbits, "xonxoff": self.xonxoff, "rtscts": self.rtscts, "dsrdtr": self.dsrdtr,
                "timeout": self.timeout_s, "write_timeout": self.timeout_s}


class _Port(SharedLink):
    """One opened pyserial port, shared by every transport on the same URL."""

    def __init__(self, port: Any) -> None:
        super().__init__()
        self.buffer = bytearray()
        self.use(port)

    def use(self, port: Any) -> None:
        """Talk through ``port`` (a pyserial object, opened) from now on."""
        self.serial = port
        self.buffer.clear()
        self.lost = None
        self.fd = _descriptor(port)
        if self.fd is not None:
            port.timeout = 0  # non-blocking: the transport waits with select()

    def close(self) -> None:
        try:
            self.serial.close()
        except (serial.SerialException, OSError) as error:
            log.debug("closing a serial port: %s", error)


def _descriptor(port: Any) -> int | None:
    """The file descriptor of ``port`` where the transport reads and writes it itself (POSIX), else None."""
    if os.name != "posix":
        return None
    try:
        return port.fileno()
    except (AttributeError, OSError, ValueError, serial.SerialException):
        return None


class SerialTransport(Transport):
    """A serial link. ``port_factory`` (default ``serial.serial_for_url``) opens the pyserial object
    (a test puts a scripted port there; ``microct.testing.exchange``)."""

    def __init__(self, url: str, settings: SerialSettings | None = None, name: str = "",
                 port_factory: Callable[..., Any] = serial.serial_for_url) -> None:
        self.url = url
        self.settings = settings or SerialSettings()
        self.name = name or url
        self._factory = port_factory
        self._port: _Port | None = None
        self._write_terminator = self.settings.write_terminator.encode()
        self._read_terminator = self.settings.read_terminator.encode()

    # -- lifecycle --------------------------------------------------------------------------------
    def open(self) -> None:
        if self._port is not None:
            return
        self._port = LINKS.acquire(("serial", self.url), lambda: _Port(self._open_port()))
        log.debug("%s: opened %s", self.name, self.url)

    def _open_port(self, purpose: str = "", detail: str = "") -> Any:
        """A new pyserial object for the URL; CommunicationError (with ``purpose`` and ``detail``) if it cannot
        be opened."""
        try:
            return self._factory(self.url, **self.settings.pyserial_options())
        except (serial.SerialException, OSError, ValueError) as error:
            raise CommunicationError(f"{self.name}: cannot open serial port {self.url}{purpose}: {error}{detail}") \
                from None

    def close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            LINKS.release(("serial", self.url), port, _Port.close)

    def reconnect(self) -> None:
        """Close and reopen the port (after it vanished, e.g. a USB adapter unplugged), for every
        transport sharing it; CommunicationError if it cannot be opened."""
        port = self._port
        if port is None:
            self.open()
            return
        with port.lock:
            self._reopen(port)

    def _reopen(self, port: _Port, what: str = "") -> None:
        why = f" (re-opening it after: {port.lost})" if port.lost else ""
        port.close()
        port.use(self._open_port(f" to send {what!r}" if what else "", why))
        log.info("%s: re-opened %s%s", self.name, self.url, why)

    def _lost(self, port: _Port, error: CommunicationError) -> CommunicationError:
        """Mark the link lost (the next exchange re-opens it); returns ``error`` to raise."""
        port.lost = str(error)
        return error

    # -- transport primitives -------------------------------------------------------------------------
    def _send(self, message: bytes) -> None:
        port = self._require_open()
        data = message + self._write_terminator
        log.debug("%s > %r", self.name, data)
        try:
            if port.fd is None:
                port.serial.write(data)
            else:
                self._write_all(port.fd, data)
        except (serial.SerialException, OSError) as error:
            raise self._lost(port, CommunicationError(f"{self.name}: writing {message!r} to {self.url} failed: "
                                                      f"{error}")) from None

    def _write_all(self, fd: int, data: bytes) -> None:
        """Write ``data`` to the non-blocking descriptor, waiting for room at most ``timeout_s`` in all
        (a full output buffer: hardware flow control holding the line)."""
        deadline = time.monotonic() + self.settings.timeout_s
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not select.select([], [fd], [], remaining)[1]:
                    raise TimeoutError(f"the port took no data for {self.settings.timeout_s:g} s") from None

    def _receive(self, what: str) -> bytes:
        return self._read_line(self._require_open(), what)

    def _require_open(self) -> _Port:
        if self._port is None:
            raise CommunicationError(f"{self.name}: serial port {self.url} is not open")
        return self._port

    def _discard_stale_input(self) -> None:
        port = self._require_open()
        stale = bytes(port.buffer)
        port.buffer.clear()
        try:
            stale += self._waiting(port)
        except (serial.SerialException, OSError) as error:
            raise self._lost(port, CommunicationError(f"{self.name}: port {self.url} failed: {error}")) from None
        if stale:
            log.debug("%s: discarded stale input %r", self.name, stale)

    def _waiting(self, port: _Port) -> bytes:
        """Everything the port holds now (up to MAX_STALE bytes), without waiting."""
        stale = bytearray()
        if port.fd is None:
            while len(stale) < MAX_STALE and (waiting := port.serial.in_waiting):
                stale += port.serial.read(waiting)
            return bytes(stale)
        while len(stale) < MAX_STALE:
            try:
                chunk = os.read(port.fd, READ_CHUNK)
            except BlockingIOError:  # nothing (more) waiting on a socket
                break
            if not chunk:  # nothing (more) waiting on a tty; a socket closed at the device end shows at the reply
                break
            stale += chunk
        return bytes(stale)

    def _hung_up(self) -> ConnectionError:
        """End of stream on the descriptor: the device end closed the link (as pyserial words it)."""
        return ConnectionError("socket disconnected" if self.url.startswith("socket://")
                               else "the device returned no data although ready (device disconnected?)")

    def _read_line(self, port: _Port, what: str) -> bytes:
        terminator = self._read_terminator
        deadline = time.monotonic() + self.settings.timeout_s
        while True:
            end = port.buffer.find(terminator)
            if end >= 0:
                line = bytes(port.buffer[:end])
                del port.buffer[:end + len(terminator)]
                return line
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                partial = bytes(port.buffer)
                port.buffer.clear()
                detail = f" (partial reply {partial!r})" if partial else ""
                raise DeviceTimeoutError(f"{self.name}: no complete reply to {what!r} within "
                                         f"{self.settings.timeout_s:g} s{detail}")
            try:
                chunk = self._arrived(port, remaining)
            except (serial.SerialException, OSError, TypeError) as error:
                # pyserial raises TypeError when the port was closed under it
                raise self._lost(port, CommunicationError(f"{self.name}: reading the reply to {what!r} from "
                                                          f"{self.url} failed: {error}")) from None
            port.buffer += chunk

    def _arrived(self, port: _Port, wait_s: float) -> bytes:
        """What arrives within ``wait_s`` (b"" if nothing does)."""
        if port.fd is not None:
            if not select.select([port.fd], [], [], wait_s)[0]:
                return b""
            try:
                chunk = os.read(port.fd, READ_CHUNK)  # non-blocking: what has arrived
            except BlockingIOError:  # woken without data
                return b""
            if not chunk:
                raise self._hung_up()
            return chunk
        # Without a descriptor: a blocking read. Changing pyserial's timeout reconfigures a real
        # port, so only when a partial reply leaves less time than the configured timeout.
        timeout = min(wait_s, self.settings.timeout_s)
        if port.serial.timeout != timeout:
            port.serial.timeout = timeout
        return port.serial.read(max(1, port.serial.in_waiting))
