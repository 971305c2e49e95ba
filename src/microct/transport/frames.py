"""Frame readers: frames a detector (or its frame grabber) delivers beside its command link, as files in
a folder or over a TCP stream. They know nothing of any format: what a frame file or a frame header
holds is the vendor's codec, which the driver passes in (``decode``) or applies to the bytes returned.

Units: seconds for every time-out and period, bytes for every size.

``FolderReader``: one file per frame, written by the device into a folder this PC reads (a ramdisk,
an NFS mount). ``read(name, decode, timeout_s=...)`` looks for the file every ``poll_s`` on the
device's clock (``clock.monotonic()`` / ``clock.sleep()``) until it is complete, then returns
``decode(path)``. Complete means: it exists (writers that write under another name and rename), and,
with ``expected_bytes``, has at least that many bytes (writers that fill the file in place). Failures:

- DeviceTimeoutError when the time is up, naming the frame and what was waited for: "WHAT did not
  appear within T s", or "WHAT stayed incomplete (N of M bytes) within T s" (T counted from ``since``);
- CommunicationError naming the folder when the folder or the file cannot be read (an OSError other
  than "not there yet");
- whatever ``decode`` raises (the codec's ProtocolError for a file that is not a frame), and whatever
  ``check`` raises (``check`` runs before every look: a driver's stop request ends the wait there).

``StreamReader``: frames over one TCP connection to ``host:port``. ``send(data, what)`` writes a request;
``peek(size, ...)`` waits until ``size`` bytes are buffered and returns them without consuming them
(a header, inspected before the frame it announces is read); ``take(size)`` consumes them. Failures:

- DeviceTimeoutError "WHAT did not come on the DESCRIPTION within T s": the connection stays open and
  the bytes received so far stay buffered, so a frame cut short by a time-out is completed by the
  next ``peek`` rather than taken for the next frame's start;
- CommunicationError naming the stream when it cannot connect, a send or receive fails, or the peer
  closes the connection: the connection is dropped, and the next ``send`` connects anew (as the serial
  and VISA transports re-open a lost link), CommunicationError "... (re-opening it for WHAT)" if the
  peer is still away;
- ``drop(error)`` does the same for an error the driver finds in the bytes (its codec's ProtocolError for
  a header that is not one: the stream is out of step), and returns ``error`` for the driver to raise.

Socket waits are real time (``time.monotonic``): a simulated clock cannot make a socket answer sooner.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from microct.clock import Clock
from microct.errors import CommunicationError, ConfigurationError, DeviceTimeoutError, MicroCTError

log = logging.getLogger("microct.transport.frames")

T = TypeVar("T")
E = TypeVar("E", bound=MicroCTError)


class FolderReader:
    """Frame files in ``folder``, looked for every ``poll_s`` seconds on ``clock`` (default: real time).
    ``description`` names the folder in errors (default ``frame folder FOLDER``)."""

    def __init__(self, folder: str | Path, *, clock: Clock | None = None, poll_s: float = 0.002,
                 description: str | None = None) -> None:
        if poll_s <= 0:
            raise ValueError(f"poll_s={poll_s}: must be > 0")
        self.folder = Path(folder)
        self.clock = clock or Clock()
        self.poll_s = poll_s
        self.description = description or f"frame folder {self.folder}"

    def path(self, name: str) -> Path:
        """Where frame file ``name`` lies."""
        return self.folder / name

    def names(self) -> list[str]:
        """The names of the entries in the folder; CommunicationError if it cannot be listed."""
        try:
            return [entry.name for entry in os.scandir(self.folder)]
        except OSError as error:
            raise CommunicationError(f"{self.description} cannot be read: {error}") from None

    def read(self, name: str, decode: Callable[[Path], T], *, timeout_s: float, since: float | None = None,
             expected_bytes: int | None = None, what: str | None = None,
             check: Callable[[], None] | None = None) -> T:
        """``decode(path)`` of frame file ``name`` once it is complete (see the module docstring), by
        ``since`` + ``timeout_s`` (``since``: a ``clock.monotonic()`` time, e.g. the start of a series;
        default now). ``what`` names the frame in the time-out error (default ``frame file PATH``);
        ``check()`` runs before every look."""
        path = self.folder / name
        start = self.clock.monotonic() if since is None else since
        deadline = start + timeout_s
        while True:
            if check is not None:
                check()
            try:
                size: int | None = path.stat().st_size
            except FileNotFoundError:
                size = None
            except OSError as error:
                raise CommunicationError(f"{self.description}: looking for {name} failed: {error}") from None
            if size is not None and (expected_bytes is None or size >= expected_bytes):
                try:
                    return decode(path)
                except MicroCTError:
                    raise
                except OSError as error:  # vanished, unreadable
                    raise CommunicationError(f"{self.description}: reading {name} failed: {error}") from None
            now = self.clock.monotonic()
            if now >= deadline:
                state = ("did not appear" if size is None else
                         f"stayed incomplete ({size} of {expected_bytes} bytes)")
                raise DeviceTimeoutError(f"{what or f'frame file {path}'} {state} within {now - start:.3g} s")
            self.clock.sleep(self.poll_s)

    def remove(self, *names: str) -> None:
        """Delete these frame files where they exist; a failure is logged, not raised (the frames were read)."""
        for name in names:
            try:
                (self.folder / name).unlink(missing_ok=True)
            except OSError as error:
                log.warning("%s: could not delete %s: %s", self.description, name, error)


class StreamReader:
    """Frames over TCP from ``address`` (``host:port``), sent by ``peer`` (named when it hangs up).
    ``description`` names the stream in errors (default ``frame stream ADDRESS``). Not thread-safe:
    one request and its frame at a time, as a driver's acquisition runs."""

    CHUNK_BYTES = 1 << 20
    """What one receive asks for at least (more when more of the frame is missing)."""

    def __init__(self, address: str, *, connect_timeout_s: float = 2.0, description: str | None = None,
                 peer: str = "sender") -> None:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigurationError(f"frame stream address {address!r}: expected 'host:port'")
        self.address = (host, int(port))
        self.connect_timeout_s = connect_timeout_s
        self.description = description or f"frame stream {address}"
        self.peer = peer
        self._socket: socket.socket | None = None
        self._lost = False
        self._buffer = bytearray()

    @property
    def is_open(self) -> bool:
        return self._socket is not None

    def open(self) -> None:
        """Connect (within ``connect_timeout_s``); CommunicationError if that fails."""
        try:
            sock = socket.create_connection(self.address, timeout=self.connect_timeout_s)
        except OSError as error:
            raise CommunicationError(f"{self.description}: cannot connect: {error}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._socket = sock
        self._buffer.clear()
        self._lost = False

    def close(self) -> None:
        """Close the connection; safe to call twice. The next ``send`` does not re-open it: ``open`` does."""
        sock, self._socket = self._socket, None
        self._lost = False
        if sock is not None:
            sock.close()

    def drop(self, error: E) -> E:
        """Close the connection after ``error`` so that the next ``send`` connects anew; returns ``error``."""
        if self._socket is not None:
            self.close()
            self._lost = True
        return error

    def send(self, data: bytes, what: str) -> None:
        """Send ``data`` (a request for ``what``), first re-opening a connection an error dropped."""
        if self._lost:
            try:
                self.open()
            except CommunicationError as error:
                raise CommunicationError(f"{error} (re-opening it for {what})") from None
            log.info("%s: re-opened for %s", self.description, what)
        sock = self._connected()
        try:
            sock.sendall(data)
        except OSError as error:
            raise self.drop(CommunicationError(f"{self.description}: sending the request for {what} failed: "
                                               f"{error}")) from None

    @staticmethod
    def deadline(timeout_s: float) -> float:
        """The deadline ``timeout_s`` from now, for several ``peek`` calls that share it (one frame)."""
        return time.monotonic() + timeout_s

    def peek(self, size: int, what: str, timeout_s: float, *, deadline: float | None = None) -> bytes:
        """The first ``size`` buffered bytes, once received, left in the buffer. They must come by
        ``deadline`` (from ``deadline()``: shared by the reads of one frame; default ``timeout_s`` from
        now); the time-out error names ``what`` and quotes ``timeout_s``."""
        deadline = self.deadline(timeout_s) if deadline is None else deadline
        try:
            self._fill(size, what, timeout_s, deadline)
        except CommunicationError as error:
            raise self.drop(error) from None
        return bytes(self._buffer[:size])

    def take(self, size: int) -> bytes:
        """Remove the first ``size`` buffered bytes (peeked before) and return them."""
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def _connected(self) -> socket.socket:
        if self._socket is None:
            raise CommunicationError(f"{self.description} is not open")
        return self._socket

    def _fill(self, size: int, what: str, timeout_s: float, deadline: float) -> None:
        sock = self._connected()
        while len(self._buffer) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._timeout(what, timeout_s)
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(max(self.CHUNK_BYTES, size - len(self._buffer)))
            except TimeoutError:
                raise self._timeout(what, timeout_s) from None
            except OSError as error:
                raise CommunicationError(f"{self.description}: receiving {what} failed: {error}") from None
            if not chunk:
                raise CommunicationError(f"{self.description}: the {self.peer} closed the connection while {what} "
                                         f"was awaited")
            self._buffer += chunk

    def _timeout(self, what: str, timeout_s: float) -> DeviceTimeoutError:
        return DeviceTimeoutError(f"{what} did not come on the {self.description} within {timeout_s:g} s")
