"""Wire-level simulators: serve a device's line protocol on a pseudo-terminal or TCP (127.0.0.1 only).

A protocol responder (``respond(line) -> list of reply byte strings``) turns
one request line into the device's replies; it drives the same in-process
simulator the in-process tests use, so there is one model per device. The
server splits the byte stream on any of the request terminators, skips empty
lines, and runs in daemon threads, so it ends with the process.

A responder that must tell its clients apart or push replies later (a camserver
answering ``7 OK`` when an exposure series ends, control for the first client
only) defines ``connect(connection)``: it is called for each new client with a
``Connection`` and returns that client's handler, which answers its lines. The
replies a handler returns meet the request faults like any responder's, and are
sent before anything it pushes meanwhile (``Connection.send`` from another
thread waits until they are out).

Request faults (``microct.simulators.faults``: reply_timeout, garbled_reply, disconnect) are played
here, the same way for every protocol, by a server given ``faults`` (see ``WireFaults``): a
``DeviceFaults`` view (every line is a request to that device) or a whole ``FaultSchedule`` (the
responder's ``fault_device(line)`` names the device a line is for). A line is a *request* when it
gets a reply (the client waits on it); the device carries it out, then the fault decides what the
client gets:

- reply_timeout: nothing (the client times out);
- garbled_reply: ``garble="corrupt"``: the reply with its first byte replaced by 0xFF, as line noise
  would (no protocol served here starts a reply with it, so the driver's codec rejects the reply:
  ProtocolError); ``garble="partial"``: the first half of the reply, its terminator never sent (the
  client times out holding a partial reply);
- disconnect: over TCP the server closes the client's connection without replying (the client sees
  the link lost); the next connection is served as before, so the device "comes back". A
  pseudo-terminal cannot be hung up from the device end without closing it for good: there a
  disconnect is the line gone silent, no reply to the request (the client times out), and with
  ``duration_s`` to every request in that window.

Responders answer inside ``FaultSchedule.quiet()``, so the in-process simulators behind them (which
the schedule's physics faults reach: arcs, interlock, stalls, limit switches) do not play the request
faults a second time.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import select
import socket
import threading
import tty
from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ValidationError

from microct.clock import Clock
from microct.devices.base import Status
from microct.errors import ConfigurationError, DeviceFaultError, MicroCTError
from microct.faults import FaultPlan
from microct.simulators.faults import DeviceFaults, Fault, FaultSchedule, kinds_of, require_fireable
from microct.simulators.serving import (
    LOOPBACK,
    PORTS,
    bad_options,
    check_options,
    check_port,
    options_model,
    port_problem,
)

log = logging.getLogger("microct.simulators.wire")


class Responder(Protocol):
    request_terminators: bytes
    """Any of these bytes ends a request line."""

    def respond(self, line: bytes) -> list[bytes]:
        """Replies (with their terminators) to one request line (without its terminator).

        A responder may also have ``single_byte_commands`` (bytes): each of those bytes is a
        command on its own, answered at once wherever it appears (PI's 0x05, 0x07, 0x18).
        """

    # Optional: ``connect(connection: Connection) -> handler``, called once per client; the handler
    # (``request_terminators``, ``respond(line)``, optionally ``disconnected()``, called when the client
    # hangs up or the server stops) answers that client's lines in place of the responder.
    # Optional: ``fault_device(line) -> str | None``, the device (its role in a FaultSchedule) a request
    # line is for, None if for none; needed to serve it with a whole FaultSchedule.


class Connection:
    """One client of a WireServer (a TCP connection, or the pty), for responders with ``connect``.

    ``send(data)`` may be called from any thread, at any time (replies pushed later); after the
    client hung up it drops the data. ``alive`` is False once the client hung up or ``close()`` ran
    (checked on the socket itself, so a hang-up shows before the server's thread has seen it).
    ``close()`` drops the link from the server's side (fault injection).
    """

    def __init__(self, write: Callable[[bytes], None], sock: socket.socket | None = None) -> None:
        self._write = write
        self._sock = sock
        self._lock = threading.RLock()
        self._closed = False

    def answering(self) -> contextlib.AbstractContextManager:
        """Held by the server while it answers lines and sends their replies: a reply pushed from
        another thread meanwhile waits, so it never overtakes them."""
        return self._lock

    def send(self, data: bytes) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                self._write(data)
            except OSError:  # the client is gone
                self._closed = True

    @property
    def alive(self) -> bool:
        if self._closed:
            return False
        if self._sock is not None:
            try:
                readable, _, _ = select.select([self._sock], [], [], 0)
                if readable and self._sock.recv(1, socket.MSG_PEEK) == b"":
                    self._closed = True  # end of stream: the client hung up
            except (OSError, ValueError):  # reset, or closed under us
                self._closed = True
        return not self._closed

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._sock is not None:
                try:
                    self._sock.shutdown(socket.SHUT_RDWR)  # the client loop sees the end and closes it
                except OSError:
                    pass


def stopped_by_limit_switch(move: Status | None) -> bool:
    """True if ``move`` (a SimulatedAxis move) ended on a limit switch (its DeviceFaultError), for the
    simulators that report that in their own protocol (Zaber's WL flag, PI's error 216, the motor
    record's HLS/LLS)."""
    if move is None or not move.done:
        return False
    try:
        move.wait(0)
    except DeviceFaultError:
        return True
    except MicroCTError:  # stopped, superseded
        return False
    return False


GarbleMode = Literal["corrupt", "partial"]
NOISE = b"\xff"
"""What a ``corrupt`` garbled reply starts with in place of its first byte."""


class WireFaults:
    """The request faults a WireServer plays (see the module docstring). ``faults``: a DeviceFaults view
    (every line is a request to that device), or a FaultSchedule and a responder that names each line's
    device (``fault_device``). A device's ``at_s`` clock starts when its in-process simulator connects,
    else at its first request here. TypeError if a schedule is given for a responder without
    ``fault_device``; ValueError for an unknown ``garble`` mode."""

    def __init__(self, faults: FaultSchedule | DeviceFaults, responder: Responder,
                 garble: GarbleMode = "corrupt") -> None:
        if garble not in ("corrupt", "partial"):
            raise ValueError(f"garble={garble!r}: allowed 'corrupt' or 'partial'")
        self.garble = garble
        self._clock = Clock()
        if isinstance(faults, DeviceFaults):
            self.schedule = faults.schedule
            self._device_of: Callable[[bytes], str | None] = lambda line: faults.device
        else:
            device_of = getattr(responder, "fault_device", None)
            if device_of is None:
                raise TypeError(f"{type(responder).__name__} does not tell which device a line is for "
                                f"(fault_device): give the server a DeviceFaults view instead of a FaultSchedule")
            self.schedule, self._device_of = faults, device_of

    def quiet(self) -> contextlib.AbstractContextManager:
        return self.schedule.quiet()

    def play(self, line: bytes, reply: bytes, can_hang_up: bool) -> tuple[bytes, bool]:
        """What the client gets for ``line`` answered by ``reply``: (bytes to send, hang up after)."""
        device = self._device_of(line)
        if device is None:
            return reply, False
        view = self.schedule.device(device)
        view.start(self._clock)  # no-op if its simulator (or an earlier request) started it
        fault = view.request()
        if fault is None:
            return reply, False
        log.info("%s: %s on %r (simulated fault)", device, fault.kind, line)
        return self._effect(fault, reply, can_hang_up)

    def _effect(self, fault: Fault, reply: bytes, can_hang_up: bool) -> tuple[bytes, bool]:
        if fault.kind == "garbled_reply":
            return (NOISE + reply[1:], False) if self.garble == "corrupt" else (reply[:len(reply) // 2], False)
        return b"", fault.kind == "disconnect" and can_hang_up  # reply_timeout; disconnect (pty: silence)


class _LineSplitter:
    """Splits one connection's byte stream into request lines; ``lock`` serialises the shared responder;
    ``faults`` (if any) are played on the replies; ``can_hang_up``: a TCP connection, not the pty."""

    def __init__(self, responder: Responder, lock: threading.Lock, faults: WireFaults | None = None,
                 can_hang_up: bool = False, muted: Callable[[], bool] = lambda: False) -> None:
        self.responder = responder
        self.muted = muted
        self.buffer = bytearray()
        self.lock = lock
        self.faults = faults
        self.can_hang_up = can_hang_up

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """Requests complete in ``data`` → (the concatenated replies, hang up after sending them). Lines
        after one that hangs up are dropped, as the connection is."""
        out = bytearray()
        single = getattr(self.responder, "single_byte_commands", b"")
        if single and any(b in single for b in data):
            kept = bytearray()
            for b in data:
                if b in single:
                    reply, hang_up = self._answer(bytes([b]))
                    out += reply
                    if hang_up:
                        return bytes(out), True
                else:
                    kept.append(b)
            data = bytes(kept)
        self.buffer += data
        terminators = self.responder.request_terminators
        while True:
            ends = [i for i in (self.buffer.find(t) for t in (bytes([b]) for b in terminators)) if i >= 0]
            if not ends:
                return bytes(out), False
            end = min(ends)
            line = bytes(self.buffer[:end])
            del self.buffer[:end + 1]
            if line:
                reply, hang_up = self._answer(line)
                out += reply
                if hang_up:
                    self.buffer.clear()
                    return bytes(out), True

    def _answer(self, line: bytes) -> tuple[bytes, bool]:
        if self.muted():  # the device has gone silent: it neither carries out nor answers the request
            return b"", False
        with self.lock:  # the responder's state (e.g. the device a line is for) is read under it too
            with self.faults.quiet() if self.faults is not None else contextlib.nullcontext():
                reply = b"".join(self.responder.respond(line))
            if not reply or self.faults is None:
                return reply, False
            return self.faults.play(line, reply, self.can_hang_up)


class WireServer:
    """Serve ``responder`` on a pty (``serve_pty``) or TCP (``serve_tcp``) until ``stop()``; with
    ``faults`` (a FaultSchedule or a DeviceFaults view), play the request faults on its replies
    (``garble``: how a garbled reply looks; see the module docstring)."""

    def __init__(self, responder: Responder, name: str = "simulator",
                 faults: FaultSchedule | DeviceFaults | None = None, garble: GarbleMode = "corrupt") -> None:
        self.responder = responder
        self.name = name
        self.faults = None if faults is None else WireFaults(faults, responder, garble)
        self.muted = False
        """True: the device is silent, it neither carries out nor answers requests (fault contracts)."""
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._closers: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def serve_pty(self) -> str:
        """Start serving on a new pseudo-terminal; returns the device path to open (e.g. /dev/pts/5)."""
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no CR/LF translation: bytes pass as on a serial line
        path = os.ttyname(slave)
        self._closers += [lambda: os.close(master), lambda: os.close(slave)]
        self._start(self._pty_loop, master)
        log.info("%s: serving on %s", self.name, path)
        return path

    def serve_serial(self, link: str) -> str:
        """Serve on a new pseudo-terminal (``link`` "pty") or a free TCP port ("tcp"); returns what a
        serial transport opens: the device path, or the ``socket://`` URL."""
        if link not in ("pty", "tcp"):
            raise ValueError(f"link={link!r}: 'pty' or 'tcp'")
        return self.serve_pty() if link == "pty" else f"socket://{LOOPBACK}:{self.serve_tcp()}"

    def serve_tcp(self, port: int = 0) -> int:
        """Start serving on 127.0.0.1:``port`` (0: a free port); returns the port. ValueError for a port out
        of range; OSError (its errno kept) saying why a port cannot be served (in use, privileged)."""
        if port not in PORTS:
            raise ValueError(f"port {port}: not a port number; give 0 (a free port) to 65535")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((LOOPBACK, port))
            listener.listen()
        except OSError as error:
            listener.close()
            raise OSError(error.errno, port_problem(port, error)) from None
        self._closers.append(listener.close)
        self._start(self._accept_loop, listener)
        port = listener.getsockname()[1]
        log.info("%s: serving on %s:%d", self.name, LOOPBACK, port)
        return port

    def stop(self) -> None:
        """Stop serving and release the pty or sockets; safe to call twice."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2.0)
        for close in self._closers:
            try:
                close()
            except OSError:
                pass
        self._closers.clear()

    def __enter__(self) -> WireServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _start(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, name=f"{self.name}-wire", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _handler(self, connection: Connection):
        """What answers this client's lines: the responder, or its per-connection handler."""
        connect = getattr(self.responder, "connect", None)
        if connect is None:
            return self.responder
        with self._lock:
            return connect(connection)

    def _hung_up(self, handler) -> None:
        disconnected = getattr(handler, "disconnected", None)
        if disconnected is not None:
            with self._lock:
                disconnected()

    def _pty_loop(self, master: int) -> None:
        connection = Connection(lambda data: os.write(master, data))
        handler = self._handler(connection)
        splitter = _LineSplitter(handler, self._lock, self.faults, muted=lambda: self.muted)
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([master], [], [], 0.05)
                if not ready:
                    continue
                try:
                    data = os.read(master, 4096)
                except OSError:  # the pty was closed
                    return
                with connection.answering():
                    replies, _ = splitter.feed(data)  # a pty cannot hang up (disconnect: silence)
                    if replies:
                        connection.send(replies)
        finally:
            self._hung_up(handler)

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([listener], [], [], 0.05)
            if not ready:
                continue
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._closers.append(connection.close)
            self._start(self._client_loop, connection)

    def _client_loop(self, sock: socket.socket) -> None:
        connection = Connection(sock.sendall, sock)
        handler = self._handler(connection)
        splitter = _LineSplitter(handler, self._lock, self.faults, can_hang_up=True, muted=lambda: self.muted)
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([sock], [], [], 0.05)
                if not ready:
                    continue
                try:
                    data = sock.recv(4096)
                except OSError:
                    return
                if not data:  # the client hung up (or close() shut the link)
                    sock.close()
                    return
                with connection.answering():
                    replies, hang_up = splitter.feed(data)
                    if replies:
                        connection.send(replies)
                if hang_up:  # a disconnect fault: the device drops the link
                    log.info("%s: dropping the connection (simulated fault)", self.name)
                    connection.close()
                    sock.close()
                    return
        finally:
            connection.close()
            self._hung_up(handler)


# -- serving a registered simulator (``microct sim serve NAME``) --------------------------------------------------
class ServedWire:
    """A WireServer serving one responder for ``microct sim serve`` (see ``microct.registry.Served``)."""

    def __init__(self, server: WireServer, address: str, hint: str) -> None:
        self.server, self.address, self.hint = server, address, hint

    def stop(self) -> None:
        self.server.stop()


class WireSimulator:
    """A line-protocol simulator as registered in the entry-point group ``microct.simulators``: the object
    ``microct sim serve NAME`` serves.

    ``factory(**options)`` builds the Responder (options are the ``-O KEY=VALUE`` of the command line,
    ``faults=`` a FaultSchedule when ``--faults`` is given); it raises TypeError, ValueError or a pydantic
    ValidationError (a ValueError) for a bad option. ``options``: the pydantic model of the ``-O`` options,
    checked before the factory runs and listed in the message about a bad one (default: derived from the
    factory's signature, ``serving.options_model``). ``visa`` adds the VISA resource of a TCP port to the
    hint (for simulators of VISA instruments); a responder's own ``hint`` attribute (text) is added too."""

    def __init__(self, factory: Callable[..., Responder], description: str, *, visa: bool = False,
                 options: type[BaseModel] | None = None) -> None:
        self.factory = factory
        self.description = description
        self.visa = visa
        self.options = options if options is not None else options_model(factory)

    def serve(self, options: Mapping[str, Any], faults: FaultPlan | None, port: int | None) -> ServedWire:
        """Serve on a new pseudo-terminal (``port`` None) or 127.0.0.1:``port`` (0: a free port).
        ConfigurationError, before anything is served, for a bad option (naming it, listing the allowed
        ones), a fault it would never fire (``require_played``) or a port it cannot serve on (naming it and
        why)."""
        check_port(port)
        kwargs = check_options(self.options, options)
        schedule = None if faults is None else FaultSchedule(faults.faults, faults.seed)
        if schedule is not None and _takes(self.factory, "faults"):
            kwargs["faults"] = schedule  # the simulated devices inside play the device faults
        try:
            responder = self.factory(**kwargs)
        except OSError as error:  # a port or folder of its own (the Dexela frame stream, ...)
            raise ConfigurationError(error.strerror or str(error)) from None
        except (TypeError, ValueError) as error:  # a bad option for this simulator
            message = error if isinstance(error, ValidationError) else str(error)
            raise ConfigurationError(bad_options(message, self.options)) from None
        try:
            return self._serve(responder, schedule, faults, port)
        except BaseException:
            stop = getattr(responder, "stop", None)
            if callable(stop):
                stop()
            raise

    def _serve(self, responder: Responder, schedule: FaultSchedule | None, faults: FaultPlan | None,
               port: int | None) -> ServedWire:
        if schedule is not None:
            require_played(schedule, faults.origin if faults is not None else "--faults")
        try:
            server = WireServer(responder, self.description, faults=schedule)
        except TypeError as error:  # a responder that cannot tell which device a line is for
            raise ConfigurationError(f"--faults: {error}") from None
        extra = getattr(responder, "hint", "")  # a responder may say more: where its frames go, ...
        if port is None:
            return ServedWire(server, server.serve_pty(), extra)
        try:
            tcp_port = server.serve_tcp(port)
        except OSError as error:
            raise ConfigurationError(f"--tcp {port}: {error.strerror}") from None
        hint = f" (VISA resource TCPIP::{LOOPBACK}::{tcp_port}::SOCKET)" if self.visa else ""
        return ServedWire(server, f"socket://{LOOPBACK}:{tcp_port}", hint + extra)


def _takes(factory: Callable[..., Any], keyword: str) -> bool:
    """True if ``factory`` accepts the keyword argument ``keyword`` (by name, or through ``**kwargs``)."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # a callable without a signature: try it
        return True
    return any(p.name == keyword or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def require_played(schedule: FaultSchedule, origin: str = "--faults") -> None:
    """ConfigurationError naming every fault of ``schedule`` that the simulators attached to it would never
    fire: one for a device none of them simulates (or the scan's writer), or with a trigger they cannot
    meet (``simulators.faults.fireable_triggers``: without a detector, at_frame and at_projection, and a
    tube's arcs at random); the message lists what they do fire."""
    attached = schedule.attached()
    require_fireable(schedule.faults, {device: kinds_of(device) for device in attached}, "detector" in attached,
                     origin)
