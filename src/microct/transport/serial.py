"""Serial transport on pyserial's ``serial_for_url``: a device (``/dev/ttyUSB0``, ``COM3``) or a URL
(``socket://127.0.0.1:7001``, ``loop://``, ``rfc2217://host:port``).

Replies are read in chunks of what has arrived (not byte by byte, as pyserial's
``readline`` does), up to the read terminator, within ``timeout_s`` for the
whole reply: where the port has a file descriptor (a device, ``socket://``) it
is put in non-blocking mode and waited on with ``select``; other ports
(``loop://``, ``rfc2217://``) are read with pyserial's own timeout. Drivers on the same
port share one pyserial object and one lock. Every exchange is logged at DEBUG
on the ``microct.transport`` logger.
"""

from __future__ import annotations

import contextlib
import select
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal

import serial
from pydantic import BaseModel, ConfigDict, Field

from microct.errors import CommunicationError, DeviceTimeoutError
from microct.transport.base import Transport, log
READ_CHUNK = 4096  # bytes asked for per read; a read returns what has arrived


class SerialSettings(BaseModel):
    """Line settings of a serial link (driver options carry one of these, with per-model defaults)."""

    model_config = ConfigDict(extra="forbid")
    baudrate: int = Field(default=9600, gt=0)
    bytesize: Literal[5, 6, 7, 8] = 8
    parity: Literal["N", "E", "O", "M", "S"] = "N"
    stopbits: Literal[1, 1.5, 2] = 1
    rtscts: bool = False
    dsrdtr: bool = False
    timeout_s: float = Field(default=1.0, gt=0, description="for a whole reply")
    write_terminator: str = "\r"
    read_terminator: str = "\r"


class _Port:
    """One opened pyserial port, shared by every transport on the same URL."""

    def __init__(self, port: Any) -> None:
        self.lock = threading.RLock()
        self.users = 0
        self.buffer = bytearray()
        self.lost: str | None = None
        """Why the link failed, if it did: the next exchange re-opens it first."""
        self.use(port)

    def use(self, port: Any) -> None:
        """Talk through ``port`` (a pyserial object, opened) from now on."""
        self.serial = port
        self.buffer.clear()
        self.lost = None
        try:
            self.fd: int | None = port.fileno()
        except (AttributeError, OSError, ValueError, serial.SerialException):
            self.fd = None
        if self.fd is not None:
            port.timeout = 0  # non-blocking: the transport waits with select()

    def close(self) -> None:
        try:
            self.serial.close()
        except (serial.SerialException, OSError) as error:
            log.debug("closing a serial port: %s", error)


_PORTS: dict[str, _Port] = {}
_PORTS_LOCK = threading.Lock()


class SerialTransport(Transport):
    """A serial link. ``port_factory`` (default ``serial.serial_for_url``) is for tests."""

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
        with _PORTS_LOCK:
            port = _PORTS.get(self.url)
            if port is None:
                port = _PORTS[self.url] = _Port(self._open_port())
            port.users += 1
        self._port = port
        log.debug("%s: opened %s", self.name, self.url)

    def _open_port(self, detail: str = "") -> Any:
        """A new pyserial object for the URL; CommunicationError (with ``detail``) if it cannot be opened."""
        s = self.settings
        try:
            return self._factory(self.url, baudrate=s.baudrate, bytesize=s.bytesize, parity=s.parity,
                                 stopbits=s.stopbits, rtscts=s.rtscts, dsrdtr=s.dsrdtr, timeout=s.timeout_s,
                                 write_timeout=s.timeout_s)
        except (serial.SerialException, OSError, ValueError) as error:
            raise CommunicationError(f"{self.name}: cannot open serial port {self.url}: {error}{detail}") from None

    def close(self) -> None:
        port, self._port = self._port, None
        if port is None:
            return
        with _PORTS_LOCK:
            port.users -= 1
            if port.users == 0:
                _PORTS.pop(self.url, None)
                port.close()

    def reconnect(self) -> None:
        """Close and reopen the port (after it vanished, e.g. a USB adapter unplugged), for every
        transport sharing it; CommunicationError if it cannot be opened."""
        port = self._port
        if port is None:
            self.open()
            return
        with port.lock:
            self._reopen(port)

    def _reopen(self, port: _Port) -> None:
        why = f" (re-opening it after: {port.lost})" if port.lost else ""
        port.close()
        port.use(self._open_port(why))
        log.info("%s: re-opened %s%s", self.name, self.url, why)

    def _lost(self, port: _Port, error: CommunicationError) -> CommunicationError:
        """Mark the link lost (the next exchange re-opens it); returns ``error`` to raise."""
        port.lost = str(error)
        return error

    # -- transport primitives -------------------------------------------------------------------------
    @contextlib.contextmanager
    def _exchange(self) -> Iterator[None]:
        port = self._require_open()
        with port.lock:
            if port.lost is not None:  # once per exchange; CommunicationError if the device is still away
                self._reopen(port)
            yield

    def _send(self, message: bytes) -> None:
        port = self._require_open()
        data = message + self._write_terminator
        log.debug("%s > %r", self.name, data)
        try:
            port.serial.write(data)
        except (serial.SerialException, OSError) as error:
            raise self._lost(port, CommunicationError(f"{self.name}: writing {message!r} to {self.url} failed: "
                                                      f"{error}")) from None

    def _receive(self, what: str) -> bytes:
        return self._read_line(self._require_open(), what)

    def _require_open(self) -> _Port:
        if self._port is None:
            raise CommunicationError(f"{self.name}: serial port {self.url} is not open")
        return self._port

    def _discard_stale_input(self) -> None:
        port = self._require_open()
        try:
            waiting = port.serial.in_waiting
            stale = bytes(port.buffer) + (port.serial.read(waiting) if waiting else b"")
        except (serial.SerialException, OSError) as error:
            raise self._lost(port, CommunicationError(f"{self.name}: port {self.url} failed: {error}")) from None
        if stale:
            log.debug("%s: discarded stale input %r", self.name, stale)
        port.buffer.clear()

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
            return port.serial.read(READ_CHUNK)  # non-blocking: what has arrived
        # Without a descriptor: a blocking read. Changing pyserial's timeout reconfigures a real
        # port, so only when a partial reply leaves less time than the configured timeout.
        timeout = min(wait_s, self.settings.timeout_s)
        if port.serial.timeout != timeout:
            port.serial.timeout = timeout
        return port.serial.read(max(1, port.serial.in_waiting))
