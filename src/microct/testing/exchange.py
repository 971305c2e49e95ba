"""Scripted byte exchanges: test a driver against the bytes a manual shows, without hardware.

As PyMeasure's ``expected_protocol``: a ``ScriptedPort`` stands in for the pyserial port under a real
``SerialTransport``, checks every byte string the driver writes against the script and answers with the
scripted reply. Terminators are the link's, not the protocol's: a script lists commands and replies
without them, and ``scripted_transport`` adds the write terminator to each command and the read
terminator to each reply, as the transport's settings say::

    transport, port = scripted_transport([(b"STS", b"STS 2")], SerialSettings(read_terminator="\r"))
    source = HamamatsuSource("tube", options, transport=transport)
    ...
    port.assert_done()

A reply may be several replies (a tuple, each terminated), nothing (None: silence), or ``Raw`` bytes
sent exactly as given (a reply cut short, line noise).
"""

from __future__ import annotations

import itertools
import time

from microct.testing.waiting import wait_until
from microct.transport.serial import SerialSettings, SerialTransport


class Raw(bytes):
    """Bytes sent or expected exactly as given: no terminator is added (a partial reply, line noise, a
    single-byte command that has no terminator)."""


Reply = bytes | tuple[bytes, ...] | None
Step = tuple[bytes, Reply]
"""(what the driver must write, the device's reply), both without the link's terminators."""

_ids = itertools.count()


class ScriptedPort:
    """A fake pyserial port playing ``script`` in order, adding ``write_terminator`` to each command and
    ``read_terminator`` to each reply (not to ``Raw`` bytes). A write that differs fails the test at once."""

    def __init__(self, script: list[Step], write_terminator: bytes = b"", read_terminator: bytes = b"") -> None:
        self.script = [(_terminated(command, write_terminator), _reply(reply, read_terminator))
                       for command, reply in script]
        self.step = 0
        self.timeout = 1.0
        self._pending = bytearray()
        self.is_open = True

    def write(self, data: bytes) -> int:
        if self.step >= len(self.script):
            raise AssertionError(f"unexpected write {data!r}: the script has only {len(self.script)} steps")
        expected, reply = self.script[self.step]
        if data != expected:
            raise AssertionError(f"step {self.step}: driver wrote {data!r}, the script expects {expected!r}")
        self.step += 1
        if reply:
            self._pending += reply
        return len(data)

    @property
    def in_waiting(self) -> int:
        return len(self._pending)

    def read(self, size: int = 1) -> bytes:
        if not self._pending:
            time.sleep(self.timeout)  # silence: as a real port, return nothing after the timeout
            return b""
        chunk = bytes(self._pending[:size])
        del self._pending[:size]
        return chunk

    def close(self) -> None:
        self.is_open = False

    def assert_done(self) -> None:
        """Fail unless every scripted step was written."""
        assert self.step == len(self.script), f"only {self.step} of {len(self.script)} scripted steps happened; " \
                                              f"next expected {self.script[self.step][0]!r}"


def _terminated(data: bytes, terminator: bytes) -> bytes:
    return bytes(data) if isinstance(data, Raw) else data + terminator


def _reply(reply: Reply, terminator: bytes) -> bytes | None:
    if reply is None:
        return None
    if isinstance(reply, tuple):
        return b"".join(_terminated(line, terminator) for line in reply)
    return _terminated(reply, terminator)


def scripted_transport(script: list[Step], settings: SerialSettings | None = None,
                       name: str = "scripted") -> tuple[SerialTransport, ScriptedPort]:
    """An opened SerialTransport on a ScriptedPort playing ``script`` (commands and replies without the
    terminators of ``settings``, which the port adds)."""
    settings = settings or SerialSettings()
    port = ScriptedPort(script, settings.write_terminator.encode("latin-1"), settings.read_terminator.encode("latin-1"))
    transport = SerialTransport(f"scripted://{next(_ids)}", settings, name, port_factory=lambda *a, **k: port)
    transport.open()
    return transport, port


class EchoResponder:
    """A wire-simulator responder (``microct.simulators.wire``) for transport tests: answers a line with
    ``ECHO <line>`` and ``terminator``, and ``SPLIT`` with two lines, ``#one`` and ``#two``; counts its
    clients (TCP connections) and the lines it answered."""

    request_terminators = b"\r\n"

    def __init__(self, terminator: bytes = b"\r") -> None:
        self.terminator = terminator
        self.clients = 0
        self.answered = 0

    def connect(self, connection: object) -> EchoResponder:
        self.clients += 1
        return self

    def respond(self, line: bytes) -> list[bytes]:
        self.answered += 1
        if line == b"SPLIT":
            return [b"#one" + self.terminator, b"#two" + self.terminator]
        return [b"ECHO " + line + self.terminator]


def assert_stale_replies_dropped(transport, echo: EchoResponder) -> None:
    """Leave three replies of ``echo`` unread, then query: the answer must be the query's own (the
    transport dropped the stale ones first)."""
    answered = echo.answered
    for i in range(3):
        transport.write(b"stale %d" % i)
    wait_until(lambda: echo.answered == answered + 3, what="the server answering the stale lines")
    time.sleep(0.05)  # and their bytes have crossed the link
    assert transport.query(b"fresh") == [b"ECHO fresh"]
