"""VISA transport on pyvisa: TCPIP SOCKET, TCPIP INSTR, ASRL and GPIB resources.

pyvisa-py (``@py``) is the default backend; any installed VISA library can be
chosen (``@ivi``, or a path to one). Messages are raw bytes (``write_raw``)
with the device's own terminators, never SCPI framing, so binary framings such
as Spellman's STX/ETX pass unchanged; replies are read up to the read
terminator (VISA's termination character) and decoded as latin-1 back to
bytes. Drivers on the same resource share one session and one lock.
pyvisa-py opens a TCPIP SOCKET resource without connecting: an unreachable
device shows at the first exchange, as a CommunicationError. Before a query, what
the VISA library holds (on ASRL, the port's input too) is discarded where the library
can (pyvisa-py cannot for its GPIB and VXI-11 INSTR sessions, where a reply is read
only when asked for); after a time-out, late replies are read and dropped.

A link that fails raises CommunicationError and is marked lost; the next exchange on the resource
(any transport sharing it) first re-opens the session, once: if that fails too, it raises
CommunicationError, and the one after tries again, so a caller that retries gets the link back as
soon as the device is reachable. pyvisa-py reads a TCPIP SOCKET that the device closed as silence (a
time-out): after a time-out the transport looks at the session's socket, and a connection closed at
the device end is a CommunicationError, not a DeviceTimeoutError.
"""

from __future__ import annotations

import select
import socket
from typing import Any

import pyvisa
from pydantic import Field
from pyvisa import constants

from microct.errors import CommunicationError, DeviceTimeoutError
from microct.transport.base import LinkSettings, Transport, log
from microct.transport.links import LINKS, SharedLink

ENCODING = "latin-1"  # every byte 0-255 maps to one character and back
DRAIN_S = 0.02  # after a time-out: how long to wait for late replies before the next query
DISCARD_NO_IO = constants.BufferOperation.discard_read_buffer_no_io  # what the library holds
DISCARD_INPUT = constants.BufferOperation.discard_read_buffer  # a serial port's input too (ASRL)


class VisaSettings(LinkSettings):
    """Settings of a VISA link (driver options carry one of these; the driver fills in its device's
    defaults with ``with_defaults``)."""

    backend: str = Field(default="@py", description="VISA library: @py (pyvisa-py), @ivi, or a path")
    timeout_s: float = Field(default=1.0, gt=0, description="for a whole reply")
    write_terminator: str = Field(default="\n", description="appended to every message sent; a driver sets its "
                                                             "device's")
    read_terminator: str = Field(default="\n", description="ends every reply; a driver sets its device's")
    baudrate: int | None = Field(default=None, gt=0, description="ASRL resources only")


class _Session(SharedLink):
    """One opened VISA resource, shared by every transport on the same library and resource string."""

    def __init__(self, resource: Any) -> None:
        super().__init__()
        self.use(resource)

    def use(self, resource: Any) -> None:
        """Talk through ``resource`` (opened) from now on."""
        self.resource = resource
        self.late_replies_possible = False  # after a time-out, the late reply may still come
        self.discard: constants.BufferOperation | None = (
            DISCARD_INPUT if getattr(resource, "interface_type", None) == constants.InterfaceType.asrl
            else DISCARD_NO_IO)
        """How to drop stale input before a query (None: the library cannot)."""
        self.lost = None


_MANAGERS: dict[str, pyvisa.ResourceManager] = {}


def closed_by_device(resource: Any) -> bool:
    """True if ``resource`` is a pyvisa-py TCPIP SOCKET session whose connection the device closed (its
    socket reads end-of-stream); False otherwise, or for other VISA libraries (they report it themselves)."""
    try:
        sock = resource.visalib.sessions[resource.session].interface
    except (AttributeError, KeyError, TypeError, pyvisa.errors.Error):
        return False
    if not isinstance(sock, socket.socket):
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):  # reset by the device, or the socket is closed
        return True


def _discards(resource: Any, how: constants.BufferOperation) -> bool:
    """Discard stale input of ``resource`` as ``how`` says; False if the library cannot (pyvisa-py's GPIB
    and VXI-11 INSTR sessions raise NotImplementedError, other libraries may not support it)."""
    try:
        resource.flush(how)
    except NotImplementedError:
        return False
    except pyvisa.errors.VisaIOError as error:
        if error.error_code != constants.StatusCode.error_nonsupported_operation:
            raise
        return False
    return True


def resource_manager(backend: str) -> pyvisa.ResourceManager:
    """One ResourceManager per VISA library, opened on first use."""
    if backend not in _MANAGERS:
        try:
            _MANAGERS[backend] = pyvisa.ResourceManager(backend)
        except (OSError, ValueError, pyvisa.errors.Error) as error:
            raise CommunicationError(f"cannot load the VISA library {backend!r}: {error}") from None
    return _MANAGERS[backend]


class VisaTransport(Transport):
    """A VISA resource such as ``TCPIP::127.0.0.1::50000::SOCKET``, ``TCPIP::192.168.1.5::INSTR``,
    ``GPIB0::5::INSTR`` or ``ASRL/dev/ttyUSB0::INSTR``, through the VISA library ``settings.backend``."""

    def __init__(self, resource: str, settings: VisaSettings | None = None, name: str = "") -> None:
        self.resource_name = resource
        self.settings = settings or VisaSettings()
        self.name = name or resource
        self._session: _Session | None = None
        self._key = ("visa", self.settings.backend, resource)
        self._write_terminator = self.settings.write_terminator.encode(ENCODING)

    def open(self) -> None:
        if self._session is not None:
            return
        self._session = LINKS.acquire(self._key, lambda: _Session(self._open_resource()))
        log.debug("%s: opened %s", self.name, self.resource_name)

    def _open_resource(self) -> Any:
        s = self.settings
        options: dict[str, Any] = {"read_termination": s.read_terminator, "write_termination": "",
                                   "timeout": s.timeout_s * 1000.0}
        if s.baudrate is not None:
            options["baud_rate"] = s.baudrate
        try:
            resource = resource_manager(s.backend).open_resource(self.resource_name, **options)
        except (pyvisa.errors.Error, OSError, ValueError) as error:
            raise CommunicationError(f"{self.name}: cannot open VISA resource {self.resource_name}: {error}") from None
        resource.encoding = ENCODING  # type: ignore[attr-defined]  # message-based resources have it
        return resource

    def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            LINKS.release(self._key, session, self._close_resource)

    def reconnect(self) -> None:
        """Close and reopen the session, for every transport sharing it; CommunicationError if it cannot be
        opened."""
        session = self._session
        if session is None:
            self.open()
            return
        with session.lock:
            self._reopen(session)

    def _reopen(self, session: _Session, what: str = "") -> None:
        why = f" (re-opening it after: {session.lost})" if session.lost else ""
        self._close_resource(session)
        try:
            session.use(self._open_resource())
        except CommunicationError as error:
            purpose = f" (to send {what!r})" if what else ""
            raise CommunicationError(f"{error}{purpose}{why}") from None
        log.info("%s: re-opened %s%s", self.name, self.resource_name, why)

    def _lost(self, error: CommunicationError) -> CommunicationError:
        """Mark the link lost (the next exchange re-opens it); returns ``error`` to raise."""
        if self._session is not None:
            self._session.lost = str(error)
        return error

    def _close_resource(self, session: _Session) -> None:
        try:
            session.resource.close()
        except (pyvisa.errors.Error, OSError) as error:
            log.warning("%s: closing %s: %s", self.name, self.resource_name, error)

    # -- transport primitives -------------------------------------------------------------------------
    def _require_open(self) -> _Session:
        if self._session is None:
            raise CommunicationError(f"{self.name}: VISA resource {self.resource_name} is not open")
        return self._session

    def _discard_stale_input(self) -> None:
        """Drop what the VISA library holds (no I/O), and on a serial (ASRL) resource what the port holds,
        where the library can. After a time-out, when a late reply may be on its way, read and drop
        whatever arrives within DRAIN_S. (pyvisa-py's discard with I/O waits 0.1 s on every TCPIP SOCKET
        call, and loops forever on a closed socket.)"""
        session = self._require_open()
        resource = session.resource
        try:
            if session.discard is not None and not _discards(resource, session.discard):
                session.discard = None
            if session.late_replies_possible:
                resource.timeout = DRAIN_S * 1000.0
                try:
                    while True:
                        log.debug("%s: discarded stale input %r", self.name, resource.read_raw())
                except pyvisa.errors.VisaIOError as error:
                    if error.error_code != constants.StatusCode.error_timeout:
                        raise
                finally:
                    resource.timeout = self.settings.timeout_s * 1000.0
                session.late_replies_possible = False
        except (pyvisa.errors.Error, OSError) as error:
            raise self._lost(CommunicationError(f"{self.name}: {self.resource_name} failed: {error}")) from None

    def _send(self, message: bytes) -> None:
        data = message + self._write_terminator
        log.debug("%s > %r", self.name, data)
        try:
            self._require_open().resource.write_raw(data)
        except (pyvisa.errors.Error, OSError) as error:
            raise self._lost(CommunicationError(f"{self.name}: writing {message!r} to {self.resource_name} "
                                                f"failed: {error}")) from None

    def _receive(self, what: str) -> bytes:
        session = self._require_open()
        try:
            return session.resource.read().encode(ENCODING)
        except pyvisa.errors.VisaIOError as error:
            if error.error_code != constants.StatusCode.error_timeout:
                failure = str(error)
            elif closed_by_device(session.resource):
                failure = "the device closed the connection"
            else:
                session.late_replies_possible = True
                raise DeviceTimeoutError(f"{self.name}: no complete reply to {what!r} within "
                                         f"{self.settings.timeout_s:g} s") from None
        except OSError as error:
            failure = str(error)
        raise self._lost(CommunicationError(f"{self.name}: reading the reply to {what!r} from "
                                            f"{self.resource_name} failed: {failure}"))
