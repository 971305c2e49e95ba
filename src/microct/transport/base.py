"""The transport interface a protocol driver talks through (serial, VISA), and the exchanges
built on it once for every transport."""

from __future__ import annotations

import abc
import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict

from microct.transport.links import SharedLink

log = logging.getLogger("microct.transport")

S = TypeVar("S", bound="LinkSettings")


class LinkSettings(BaseModel):
    """Base of the typed settings of a link (``SerialSettings``, ``VisaSettings``): a driver's options
    carry one, and the driver fills in its device's defaults with ``with_defaults``."""

    model_config = ConfigDict(extra="forbid")

    def with_defaults(self: S, **defaults: Any) -> S:
        """These settings with ``defaults`` for every field the configuration did not set (the
        device's baud rate, terminators, time-out); fields the user set are kept."""
        return self.model_copy(update={key: value for key, value in defaults.items()
                                       if key not in self.model_fields_set})


class Transport(abc.ABC):
    """A message link to one device: whole messages out, whole replies back, terminators handled here.

    Exchanges are atomic (one lock per physical port or resource), so several
    drivers may share a port, as the devices of a Zaber daisy chain do. Every
    exchange is logged at DEBUG on the ``microct.transport`` logger. Errors:
    CommunicationError (port missing or lost), DeviceTimeoutError (no
    complete reply in time).
    """

    name: str

    @abc.abstractmethod
    def open(self) -> None: ...

    @abc.abstractmethod
    def close(self) -> None:
        """Release the link; safe to call twice."""

    @abc.abstractmethod
    def reconnect(self) -> None:
        """Close and open the link again (after the device vanished and came back)."""

    def write(self, message: bytes) -> None:
        """Send ``message`` followed by the write terminator."""
        with self._exchange(message.decode(errors="replace")):
            self._send(message)

    def read_reply(self, what: str) -> bytes:
        """The next reply without its terminator; ``what`` names the command in a timeout error."""
        with self._exchange(what):
            reply = self._receive(what)
        log.debug("%s < %r", self.name, reply)
        return reply

    def query(self, message: bytes, replies: int = 1) -> list[bytes]:
        """Discard stale input (a serial port: anything waiting; VISA: what the library holds, and
        after a time-out the late reply), send ``message``, return the next ``replies`` replies,
        all under the lock."""
        return self._query(message, lambda answers: len(answers) >= replies)

    @contextlib.contextmanager
    def transaction(self, what: str = "transaction") -> Iterator[Transport]:
        """Hold the link's lock across several exchanges, so that no other driver sharing the port or
        session (another device of a daisy chain, another axis of a controller) gets between them: a
        write and the query that reads its result, say. Exchanges inside take the lock again (it is
        re-entrant). ``what`` names the transaction if the link must first be re-opened."""
        with self._exchange(what):
            yield self

    def query_until(self, message: bytes, last: Callable[[bytes], bool]) -> list[bytes]:
        """As ``query``, reading replies until ``last(reply)`` is true (multi-line answers)."""
        return self._query(message, lambda answers: last(answers[-1]))

    def _query(self, message: bytes, complete: Callable[[list[bytes]], bool]) -> list[bytes]:
        what = message.decode(errors="replace")
        with self._exchange(what):
            self._discard_stale_input()
            self._send(message)
            answers = [self._receive(what)]
            while not complete(answers):
                answers.append(self._receive(what))
        log.debug("%s < %r", self.name, answers)
        return answers

    @contextlib.contextmanager
    def _exchange(self, what: str) -> Iterator[None]:
        """Hold the link's lock for a whole exchange, re-opening the link first if an earlier exchange lost
        it (CommunicationError naming ``what``, the command, if the device is still away)."""
        link = self._require_open()
        with link.lock:
            if link.lost is not None:
                self._reopen(link, what)
            yield

    @abc.abstractmethod
    def _require_open(self) -> SharedLink:
        """The open link; CommunicationError if it is not open."""

    @abc.abstractmethod
    def _reopen(self, link: Any, what: str = "") -> None:
        """Close ``link`` and open it anew (clearing ``lost``); CommunicationError naming ``what`` if that fails."""

    @abc.abstractmethod
    def _discard_stale_input(self) -> None: ...

    @abc.abstractmethod
    def _send(self, message: bytes) -> None:
        """Write ``message`` and the write terminator (logged at DEBUG)."""

    @abc.abstractmethod
    def _receive(self, what: str) -> bytes:
        """One reply without its terminator."""
